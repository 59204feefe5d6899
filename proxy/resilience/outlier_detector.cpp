#include "resilience/outlier_detector.hpp"

#include "core/log.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace breakerbox::resilience {
namespace {

endpoint_state state_of(std::uint64_t bits) noexcept { return endpoint_word::decode(bits).state; }
bool manual_of(std::uint64_t bits) noexcept { return endpoint_word::decode(bits).manual; }
bool retired_of(std::uint64_t bits) noexcept { return endpoint_word::decode(bits).retired; }
std::int64_t until_of(std::uint64_t bits) noexcept { return endpoint_word::decode(bits).until_ms; }
std::uint64_t encode(endpoint_state s, bool manual, bool retired, std::int64_t until_ms) noexcept
{
    return endpoint_word{s, manual, retired, until_ms}.encode();
}

std::string percent_text(double v)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f%%", v);
    return buf;
}

double seconds_of(nanos t) { return static_cast<double>(t) / 1e9; }

// splitmix64: a well-mixed number from (seed, n) without shared state, for the ejection jitter.
std::uint64_t mix(std::uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

constexpr std::int64_t forever_ms = (std::int64_t{1} << 58) - 1;

} // namespace

outlier_detector::outlier_detector(std::string upstream, const config::outlier_config& cfg, std::uint64_t seed)
    : upstream_(std::move(upstream)), cfg_(cfg), seed_(seed),
      counts_rates_(cfg.failure_percentage.enabled || cfg.success_rate.enabled)
{
}

std::uint32_t outlier_detector::max_ejected(std::uint32_t n) const noexcept
{
    if (n < 2)
        return 0; // never the only endpoint
    const auto by_share = static_cast<std::uint32_t>(std::floor(n * cfg_.max_ejection_percent / 100.0 + 1e-9));
    return std::min(std::max<std::uint32_t>(by_share, 1), n - 1);
}

outlier_verdict outlier_detector::set_endpoints(const std::vector<tcp::endpoint>& addresses)
{
    if (addresses.empty()) // nothing resolved (a failed lookup at a reload): the records are kept for when it does
        return {};
    std::vector<std::shared_ptr<endpoint_health>> next;
    std::vector<std::shared_ptr<endpoint_health>> gone;
    {
        std::lock_guard lock(list_mutex_);
        for (const auto& a : addresses) {
            auto same = std::find_if(endpoints_.begin(), endpoints_.end(), [&](const auto& e) { return e && e->address == a; });
            if (same != endpoints_.end())
                next.push_back(std::move(*same));
            else
                next.push_back(std::make_shared<endpoint_health>(a));
        }
        for (auto& e : endpoints_)
            if (e)
                gone.push_back(std::move(e));
        endpoints_ = next;
        endpoint_count_.store(static_cast<std::uint32_t>(next.size()), std::memory_order_relaxed);
    }
    // Retire what left: from now on it is no endpoint of this upstream, and not counted.
    for (auto& e : gone) {
        std::uint64_t bits = e->word.load(std::memory_order_acquire);
        while (!retired_of(bits) &&
               !e->word.compare_exchange_weak(bits, encode(endpoint_state::healthy, false, true, 0), std::memory_order_acq_rel)) {
        }
        if (retired_of(bits))
            continue;
        if (state_of(bits) == endpoint_state::ejected)
            ejected_count_.fetch_sub(1, std::memory_order_relaxed);
        if (state_of(bits) != endpoint_state::healthy)
            unhealthy_count_.fetch_sub(1, std::memory_order_relaxed);
    }
    return upstream_verdict();
}

std::shared_ptr<endpoint_health> outlier_detector::find(const tcp::endpoint& address) const
{
    {
        std::lock_guard lock(list_mutex_);
        for (const auto& e : endpoints_)
            if (e->address == address)
                return e;
    }
    auto detached = std::make_shared<endpoint_health>(address);
    detached->word.store(encode(endpoint_state::healthy, false, true, 0), std::memory_order_relaxed);
    return detached;
}

