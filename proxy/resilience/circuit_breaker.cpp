#include "resilience/circuit_breaker.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace breakerbox::resilience {
namespace {

constexpr std::uint64_t state_bits = 3;
constexpr std::uint64_t generation_bits = 16;
constexpr std::uint64_t stamp_shift = state_bits + generation_bits;

std::string percent(double v)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f%%", v);
    return buf;
}

std::string duration_text(nanos d)
{
    char buf[32];
    if (d % seconds(1) == 0)
        std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(d / seconds(1)));
    else
        std::snprintf(buf, sizeof buf, "%.3gs", static_cast<double>(d) / 1e9);
    return buf;
}

// SplitMix64: a deterministic, stateless mix for the open-time jitter.
std::uint64_t mix(std::uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

struct probe_word {
    std::uint32_t tag;
    std::uint32_t in_flight;
    std::uint32_t successes;
};
probe_word decode_probes(std::uint64_t v)
{
    return {static_cast<std::uint32_t>(v >> 32), static_cast<std::uint32_t>((v >> 16) & 0xffff),
            static_cast<std::uint32_t>(v & 0xffff)};
}
std::uint64_t encode_probes(probe_word p)
{
    return (std::uint64_t(p.tag) << 32) | (std::uint64_t(p.in_flight & 0xffff) << 16) | (p.successes & 0xffff);
}

} // namespace

std::uint64_t circuit_breaker::encode(word w) noexcept
{
    return static_cast<std::uint64_t>(w.state) | (std::uint64_t(w.generation) << state_bits) |
           (static_cast<std::uint64_t>(std::max<std::int64_t>(w.stamp_ms, 0)) << stamp_shift);
}

circuit_breaker::word circuit_breaker::decode(std::uint64_t bits) noexcept
{
    return {static_cast<breaker_state>(bits & ((1u << state_bits) - 1)),
            static_cast<std::uint16_t>((bits >> state_bits) & ((1u << generation_bits) - 1)),
            static_cast<std::int64_t>(bits >> stamp_shift)};
}

circuit_breaker::circuit_breaker(std::string upstream, const config::breaker_config& cfg, const clock& clk,
                                 transition_listener listener, std::uint64_t seed)
    : upstream_(std::move(upstream)), cfg_(cfg), clock_(clk), listener_(std::move(listener)), seed_(seed),
      // Closed "since forever" (stamp 0): no recovery ramp at start-up, and the first trip uses the base open time.
      state_word_(encode({cfg.enabled ? breaker_state::closed : breaker_state::disabled, 0, 0})),
      window_(cfg.window == config::window_type::time_based, cfg.window_size, cfg.window_duration, cfg.window_buckets),
      since_(clk.now())
{
    if (!cfg.enabled)
        last_reason_ = "disabled by configuration";
}

breaker_state circuit_breaker::state() const noexcept { return decode(state_word_.load(std::memory_order_acquire)).state; }

std::optional<admission> circuit_breaker::certain_rejection(nanos now) const noexcept
{
    const word w = decode(state_word_.load(std::memory_order_acquire));
    switch (w.state) {
    case breaker_state::forced_open: return admission::rejected_open;
    case breaker_state::open:
        if (now < from_ms(w.stamp_ms) || probes_actively())
            return admission::rejected_open;
        return std::nullopt;
    case breaker_state::half_open:
        if (probes_actively())
            return admission::rejected_probes;
        return std::nullopt;
    default: return std::nullopt;
    }
}

permit circuit_breaker::acquire(nanos now, bool prober) noexcept
{
    // Client calls leave the probing to the active prober when there is one.
    const bool may_probe = prober || !probes_actively();
    for (;;) {
        const std::uint64_t bits = state_word_.load(std::memory_order_acquire);
        const word w = decode(bits);
        if (prober && w.state != breaker_state::open && w.state != breaker_state::half_open)
            return {admission::rejected_open, w.generation, now}; // nothing to probe
        switch (w.state) {
        case breaker_state::closed:
            if (cfg_.recovery_ramp > 0) {
                nanos closed_for = now - from_ms(w.stamp_ms);
                if (closed_for < cfg_.recovery_ramp && !ramp_admits(closed_for))
                    return {admission::rejected_ramp, w.generation, now};
            }
            return {admission::admitted, w.generation, now};
        case breaker_state::forced_closed:
        case breaker_state::disabled: return {admission::admitted, w.generation, now};
        case breaker_state::forced_open: return {admission::rejected_open, w.generation, now};
        case breaker_state::open:
            if (now < from_ms(w.stamp_ms) || !may_probe)
                return {admission::rejected_open, w.generation, now};
            transition(bits, breaker_state::half_open, to_ms_ceil(now + cfg_.half_open_max_wait),
                       "open time of " + duration_text(last_open_for_.load(std::memory_order_relaxed)) + " elapsed", now);
            continue; // winner or not, look again
        case breaker_state::half_open:
            if (!may_probe)
                return {admission::rejected_probes, w.generation, now};
            if (now >= from_ms(w.stamp_ms)) {
                trip(bits, w, "half-open probes did not complete within max_wait of " + duration_text(cfg_.half_open_max_wait),
                     now);
                continue;
            }
            if (auto p = try_probe(bits, w, now); p.kind != admission::rejected_open)
                return p;
            continue; // the state moved on while we took the probe slot
        }
    }
}

