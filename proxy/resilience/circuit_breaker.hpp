// The circuit breaker of one upstream. Shared by all workers, lock-free on the hot path.
//
// States: closed, open, half_open, plus the operator states forced_open, forced_closed and disabled.
// The state lives in one 64-bit atomic word {state:3, generation:16, timestamp_ms:45}; every transition
// is a compare-and-swap that bumps the generation, and only the winner resets, logs and counts (as in
// Resilience4j's state machine). The timestamp means: open → when the next probe may go; half_open →
// when waiting for probes gives up (max_wait); closed → since when it has been closed.
//
// - closed: calls are admitted (during an optional recovery ramp, a linearly growing share of them);
//   outcomes go into the sliding window and the consecutive-failure and consecutive-slow counters; a
//   failure or slow call evaluates the trip rules (consecutive failures, consecutive slow calls, failure
//   rate with minimum calls or minimum failures, slow-call rate). With slow_calls.in_flight a call is
//   recorded as slow once it has run that long, before it ends.
// - open: rejected without touching the network, until the open time passes; the next admission then
//   moves to half_open (lazily: no timer thread). The open time grows on each re-trip without a healthy
//   close in between (multiplier, cap, deterministic jitter) and goes back to the base once the circuit
//   has stayed closed for open_backoff_reset_after.
// - half_open: at most max_probes calls at once; successes_to_close successes close it, one failure
//   re-opens it, and if probes do not complete within max_wait it re-opens.
// - forced_open rejects everything; forced_closed admits everything and records (metrics only, never
//   trips); disabled admits everything and records nothing.
//
// Probe accounting is generation-tagged ({generation:32, in_flight:16, successes:16} in one word), so a
// transition never needs to reset it, and a permit from an older generation (a late outcome) is ignored
// instead of poisoning the new state. Permits not completed (client gone, coroutine destroyed) are
// released, which frees their probe slot.
//
// NOTE: approximate under concurrency, on purpose: the consecutive-failure counter (a success racing a
// failure may reset it just after), window totals read while other threads record, and the recovery
// ramp's share. Each can delay or advance a trip by one call; none can admit more probes than
// max_probes, make two threads win one transition, or leave the breaker stuck.
#pragma once
#include "config/config.hpp"
#include "core/clock.hpp"
#include "resilience/outcome.hpp"
#include "resilience/outcome_window.hpp"

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace breakerbox::resilience {

enum class breaker_state : std::uint8_t { closed = 0, open = 1, half_open = 2, forced_open = 3, forced_closed = 4, disabled = 5 };
constexpr std::size_t breaker_state_count = 6;
inline constexpr enum_name<breaker_state> breaker_state_names[]{{breaker_state::closed, "closed"},
                                                                {breaker_state::open, "open"},
                                                                {breaker_state::half_open, "half_open"},
                                                                {breaker_state::forced_open, "forced_open"},
                                                                {breaker_state::forced_closed, "forced_closed"},
                                                                {breaker_state::disabled, "disabled"}};
constexpr std::span<const enum_name<breaker_state>> names_of(breaker_state) noexcept { return breaker_state_names; }
constexpr std::string_view to_string(breaker_state s) noexcept { return name_of(s); }

// The transitions the state machine makes on its own (Resilience4j's StateTransition): a trip, the open
// time running out, a half-open verdict. /metrics declares these edges even before they happen.
constexpr bool is_automatic_transition(breaker_state from, breaker_state to) noexcept
{
    return (from == breaker_state::closed && to == breaker_state::open) ||
           (from == breaker_state::open && to == breaker_state::half_open) ||
           (from == breaker_state::half_open && (to == breaker_state::closed || to == breaker_state::open));
}

// Every transition that may happen: the automatic ones, and an operator's move of any state to closed
// (reset), forced_open, forced_closed or disabled. Nothing else enters open or half-open.
constexpr bool is_legal_transition(breaker_state from, breaker_state to) noexcept
{
    return is_automatic_transition(from, to) || (to != breaker_state::open && to != breaker_state::half_open);
}

enum class admission : std::uint8_t {
    admitted,        // closed / forced_closed / disabled
    probe,           // half-open probe
    rejected_open,   // open (or forced_open)
    rejected_probes, // half-open and max_probes already in flight
    rejected_ramp,   // recovery ramp: not this call's turn yet
};

struct permit {
    admission kind = admission::rejected_open;
    std::uint16_t generation = 0;
    nanos started = 0;
    bool admitted() const noexcept { return kind == admission::admitted || kind == admission::probe; }
};

struct transition_event {
    std::string_view upstream;
    breaker_state from;
    breaker_state to;
    std::string reason;
    nanos at;
    nanos open_for; // the open time chosen, when `to` is open
};

// Called by the winner of each transition only, on whichever thread won it.
using transition_listener = std::function<void(const transition_event&)>;

struct breaker_snapshot {
    // What the next call finds (effective_state): an open circuit whose open time is over is reported
    // half_open, with `since` the end of the open time and open_until 0.
    breaker_state state;
    breaker_state recorded_state; // the state word as stored (moves from open to half_open lazily)
    nanos since;                  // when the current state began
    std::uint64_t transitions;    // number of transitions so far
    std::uint64_t trips;          // transitions into open (all kinds)
    std::uint32_t consecutive_failures;
    std::uint32_t consecutive_slow_calls;
    window_totals window;
    nanos open_until;            // when state is open
    nanos current_open_duration; // the open time the next trip would use
    std::uint32_t probes_in_flight;
    std::uint32_t probe_successes;
    std::string last_reason;
};

class circuit_breaker {
public:
    circuit_breaker(std::string upstream, const config::breaker_config& cfg, const clock& clk, transition_listener listener = {},
                    std::uint64_t seed = 0);

    // Hot path: decide whether a call may go to the upstream now. Callers on the request path pass the
    // time they already read (one clock read serves the deadline, the breaker and the metrics); the
    // overloads without it read the injected clock.
    permit try_acquire(nanos now) noexcept { return acquire(now, false); }
    permit try_acquire() noexcept { return try_acquire(clock_.now()); }
    // With half_open.probe configured, client calls are never probes; the active prober takes its
    // probe slots here instead (open → half_open once the open time has passed). Rejected when the
    // circuit is not open or half-open.
    permit try_acquire_probe(nanos now) noexcept { return acquire(now, true); }
    bool probes_actively() const noexcept { return !cfg_.probe_path.empty(); }
    // The rejection try_acquire(now) would certainly give, without taking anything or moving the state:
    // forced open, open before its open time is over, or — with an active prober — open or half-open.
    // nullopt when a call might be admitted. Lets the request path skip the bulkhead and the attempt
    // machinery for the common open-circuit case.
    std::optional<admission> certain_rejection(nanos now) const noexcept;
    // Hot path: the call's outcome. The time since the permit was taken decides slowness. A probe
    // counts as failed when it fails or (with the slow-call rule on) is slow.
    void on_result(const permit& p, outcome o, nanos now) noexcept;
    void on_result(const permit& p, outcome o) noexcept { on_result(p, o, clock_.now()); }
    // A streamed answer's head (docs/streaming.md): recorded as on_result does, except that a success
    // does not end a run of consecutive failures yet — the body may still break (on_failure_after_answer
    // then continues the run) or complete (on_stream_completed ends it). So a run of streams whose heads
    // are good and whose bodies break trips consecutive_failures as failed calls do.
    void on_stream_head(const permit& p, outcome o, nanos now) noexcept;
    void on_stream_completed() noexcept;
    // slow_calls.in_flight: whether a call admitted with `p` has run long enough to be recorded as slow
    // before it ends.
    bool slow_in_flight_due(const permit& p, nanos now) const noexcept
    {
        return cfg_.slow_call_in_flight && cfg_.slow_call_enabled && p.admitted() && now - p.started >= cfg_.slow_call_duration;
    }
    // Records a call still in flight as slow (not failed) now, at most once per call (breaker_permit
    // sees to that); a probe fails at once. Its end then goes to on_result_after_slow, which counts only
    // toward consecutive_failures: the call is already in the window.
    void on_slow_in_flight(const permit& p, nanos now) noexcept;
    void on_result_after_slow(const permit& p, outcome o, nanos now) noexcept;
    // A streamed answer whose call was recorded when its head arrived broke afterwards (docs/streaming.md):
    // one more failure, recorded as of now in the current state's window (nothing when the circuit is
    // not closed: a half-open probe was decided by the head, and an open circuit records nothing).
    void on_failure_after_answer(nanos now) noexcept;
    // The call ended without an upstream outcome (cancelled, client gone, local decision): frees a
    // probe slot if it held one, records nothing.
    void release(const permit& p) noexcept;

    // Seconds-resolution hint for Retry-After: time until the next probe may go (0 when not open).
    nanos time_until_probe() const noexcept;

    // Opens a closed circuit for a reason found outside the breaker's own rules (outlier detection: too
    // few healthy endpoints), with the open time the next trip would get. Returns whether this call won
    // the transition; false when the circuit was not closed (or another thread moved it first).
    bool trip_from_outside(std::string reason, nanos now);
    // Closes an open or half-open circuit for a reason found outside the breaker (scope: cluster — the
    // cluster's probe succeeded, so every replica's circuit closes), with a fresh window (a closed one
    // just forgets its window: its failures belong to the period the cluster has recovered from).
    // Returns whether this call won the transition; false when the circuit was not open or half-open.
    bool close_from_outside(std::string reason, nanos now);

    // Operator control (admin API). `who` is logged with the transition.
    void force_open(std::string_view who);
    void force_closed(std::string_view who);
    void disable(std::string_view who);
    // Back to closed with a fresh window and the open time back at its base.
    void reset(std::string_view who);

    // The stored state. Open moves to half_open lazily, when the first call after the open time
    // arrives (or the active prober looks): for what to report, use effective_state.
    breaker_state state() const noexcept;
    // The state the next call will find at `now`: half_open for an open circuit whose open time is over
    // (its next call is admitted as a probe, or the active prober's is), the stored state otherwise. What
    // /health/circuits, /metrics and the alert rules report, whether or not traffic arrives — instead of
    // a timer per breaker moving it (Resilience4j's automaticTransitionFromOpenToHalfOpenEnabled), which
    // would, without traffic, run into half_open's max_wait and flip between open and half-open.
    breaker_state effective_state(nanos now) const noexcept;
    // Transitions into open so far (any kind): a call that sees it change has seen the circuit open.
    std::uint64_t trip_count() const noexcept { return trips_.load(std::memory_order_relaxed); }
    breaker_snapshot snapshot() const;
    const std::string& upstream() const noexcept { return upstream_; }
    std::uint64_t transition_count(breaker_state from, breaker_state to) const noexcept
    {
        return transitions_by_edge_[static_cast<std::size_t>(from)][static_cast<std::size_t>(to)].load(std::memory_order_relaxed);
    }

private:
    struct word {
        breaker_state state;
        std::uint16_t generation;
        std::int64_t stamp_ms;
    };
    static std::uint64_t encode(word w) noexcept;
    static word decode(std::uint64_t bits) noexcept;

    // Compare-and-swap from `expected` to `to`; the winner resets what the new state needs, logs and
    // counts. Returns whether this call won.
    bool transition(std::uint64_t expected, breaker_state to, std::int64_t stamp_ms, std::string reason, nanos now,
                    nanos open_for = 0);
    bool trip(std::uint64_t expected, const word& from, std::string reason, nanos now);
    void operator_transition(breaker_state to, std::string_view action, std::string_view who);
    nanos next_open_duration(std::uint16_t generation, std::uint32_t trips) const noexcept;
    bool ramp_admits(nanos closed_for) noexcept;
    // The state word when `p`'s outcome still counts (its generation is the current one and the breaker
    // records), nullopt otherwise.
    std::optional<std::uint64_t> recording_for(const permit& p) const noexcept;
    void evaluate_trip(std::uint64_t bits, const word& w, nanos now) noexcept;
    // Counts a failure (or a non-failure, which ends the streak) and, after a failure or when
    // `evaluate`, checks the trip rules.
    void count_failure_streak(std::uint64_t bits, const word& w, bool failure, bool evaluate, nanos now,
                              bool success_ends_streak = true) noexcept;
    void record(const permit& p, outcome o, nanos now, bool success_ends_streak) noexcept;
    static void reset_streak(std::atomic<std::uint32_t>& streak) noexcept
    {
        if (streak.load(std::memory_order_relaxed) != 0) // no write (and no cache-line ping-pong) when already 0
            streak.store(0, std::memory_order_relaxed);
    }
    permit acquire(nanos now, bool prober) noexcept;
    permit try_probe(std::uint64_t bits, const word& w, nanos now) noexcept;
    void finish_probe(const permit& p, bool success, nanos now) noexcept;

    bool open_time_over(const word& w, nanos now) const noexcept
    {
        return w.state == breaker_state::open && now >= from_ms(w.stamp_ms);
    }
    static std::int64_t to_ms_ceil(nanos t) noexcept { return (t + 999'999) / 1'000'000; }
    static nanos from_ms(std::int64_t ms) noexcept { return ms * 1'000'000; }

    const std::string upstream_;
    const config::breaker_config cfg_;
    const clock& clock_;
    const transition_listener listener_;
    const std::uint64_t seed_;

    std::atomic<std::uint64_t> state_word_;
    std::atomic<std::uint64_t> probes_{0}; // {generation:32 | in_flight:16 | successes:16}
    std::atomic<std::uint32_t> consecutive_failures_{0};
    std::atomic<std::uint32_t> consecutive_slow_{0};
    std::atomic<std::uint32_t> consecutive_trips_{0}; // re-trips without a healthy close: drives the open time
    std::atomic<std::uint64_t> ramp_counter_{0};
    std::atomic<nanos> last_open_for_{0};
    std::atomic<std::uint64_t> transitions_{0};
    std::atomic<std::uint64_t> trips_{0};
    std::array<std::array<std::atomic<std::uint64_t>, breaker_state_count>, breaker_state_count> transitions_by_edge_{};
    outcome_window window_;

    mutable std::mutex reason_mutex_; // guards last_reason_ and since_: written on transitions only, never on the hot path
    std::string last_reason_ = "initial state";
    nanos since_;
};

} // namespace breakerbox::resilience