std::vector<std::shared_ptr<endpoint_health>> outlier_detector::endpoints() const
{
    std::lock_guard lock(list_mutex_);
    return endpoints_;
}

std::shared_ptr<endpoint_health> outlier_detector::find_label(const std::string& address) const
{
    std::lock_guard lock(list_mutex_);
    for (const auto& e : endpoints_)
        if (e->label == address)
            return e;
    return nullptr;
}

void outlier_detector::return_if_due(endpoint_health& ep, nanos now) noexcept
{
    const std::uint64_t bits = ep.word.load(std::memory_order_acquire);
    if (state_of(bits) == endpoint_state::ejected && !manual_of(bits) && now >= from_ms(until_of(bits)))
        try_return(ep, bits, "ejection time over", now);
}

outlier_verdict outlier_detector::record_slow(endpoint_health& ep, endpoint_outcome o, nanos now) noexcept
{
    return_if_due(ep, now); // its first outcome after the ejection time makes the return official
    if (counts_rates_ && o != endpoint_outcome::ignored) {
        ep.interval_requests.fetch_add(1, std::memory_order_relaxed);
        if (o != endpoint_outcome::success)
            ep.interval_failures.fetch_add(1, std::memory_order_relaxed);
    }
    auto reset = [](std::atomic<std::uint32_t>& streak) {
        if (streak.load(std::memory_order_relaxed) != 0) // no write (and no cache-line ping-pong) when already 0
            streak.store(0, std::memory_order_relaxed);
    };
    switch (o) {
    case endpoint_outcome::ignored: return {};
    case endpoint_outcome::success: {
        reset(ep.consecutive_5xx);
        reset(ep.consecutive_local_origin);
        std::uint64_t bits = ep.word.load(std::memory_order_relaxed);
        if (state_of(bits) == endpoint_state::detected) // it answers well again
            try_return(ep, bits, "answered successfully", now);
        return {};
    }
    case endpoint_outcome::failure_status: {
        reset(ep.consecutive_local_origin); // it did answer
        const auto n = ep.consecutive_5xx.fetch_add(1, std::memory_order_relaxed) + 1;
        if (cfg_.consecutive_5xx == 0 || n < cfg_.consecutive_5xx || !may_change(ep))
            return {};
        return fire(ep, outlier_rule::consecutive_5xx, true, std::to_string(n) + " failure answers in a row", now);
    }
    case endpoint_outcome::local_origin_failure: {
        const auto n = ep.consecutive_local_origin.fetch_add(1, std::memory_order_relaxed) + 1;
        if (cfg_.consecutive_local_origin_failure == 0 || n < cfg_.consecutive_local_origin_failure || !may_change(ep))
            return {};
        return fire(ep, outlier_rule::consecutive_local_origin_failure, true,
                    std::to_string(n) + " local-origin failures in a row", now);
    }
    }
    return {};
}

bool outlier_detector::may_change(const endpoint_health& ep) const noexcept
{
    const auto w = endpoint_word::decode(ep.word.load(std::memory_order_relaxed));
    if (w.retired || w.state == endpoint_state::ejected)
        return false;
    // Detected: only a free place under the cap changes anything (then it is ejected).
    return w.state == endpoint_state::healthy || ejected_count() < max_ejected(endpoint_count());
}