permit circuit_breaker::try_probe(std::uint64_t bits, const word& w, nanos now) noexcept
{
    std::uint64_t current = probes_.load(std::memory_order_acquire);
    for (;;) {
        probe_word p = decode_probes(current);
        if (p.tag != w.generation) {
            // Generations are 16-bit and wrap: compare modulo 2^16. A newer tag means our view of the
            // state is stale; taking over the counter would clobber the newer period's accounting.
            if (static_cast<std::int16_t>(static_cast<std::uint16_t>(p.tag) - w.generation) > 0)
                return {admission::rejected_open, w.generation, now}; // caller looks at the state again
            p = {w.generation, 0, 0};                                 // first probe of this half-open period
        }
        if (p.in_flight >= cfg_.half_open_max_probes)
            return {admission::rejected_probes, w.generation, now};
        ++p.in_flight;
        if (probes_.compare_exchange_weak(current, encode_probes(p), std::memory_order_acq_rel))
            break;
    }
    // The slot is ours; if the state changed meanwhile, give it back and let the caller look again.
    if (state_word_.load(std::memory_order_acquire) != bits) {
        release({admission::probe, w.generation, now});
        return {admission::rejected_open, w.generation, now};
    }
    return {admission::probe, w.generation, now};
}

bool circuit_breaker::ramp_admits(nanos closed_for) noexcept
{
    // A low-discrepancy sequence (golden ratio) spreads the admitted share evenly over the calls.
    const double share = static_cast<double>(closed_for) / static_cast<double>(cfg_.recovery_ramp);
    const std::uint64_t n = ramp_counter_.fetch_add(1, std::memory_order_relaxed);
    const double position = std::fmod(static_cast<double>(n) * 0.6180339887498949, 1.0);
    return position < share;
}

void circuit_breaker::on_result(const permit& p, outcome o, nanos now) noexcept { record(p, o, now, true); }

void circuit_breaker::on_stream_head(const permit& p, outcome o, nanos now) noexcept { record(p, o, now, false); }

void circuit_breaker::on_stream_completed() noexcept { reset_streak(consecutive_failures_); }

void circuit_breaker::record(const permit& p, outcome o, nanos now, bool success_ends_streak) noexcept
{
    if (!p.admitted())
        return;
    if (o == outcome::ignored) {
        release(p);
        return;
    }
    const bool failure = o == outcome::failure;
    const bool slow = cfg_.slow_call_enabled && now - p.started >= cfg_.slow_call_duration;
    if (p.kind == admission::probe) {
        finish_probe(p, !failure && !slow, now);
        return;
    }
    const auto bits = recording_for(p);
    if (!bits)
        return;
    const word w = decode(*bits);
    window_.record(now, failure, slow);
    if (slow)
        consecutive_slow_.fetch_add(1, std::memory_order_relaxed);
    else
        reset_streak(consecutive_slow_);
    count_failure_streak(*bits, w, failure, slow, now, success_ends_streak);
}

void circuit_breaker::on_failure_after_answer(nanos now) noexcept
{
    const word w = decode(state_word_.load(std::memory_order_acquire));
    if (w.state != breaker_state::closed && w.state != breaker_state::forced_closed)
        return;
    on_result(permit{admission::admitted, w.generation, now}, outcome::failure, now);
}

std::optional<std::uint64_t> circuit_breaker::recording_for(const permit& p) const noexcept
{
    const std::uint64_t bits = state_word_.load(std::memory_order_acquire);
    const word w = decode(bits);
    if (w.generation != p.generation || w.state == breaker_state::disabled)
        return std::nullopt; // a late outcome from an earlier state, or nothing to record
    return bits;
}