outlier_verdict outlier_detector::fire(endpoint_health& ep, outlier_rule rule, bool enforce, const std::string& figures,
                                       nanos now)
{
    std::uint64_t bits = ep.word.load(std::memory_order_acquire);
    if (retired_of(bits) || state_of(bits) == endpoint_state::ejected)
        return {};
    if (!enforce || endpoint_count() < 2) {
        // Detected, not enforced (a rate rule with too few endpoints, or the only endpoint, which the
        // upstream's breaker judges alone): counted (and logged at debug), nothing changes.
        detected_[index(rule)].fetch_add(1, std::memory_order_relaxed);
        log::debug("endpoint outlier detected, not enforced",
                   {{"upstream", upstream_}, {"endpoint", ep.label}, {"rule", name_of(rule)}, {"figures", figures}});
        return {};
    }
    if (try_eject(ep, bits, rule, false, figures, now))
        return upstream_verdict();
    bits = ep.word.load(std::memory_order_acquire);
    if (state_of(bits) != endpoint_state::healthy || retired_of(bits))
        return {}; // already detected (counted when it was first), or ejected by another thread meanwhile
    // The cap is reached: detected, still balanced over, and unhealthy for the upstream's verdict.
    if (!ep.word.compare_exchange_strong(bits, encode(endpoint_state::detected, false, false, 0), std::memory_order_acq_rel))
        return {};
    unhealthy_count_.fetch_add(1, std::memory_order_relaxed);
    detected_[index(rule)].fetch_add(1, std::memory_order_relaxed);
    ep.last_rule.store(static_cast<std::uint8_t>(rule), std::memory_order_relaxed);
    log::warn("endpoint outlier detected, not ejected: max_ejection_percent reached", {{"upstream", upstream_},
                                                                                       {"endpoint", ep.label},
                                                                                       {"rule", name_of(rule)},
                                                                                       {"figures", figures},
                                                                                       {"ejected", ejected_count()},
                                                                                       {"endpoints", endpoint_count()}});
    return upstream_verdict();
}

bool outlier_detector::take_ejection_place(std::uint32_t limit) noexcept
{
    std::uint32_t taken = ejected_count_.load(std::memory_order_relaxed);
    do {
        if (taken >= limit)
            return false;
    } while (!ejected_count_.compare_exchange_weak(taken, taken + 1, std::memory_order_acq_rel));
    return true;
}

nanos outlier_detector::ejection_time(const endpoint_health& ep, std::uint32_t level, std::uint64_t nth) const noexcept
{
    const nanos scaled = std::min<nanos>(cfg_.base_ejection_time * std::max<std::uint32_t>(level, 1), cfg_.max_ejection_time);
    if (cfg_.max_ejection_time_jitter <= 0)
        return scaled;
    // Per endpoint and ejection: endpoints ejected together do not return together.
    const std::uint64_t r = mix(seed_ ^ std::hash<std::string>{}(ep.label) ^ (nth * 0x100000001B3ull));
    return scaled + static_cast<nanos>(r % static_cast<std::uint64_t>(cfg_.max_ejection_time_jitter + 1));
}

std::uint32_t outlier_detector::max_level() const noexcept
{
    // Past this the time is at its cap: a level that kept growing would only keep a flapping endpoint at
    // the cap for longer after it recovers (Envoy stops growing it there too).
    const auto steps = (cfg_.max_ejection_time + cfg_.base_ejection_time - 1) / cfg_.base_ejection_time;
    return static_cast<std::uint32_t>(std::clamp<nanos>(steps, 1, 1'000'000));
}

bool outlier_detector::try_eject(endpoint_health& ep, std::uint64_t bits, outlier_rule rule, bool manual,
                                 const std::string& figures, nanos now)
{
    // The place under the cap first (never the last endpoint in load balancing, even by hand), then
    // the endpoint's word; a place taken for a word that another thread changed is given back.
    const std::uint32_t n = endpoint_count();
    if (!take_ejection_place(manual ? (n > 0 ? n - 1 : 0) : max_ejected(n)))
        return false;
    const std::uint32_t level =
        manual ? ep.level.load(std::memory_order_relaxed) : std::min(ep.level.load(std::memory_order_relaxed) + 1, max_level());
    const std::uint64_t nth = ep.ejections.load(std::memory_order_relaxed) + 1;
    const nanos for_time = manual ? 0 : ejection_time(ep, level, nth);
    const std::uint64_t desired =
        encode(endpoint_state::ejected, manual, false, manual ? forever_ms : to_ms_ceil(now + for_time));
    // Detected meanwhile (another thread found the cap full while this one held the place): still ours
    // to eject. Ejected or retired meanwhile: not.
    while (!ep.word.compare_exchange_weak(bits, desired, std::memory_order_acq_rel)) {
        if (retired_of(bits) || state_of(bits) == endpoint_state::ejected) {
            ejected_count_.fetch_sub(1, std::memory_order_relaxed);
            return false;
        }
    }
    // Only the winner gets here.
    if (state_of(bits) == endpoint_state::healthy) {
        unhealthy_count_.fetch_add(1, std::memory_order_relaxed);
        detected_[index(rule)].fetch_add(1, std::memory_order_relaxed);
    }
    enforced_[index(rule)].fetch_add(1, std::memory_order_relaxed);
    ep.level.store(level, std::memory_order_relaxed);
    ep.ejections.fetch_add(1, std::memory_order_relaxed);
    ep.last_rule.store(static_cast<std::uint8_t>(rule), std::memory_order_relaxed);
    ep.consecutive_5xx.store(0, std::memory_order_relaxed);
    ep.consecutive_local_origin.store(0, std::memory_order_relaxed);
    log::warn("endpoint ejected",
              {{"upstream", upstream_},
               {"endpoint", ep.label},
               {"rule", name_of(rule)},
               {"figures", figures},
               {"ejected_for_seconds", manual ? nlohmann::json(nullptr) : nlohmann::json(seconds_of(for_time))},
               {"ejection_level", level},
               {"ejected", ejected_count()},
               {"endpoints", n}});
    return true;
}

bool outlier_detector::try_return(endpoint_health& ep, std::uint64_t bits, std::string_view why, nanos now) noexcept
{
    (void)now;
    if (retired_of(bits) || state_of(bits) == endpoint_state::healthy)
        return false;
    if (!ep.word.compare_exchange_strong(bits, encode(endpoint_state::healthy, false, false, 0), std::memory_order_acq_rel))
        return false; // another thread decided
    const bool was_ejected = state_of(bits) == endpoint_state::ejected;
    if (was_ejected)
        ejected_count_.fetch_sub(1, std::memory_order_relaxed);
    unhealthy_count_.fetch_sub(1, std::memory_order_relaxed);
    ep.consecutive_5xx.store(0, std::memory_order_relaxed);
    ep.consecutive_local_origin.store(0, std::memory_order_relaxed);
    log::info(was_ejected ? "endpoint returned to load balancing" : "endpoint healthy again",
              {{"upstream", upstream_}, {"endpoint", ep.label}, {"why", why}});
    return true;
}

outlier_verdict outlier_detector::upstream_verdict() const
{
    // From the endpoints' words, not the running totals (which another thread may be between
    // updating): this is the rare path, and the list is short.
    std::uint32_t n = 0, healthy = 0, ejected = 0;
    for (const auto& e : endpoints()) {
        const auto w = endpoint_word::decode(e->word.load(std::memory_order_acquire));
        ++n;
        healthy += w.state == endpoint_state::healthy;
        ejected += w.state == endpoint_state::ejected;
    }
    if (n == 0)
        return {};
    // One endpoint is judged by the upstream's breaker alone — unless it is ejected (the others left).
    if (n < 2 && ejected < n)
        return {};
    if (healthy > 0 && healthy * 100.0 >= cfg_.min_healthy_percent * n)
        return {};
    return {true, "outlier detection: " + std::to_string(healthy) + " of " + std::to_string(n) +
                      " endpoints healthy, below min_healthy_percent " + percent_text(cfg_.min_healthy_percent)};
}

void outlier_detector::expire(nanos now)
{
    for (const auto& e : endpoints())
        return_if_due(*e, now);
}