void circuit_breaker::count_failure_streak(std::uint64_t bits, const word& w, bool failure, bool evaluate, nanos now,
                                           bool success_ends_streak) noexcept
{
    if (failure)
        consecutive_failures_.fetch_add(1, std::memory_order_relaxed);
    else if (success_ends_streak)
        reset_streak(consecutive_failures_);
    if ((failure || evaluate) && w.state == breaker_state::closed)
        evaluate_trip(bits, w, now); // forced_closed records but never trips
}

void circuit_breaker::on_slow_in_flight(const permit& p, nanos now) noexcept
{
    if (!p.admitted())
        return;
    if (p.kind == admission::probe) {
        finish_probe(p, false, now); // a slow probe is a failed probe: no need to wait for its end
        return;
    }
    const auto bits = recording_for(p);
    if (!bits)
        return;
    const word w = decode(*bits);
    window_.record(now, false, true);
    consecutive_slow_.fetch_add(1, std::memory_order_relaxed);
    if (w.state == breaker_state::closed)
        evaluate_trip(*bits, w, now);
}

void circuit_breaker::on_result_after_slow(const permit& p, outcome o, nanos now) noexcept
{
    if (p.kind != admission::admitted || o == outcome::ignored)
        return; // a probe was finished when it became slow
    if (const auto bits = recording_for(p))
        count_failure_streak(*bits, decode(*bits), o == outcome::failure, false, now);
}

void circuit_breaker::evaluate_trip(std::uint64_t bits, const word& w, nanos now) noexcept
{
    const std::uint32_t consecutive = consecutive_failures_.load(std::memory_order_relaxed);
    if (cfg_.consecutive_failures > 0 && consecutive >= cfg_.consecutive_failures) {
        trip(bits, w, std::to_string(consecutive) + " consecutive failures >= " + std::to_string(cfg_.consecutive_failures), now);
        return;
    }
    const std::uint32_t slow_streak = consecutive_slow_.load(std::memory_order_relaxed);
    if (cfg_.slow_call_enabled && cfg_.slow_call_consecutive > 0 && slow_streak >= cfg_.slow_call_consecutive) {
        trip(bits, w,
             std::to_string(slow_streak) + " consecutive slow calls >= " + std::to_string(cfg_.slow_call_consecutive) +
                 " (slower than " + duration_text(cfg_.slow_call_duration) + ")",
             now);
        return;
    }
    const window_totals t = window_.totals(now);
    if (t.calls == 0)
        return;
    if (cfg_.failure_rate_enabled) {
        const double rate = 100.0 * t.failures / t.calls;
        const bool enough = t.calls >= cfg_.minimum_calls || (cfg_.minimum_failures > 0 && t.failures >= cfg_.minimum_failures);
        if (enough && rate >= cfg_.failure_rate_threshold) {
            trip(bits, w,
                 "failure rate " + percent(rate) + " >= " + percent(cfg_.failure_rate_threshold) + " over " +
                     std::to_string(t.calls) + " calls (" + std::to_string(t.failures) + " failed)",
                 now);
            return;
        }
    }
    if (cfg_.slow_call_enabled && t.calls >= cfg_.minimum_calls) {
        const double rate = 100.0 * t.slow / t.calls;
        if (rate >= cfg_.slow_call_rate_threshold)
            trip(bits, w,
                 "slow-call rate " + percent(rate) + " >= " + percent(cfg_.slow_call_rate_threshold) + " over " +
                     std::to_string(t.calls) + " calls (slower than " + duration_text(cfg_.slow_call_duration) + ")",
                 now);
    }
}

void circuit_breaker::finish_probe(const permit& p, bool success, nanos now) noexcept
{
    std::uint64_t current = probes_.load(std::memory_order_acquire);
    probe_word next;
    for (;;) {
        next = decode_probes(current);
        if (next.tag != p.generation)
            return; // the half-open period this probe belonged to is over
        next.in_flight = next.in_flight ? next.in_flight - 1 : 0;
        next.successes += success ? 1 : 0;
        if (probes_.compare_exchange_weak(current, encode_probes(next), std::memory_order_acq_rel))
            break;
    }
    const std::uint64_t bits = state_word_.load(std::memory_order_acquire);
    const word w = decode(bits);
    if (w.state != breaker_state::half_open || w.generation != p.generation)
        return;
    if (!success) {
        trip(bits, w, "probe failed in half-open", now);
        return;
    }
    if (next.successes >= cfg_.half_open_successes_to_close)
        transition(bits, breaker_state::closed, now / 1'000'000,
                   std::to_string(next.successes) + " probe(s) succeeded in half-open", now);
}

void circuit_breaker::release(const permit& p) noexcept
{
    if (p.kind != admission::probe)
        return;
    std::uint64_t current = probes_.load(std::memory_order_acquire);
    for (;;) {
        probe_word next = decode_probes(current);
        if (next.tag != p.generation || next.in_flight == 0)
            return;
        --next.in_flight;
        if (probes_.compare_exchange_weak(current, encode_probes(next), std::memory_order_acq_rel))
            return;
    }
}

nanos circuit_breaker::next_open_duration(std::uint16_t generation, std::uint32_t trips) const noexcept
{
    double d =
        static_cast<double>(cfg_.open_duration) * std::pow(cfg_.open_duration_multiplier, std::min<std::uint32_t>(trips, 64));
    d = std::min(d, static_cast<double>(cfg_.max_open_duration));
    if (cfg_.open_duration_jitter > 0) {
        const double u = static_cast<double>(mix(seed_ ^ generation) >> 11) / 9007199254740992.0; // [0, 1)
        d *= 1.0 + cfg_.open_duration_jitter * (2.0 * u - 1.0);
        d = std::min(d, static_cast<double>(cfg_.max_open_duration));
    }
    return std::max<nanos>(static_cast<nanos>(d), millis(1));
}

bool circuit_breaker::trip_from_outside(std::string reason, nanos now)
{
    const std::uint64_t bits = state_word_.load(std::memory_order_acquire);
    const word w = decode(bits);
    if (w.state != breaker_state::closed)
        return false;
    return trip(bits, w, std::move(reason), now);
}

bool circuit_breaker::close_from_outside(std::string reason, nanos now)
{
    for (;;) {
        const std::uint64_t bits = state_word_.load(std::memory_order_acquire);
        const word w = decode(bits);
        if (w.state == breaker_state::closed) { // closed already: only the failing period's window goes
            window_.reset();
            consecutive_trips_.store(0, std::memory_order_relaxed);
            return false;
        }
        if (w.state != breaker_state::open && w.state != breaker_state::half_open)
            return false;
        if (transition(bits, breaker_state::closed, to_ms_ceil(now), reason, now)) {
            window_.reset();
            consecutive_trips_.store(0, std::memory_order_relaxed);
            return true;
        }
    }
}

bool circuit_breaker::trip(std::uint64_t expected, const word& from, std::string reason, nanos now)
{
    // A circuit that stayed closed long enough starts again from the base open time.
    const bool healthy_close =
        from.state == breaker_state::closed && now - from_ms(from.stamp_ms) >= cfg_.open_backoff_reset_after;
    const std::uint32_t trips = healthy_close ? 0 : consecutive_trips_.load(std::memory_order_relaxed);
    const nanos open_for = next_open_duration(static_cast<std::uint16_t>(from.generation + 1), trips);
    if (!transition(expected, breaker_state::open, to_ms_ceil(now + open_for), std::move(reason), now, open_for))
        return false;
    consecutive_trips_.store(trips + 1, std::memory_order_relaxed);
    return true;
}

bool circuit_breaker::transition(std::uint64_t expected, breaker_state to, std::int64_t stamp_ms, std::string reason, nanos now,
                                 nanos open_for)
{
    const word from = decode(expected);
#if defined(BREAKERBOX_DEBUG_CHECKS) // debug and sanitizer builds: is_legal_transition, asserted
    if (!is_legal_transition(from.state, to)) {
        std::fprintf(stderr, "illegal breaker transition %s -> %s\n", to_string(from.state).data(), to_string(to).data());
        std::abort();
    }
#endif
    const std::uint64_t desired = encode({to, static_cast<std::uint16_t>(from.generation + 1), stamp_ms});
    if (!state_word_.compare_exchange_strong(expected, desired, std::memory_order_acq_rel))
        return false;
    // Only the winner gets here: reset, count, remember, publish.
    if (to == breaker_state::half_open || to == breaker_state::closed) {
        consecutive_failures_.store(0, std::memory_order_relaxed);
        consecutive_slow_.store(0, std::memory_order_relaxed);
    }
    if (to == breaker_state::half_open)
        window_.reset(); // nobody records into the window while half-open; closed starts clean
    if (to == breaker_state::closed)
        ramp_counter_.store(0, std::memory_order_relaxed);
    if (to == breaker_state::open || to == breaker_state::forced_open)
        trips_.fetch_add(1, std::memory_order_relaxed);
    if (to == breaker_state::open)
        last_open_for_.store(open_for, std::memory_order_relaxed);
    transitions_.fetch_add(1, std::memory_order_relaxed);
    transitions_by_edge_[static_cast<std::size_t>(from.state)][static_cast<std::size_t>(to)].fetch_add(1,
                                                                                                       std::memory_order_relaxed);
    {
        std::lock_guard lock(reason_mutex_);
        last_reason_ = reason;
        since_ = now;
    }
    if (listener_)
        listener_({upstream_, from.state, to, std::move(reason), now, open_for});
    return true;
}