outlier_verdict outlier_detector::evaluate(nanos now)
{
    const auto eps = endpoints();
    std::vector<std::pair<std::uint64_t, std::uint64_t>> figures; // {requests, failures} of this interval
    figures.reserve(eps.size());
    for (const auto& e : eps) {
        figures.emplace_back(e->interval_requests.exchange(0, std::memory_order_relaxed),
                             e->interval_failures.exchange(0, std::memory_order_relaxed));
        const std::uint64_t bits = e->word.load(std::memory_order_acquire);
        if (state_of(bits) == endpoint_state::ejected)
            return_if_due(*e, now); // ends it when its time is over, traffic or not
    }
    // A verdict only when a rule of this evaluation changed something: the verdict is given when
    // endpoints turn unhealthy, not repeated each interval (which would re-open a circuit its
    // half-open probes have just closed).
    outlier_verdict out;
    if (cfg_.failure_percentage.enabled)
        apply_failure_percentage(eps, figures, now, out);
    if (cfg_.success_rate.enabled)
        apply_success_rate(eps, figures, now, out);
    for (const auto& e : eps)
        decay_level_if_healthy(*e);
    return out;
}

void outlier_detector::decay_level_if_healthy(endpoint_health& ep) noexcept
{
    // A whole interval of health lowers the level (a re-ejection long after the last one starts short):
    // healthy at the previous interval's end and at this one's, after this interval's rules were applied,
    // with no ejection in between. An endpoint that has just returned from its ejection has not been
    // healthy for an interval yet: decaying it then would re-eject it at the same level for ever.
    const bool healthy_now = state_of(ep.word.load(std::memory_order_acquire)) == endpoint_state::healthy;
    const auto ejections = ep.ejections.load(std::memory_order_relaxed);
    if (healthy_now && ep.healthy_at_last_evaluation && ejections == ep.ejections_at_last_evaluation) {
        std::uint32_t level = ep.level.load(std::memory_order_relaxed);
        if (level > 0)
            ep.level.compare_exchange_strong(level, level - 1, std::memory_order_relaxed);
    }
    ep.healthy_at_last_evaluation = healthy_now;
    ep.ejections_at_last_evaluation = ejections;
}

void outlier_detector::apply_failure_percentage(const std::vector<std::shared_ptr<endpoint_health>>& eps,
                                                const std::vector<std::pair<std::uint64_t, std::uint64_t>>& figures, nanos now,
                                                outlier_verdict& out)
{
    const auto& rule = cfg_.failure_percentage;
    std::size_t judged = 0;
    for (const auto& [requests, failures] : figures)
        judged += requests >= rule.request_volume;
    const bool enforce = judged >= rule.minimum_hosts;
    for (std::size_t i = 0; i < eps.size(); ++i) {
        const auto [requests, failures] = figures[i];
        if (requests < rule.request_volume)
            continue;
        const double share = 100.0 * static_cast<double>(failures) / static_cast<double>(requests);
        if (share < rule.threshold)
            continue;
        auto v = fire(*eps[i], outlier_rule::failure_percentage, enforce,
                      "failure share " + percent_text(share) + " >= " + percent_text(rule.threshold) + " over " +
                          std::to_string(requests) + " requests",
                      now);
        if (v.open_upstream)
            out = std::move(v);
    }
}

void outlier_detector::apply_success_rate(const std::vector<std::shared_ptr<endpoint_health>>& eps,
                                          const std::vector<std::pair<std::uint64_t, std::uint64_t>>& figures, nanos now,
                                          outlier_verdict& out)
{
    const auto& rule = cfg_.success_rate;
    std::vector<std::pair<std::size_t, double>> rates; // endpoint index, success rate in percent
    for (std::size_t i = 0; i < eps.size(); ++i) {
        const auto [requests, failures] = figures[i];
        if (requests >= rule.request_volume)
            rates.emplace_back(i, 100.0 * static_cast<double>(requests - failures) / static_cast<double>(requests));
    }
    if (rates.size() < 2)
        return; // no peers to compare with
    double mean = 0;
    for (const auto& r : rates)
        mean += r.second;
    mean /= static_cast<double>(rates.size());
    double variance = 0;
    for (const auto& r : rates)
        variance += (r.second - mean) * (r.second - mean);
    const double stdev = std::sqrt(variance / static_cast<double>(rates.size()));
    const double limit = mean - rule.threshold * stdev;
    const bool enforce = rates.size() >= rule.minimum_hosts;
    for (const auto& [i, rate] : rates) {
        if (rate >= limit)
            continue;
        auto v = fire(*eps[i], outlier_rule::success_rate, enforce,
                      "success rate " + percent_text(rate) + " < " + percent_text(limit) + " (peers' mean " + percent_text(mean) +
                          " - stdev_factor x stdev)",
                      now);
        if (v.open_upstream)
            out = std::move(v);
    }
}

void outlier_detector::probe_succeeded(endpoint_health& ep, nanos now)
{
    const std::uint64_t bits = ep.word.load(std::memory_order_acquire);
    if (state_of(bits) == endpoint_state::ejected && !manual_of(bits))
        try_return(ep, bits, "health probe succeeded", now);
}

std::string outlier_detector::eject_manually(const std::string& address, std::string_view who, nanos now,
                                             outlier_verdict& verdict)
{
    auto ep = find_label(address);
    if (!ep)
        return "no endpoint " + address + " in " + upstream_;
    std::uint64_t bits = ep->word.load(std::memory_order_acquire);
    if (state_of(bits) == endpoint_state::ejected && manual_of(bits))
        return {};                                   // already
    if (state_of(bits) == endpoint_state::ejected) { // an automatic ejection becomes a manual one: no change in the totals
        if (!ep->word.compare_exchange_strong(bits, encode(endpoint_state::ejected, true, false, forever_ms),
                                              std::memory_order_acq_rel))
            return "the endpoint changed state meanwhile; try again";
        ep->last_rule.store(static_cast<std::uint8_t>(outlier_rule::manual), std::memory_order_relaxed);
        enforced_[index(outlier_rule::manual)].fetch_add(1, std::memory_order_relaxed);
    } else if (!try_eject(*ep, bits, outlier_rule::manual, true, "ejected by " + std::string(who), now)) {
        if (ejected_count() + 1 >= endpoint_count())
            return "ejecting " + address + " would leave " + upstream_ + " without an endpoint in load balancing";
        return "the endpoint changed state meanwhile; try again";
    }
    verdict = upstream_verdict();
    return {};
}

std::string outlier_detector::return_manually(const std::string& address, std::string_view who, nanos now)
{
    auto ep = find_label(address);
    if (!ep)
        return "no endpoint " + address + " in " + upstream_;
    const std::uint64_t bits = ep->word.load(std::memory_order_acquire);
    if (state_of(bits) != endpoint_state::healthy && !try_return(*ep, bits, "returned by " + std::string(who), now))
        return "the endpoint changed state meanwhile; try again";
    if (retired_of(bits))
        return "no endpoint " + address + " in " + upstream_;
    // The operator vouches for it: the next ejection starts from the base time.
    ep->level.store(0, std::memory_order_relaxed);
    return {};
}

std::vector<endpoint_view> outlier_detector::view(nanos now) const
{
    std::vector<endpoint_view> out;
    for (const auto& e : endpoints()) {
        const std::uint64_t bits = e->word.load(std::memory_order_acquire);
        endpoint_state s = state_of(bits);
        nanos left = 0;
        if (s == endpoint_state::ejected)
            left = manual_of(bits) ? -1 : std::max<nanos>(0, from_ms(until_of(bits)) - now);
        const auto ejections = e->ejections.load(std::memory_order_relaxed);
        out.push_back({e->label, s, manual_of(bits), e->consecutive_5xx.load(std::memory_order_relaxed),
                       e->consecutive_local_origin.load(std::memory_order_relaxed), ejections,
                       e->level.load(std::memory_order_relaxed),
                       ejections > 0 || s != endpoint_state::healthy
                           ? std::optional<outlier_rule>(static_cast<outlier_rule>(e->last_rule.load(std::memory_order_relaxed)))
                           : std::nullopt,
                       left});
    }
    return out;
}

} // namespace breakerbox::resilience