void circuit_breaker::operator_transition(breaker_state to, std::string_view action, std::string_view who)
{
    const nanos now = clock_.now();
    for (;;) {
        std::uint64_t bits = state_word_.load(std::memory_order_acquire);
        std::string reason = "operator " + std::string(action) + " by " + std::string(who);
        // An operator's close is not a recovery: no ramp, and the next trip starts from the base open time.
        const std::int64_t stamp = to == breaker_state::closed ? 0 : now / 1'000'000;
        if (transition(bits, to, stamp, std::move(reason), now))
            return;
    }
}

void circuit_breaker::force_open(std::string_view who) { operator_transition(breaker_state::forced_open, "force-open", who); }
void circuit_breaker::force_closed(std::string_view who)
{
    operator_transition(breaker_state::forced_closed, "force-closed", who);
}
void circuit_breaker::disable(std::string_view who) { operator_transition(breaker_state::disabled, "disable", who); }

void circuit_breaker::reset(std::string_view who)
{
    operator_transition(breaker_state::closed, "reset", who);
    window_.reset();
    consecutive_trips_.store(0, std::memory_order_relaxed);
}

nanos circuit_breaker::time_until_probe() const noexcept
{
    const word w = decode(state_word_.load(std::memory_order_acquire));
    if (w.state != breaker_state::open)
        return 0;
    return std::max<nanos>(0, from_ms(w.stamp_ms) - clock_.now());
}

breaker_state circuit_breaker::effective_state(nanos now) const noexcept
{
    const word w = decode(state_word_.load(std::memory_order_acquire));
    return open_time_over(w, now) ? breaker_state::half_open : w.state;
}

breaker_snapshot circuit_breaker::snapshot() const
{
    const nanos now = clock_.now();
    const word w = decode(state_word_.load(std::memory_order_acquire));
    breaker_snapshot s{};
    s.state = w.state;
    s.recorded_state = w.state;
    s.transitions = transitions_.load(std::memory_order_relaxed);
    s.trips = trips_.load(std::memory_order_relaxed);
    s.consecutive_failures = consecutive_failures_.load(std::memory_order_relaxed);
    s.consecutive_slow_calls = consecutive_slow_.load(std::memory_order_relaxed);
    s.window = window_.totals(now);
    s.open_until = w.state == breaker_state::open ? from_ms(w.stamp_ms) : 0;
    s.current_open_duration = w.state == breaker_state::open
                                  ? last_open_for_.load(std::memory_order_relaxed)
                                  : next_open_duration(static_cast<std::uint16_t>(w.generation + 1),
                                                       consecutive_trips_.load(std::memory_order_relaxed));
    if (w.state == breaker_state::half_open) {
        auto p = decode_probes(probes_.load(std::memory_order_acquire));
        if (p.tag == w.generation) {
            s.probes_in_flight = p.in_flight;
            s.probe_successes = p.successes;
        }
    }
    {
        std::lock_guard lock(reason_mutex_);
        s.last_reason = last_reason_;
        s.since = since_;
    }
    if (open_time_over(w, now)) { // reported as what the next call will find (see effective_state)
        s.state = breaker_state::half_open;
        s.since = from_ms(w.stamp_ms);
        s.open_until = 0;
        s.current_open_duration =
            next_open_duration(static_cast<std::uint16_t>(w.generation + 2), consecutive_trips_.load(std::memory_order_relaxed));
        s.last_reason = "open time of " + duration_text(last_open_for_.load(std::memory_order_relaxed)) +
                        " elapsed: the next call is admitted as a probe";
    }
    return s;
}

} // namespace breakerbox::resilience
