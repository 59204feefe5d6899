// Outlier detection of one upstream's endpoints (Envoy's outlier detection, Linkerd's failure accrual),
// working together with the upstream's circuit breaker. Shared by all workers, lock-free on the hot
// path; the endpoint list itself changes on the main thread only.
//
// One outcome feeds both: the breaker judges the upstream, the detector judges the endpoint (address)
// that served the attempt.
// - Consecutive rules (on by default), counted apart as Envoy's split_external_local_origin_errors does:
//   answers the upstream's classification calls failures (by default 5xx) in a row, and local-origin
//   failures (connect refused or timed out, TLS, attempt timeout, reset, invalid answer) in a row. A
//   success ends both streaks, a failure answer the local-origin one; an ignored outcome changes nothing.
// - Rate rules, evaluated every `interval` on the main thread: failure percentage, and success rate
//   below mean - stdev_factor × stdev of the peers. An endpoint with fewer than request_volume requests is
//   not judged; with fewer than minimum_hosts judged endpoints the rule only detects (Envoy's
//   ejections_detected_*), it never ejects.
// - The ejection cap: at most max_ejection_percent of the endpoints (rounded down), but always one when
//   there are at least two, and never the last one that is not ejected (Envoy's max_ejection_percent and
//   always_eject_one_host, without the flip-flop). A rule that fires when the cap is reached marks the
//   endpoint `detected`: it stays in load balancing and counts as unhealthy.
// - Ejection time: base_ejection_time × the endpoint's ejection level (1 on the first ejection, +1 on each
//   re-ejection up to where the time reaches its cap, under every rule; −1 at each interval's end that closes a
//   whole interval of health: healthy at its start and end, with no ejection or detection in it),
//   capped at max_ejection_time, plus 0..jitter (per endpoint and ejection).
// - Return: the first outcome recorded after the time is over (load balancing uses the endpoint again as
//   soon as its time is over, without a timer), or the main thread's once-a-second look, or early by a successful health probe
//   (probe.path), or by an operator.
// - The upstream: when endpoints turn unhealthy and fewer than min_healthy_percent of them are healthy
//   (neither ejected nor detected), or none is, `record`/`evaluate`/`set_endpoints` say so and the caller
//   opens the upstream's (closed) breaker, so the fallback answers — instead of Envoy's panic mode, which
//   spreads traffic over known-bad endpoints. A single endpoint is left to the breaker alone.
//
// Every endpoint's state lives in one 64-bit word (upstream/endpoint_health.hpp); every change is a
// compare-and-swap and only the winner counts, logs and moves the upstream's totals.
#pragma once
#include "config/config.hpp"
#include "core/asio.hpp"
#include "core/clock.hpp"
#include "core/enum_names.hpp"
#include "core/error.hpp"
#include "upstream/endpoint_health.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace breakerbox::resilience {

using upstream::endpoint_health;
using upstream::endpoint_state;
using upstream::endpoint_word;
inline constexpr enum_name<endpoint_state> endpoint_state_names[]{{endpoint_state::healthy, "healthy"},
                                                                  {endpoint_state::detected, "detected"},
                                                                  {endpoint_state::ejected, "ejected"}};
} // namespace breakerbox::resilience

namespace breakerbox::upstream {
// Found by ADL (endpoint_state lives in upstream/).
constexpr std::span<const enum_name<endpoint_state>> names_of(endpoint_state) noexcept
{
    return resilience::endpoint_state_names;
}
} // namespace breakerbox::upstream

namespace breakerbox::resilience {

// Why an endpoint was detected or ejected: the `rule` label of the metrics (Envoy's names).
enum class outlier_rule : std::uint8_t {
    consecutive_5xx,
    consecutive_local_origin_failure,
    failure_percentage,
    success_rate,
    manual
};
constexpr std::size_t outlier_rule_count = 5;
inline constexpr enum_name<outlier_rule> outlier_rule_names[]{
    {outlier_rule::consecutive_5xx, "consecutive_5xx"},
    {outlier_rule::consecutive_local_origin_failure, "consecutive_local_origin_failure"},
    {outlier_rule::failure_percentage, "failure_percentage"},
    {outlier_rule::success_rate, "success_rate"},
    {outlier_rule::manual, "manual"}};
constexpr std::span<const enum_name<outlier_rule>> names_of(outlier_rule) noexcept { return outlier_rule_names; }

// What one attempt was for the endpoint that served it.
enum class endpoint_outcome : std::uint8_t {
    success,              // an answer the classification does not call a failure
    failure_status,       // an answer it calls a failure (by default 5xx)
    local_origin_failure, // no usable answer: connect, TLS, timeout, reset, invalid response
    ignored,              // the classification ignores it: nothing changes
};

struct endpoint_view {
    std::string address;
    endpoint_state state;
    bool manual;
    std::uint32_t consecutive_5xx;
    std::uint32_t consecutive_local_origin_failure;
    std::uint64_t ejections;
    std::uint32_t level;
    std::optional<outlier_rule> last_rule;
    nanos ejected_for; // time left of the ejection (0 when not ejected; -1 for a manual one)
};

// What the caller does after reporting: open the upstream's breaker with `reason` (rare path).
struct outlier_verdict {
    bool open_upstream = false;
    std::string reason;
};

class outlier_detector {
public:
    outlier_detector(std::string upstream, const config::outlier_config& cfg, std::uint64_t seed);

    const config::outlier_config& cfg() const noexcept { return cfg_; }

    // Main thread: the upstream's addresses now. Addresses that remain keep their record (state, level,
    // streaks); records of addresses that left are retired (no longer counted). An empty list (nothing
    // resolved) changes nothing.
    outlier_verdict set_endpoints(const std::vector<tcp::endpoint>& addresses);
    // Any thread, off the hot path (a worker installing new addresses): the record for `address`; a
    // detached record (never ejected) when the list no longer has it.
    std::shared_ptr<endpoint_health> find(const tcp::endpoint& address) const;
    std::vector<std::shared_ptr<endpoint_health>> endpoints() const;

    // Ends `ep`'s ejection when its time is over (a pick may use it already: see endpoint_word::keeps_out).
    void return_if_due(endpoint_health& ep, nanos now) noexcept;
    // Hot path: one attempt's outcome on `ep`. The usual case — a success on a healthy endpoint with
    // no streak and no rate rule — is three relaxed loads and no store (no shared cache line written).
    outlier_verdict record(endpoint_health& ep, endpoint_outcome o, nanos now) noexcept
    {
        if (o == endpoint_outcome::success && !counts_rates_ && ep.word.load(std::memory_order_relaxed) == 0 &&
            (ep.consecutive_5xx.load(std::memory_order_relaxed) | ep.consecutive_local_origin.load(std::memory_order_relaxed)) ==
                0)
            return {}; // word 0: healthy, not retired
        return record_slow(ep, o, now);
    }

    // Main thread, once a second: ends the ejections whose time is over.
    void expire(nanos now);
    // Main thread, every interval: ends ejections whose time is over, applies the rate rules, lowers the
    // levels of endpoints that stayed healthy.
    outlier_verdict evaluate(nanos now);
    // Main thread: a health probe of an ejected endpoint succeeded.
    void probe_succeeded(endpoint_health& ep, nanos now);
    // Operator (admin API). Empty on success, else why not (unknown address, the last healthy one).
    std::string eject_manually(const std::string& address, std::string_view who, nanos now, outlier_verdict& verdict);
    std::string return_manually(const std::string& address, std::string_view who, nanos now);

    // Reporting.
    std::vector<endpoint_view> view(nanos now) const;
    std::uint32_t endpoint_count() const noexcept { return endpoint_count_.load(std::memory_order_relaxed); }
    std::uint32_t ejected_count() const noexcept { return ejected_count_.load(std::memory_order_relaxed); }
    // Ejected or detected (for reports: another thread may be between changing a state and this total).
    std::uint32_t unhealthy_count() const noexcept
    {
        return static_cast<std::uint32_t>(std::max(0, unhealthy_count_.load(std::memory_order_relaxed)));
    }
    std::uint64_t detected_total(outlier_rule r) const noexcept { return detected_[index(r)].load(std::memory_order_relaxed); }
    std::uint64_t enforced_total(outlier_rule r) const noexcept { return enforced_[index(r)].load(std::memory_order_relaxed); }
    // Times the upstream's breaker was opened because too few endpoints were healthy.
    std::uint64_t upstream_opens() const noexcept { return upstream_opens_.load(std::memory_order_relaxed); }
    void count_upstream_open() noexcept { upstream_opens_.fetch_add(1, std::memory_order_relaxed); }
    // How many endpoints may be ejected at once out of `n` (the cap rule above).
    std::uint32_t max_ejected(std::uint32_t n) const noexcept;

private:
    static nanos from_ms(std::int64_t ms) noexcept { return ms * 1'000'000; }
    static std::int64_t to_ms_ceil(nanos t) noexcept { return (t + 999'999) / 1'000'000; }
    static std::size_t index(outlier_rule r) noexcept { return static_cast<std::size_t>(r); }

    outlier_verdict record_slow(endpoint_health& ep, endpoint_outcome o, nanos now) noexcept;
    // A rule fired for `ep`: ejects it when the cap allows, marks it detected otherwise (or only
    // counts, when `enforce` is false). `figures`: what the log line says about it.
    outlier_verdict fire(endpoint_health& ep, outlier_rule rule, bool enforce, const std::string& figures, nanos now);
    bool try_eject(endpoint_health& ep, std::uint64_t bits, outlier_rule rule, bool manual, const std::string& figures,
                   nanos now);
    // Whether `bits` moved from ejected or detected to healthy by this call (false: it was healthy,
    // retired, or another thread changed it first).
    bool try_return(endpoint_health& ep, std::uint64_t bits, std::string_view why, nanos now) noexcept;
    // Whether a rule firing for `ep` could change anything (so the failure path builds no text otherwise).
    bool may_change(const endpoint_health& ep) const noexcept;
    // Takes one place among `limit` ejections at once, or says there is none.
    bool take_ejection_place(std::uint32_t limit) noexcept;
    nanos ejection_time(const endpoint_health& ep, std::uint32_t level, std::uint64_t nth) const noexcept;
    std::uint32_t max_level() const noexcept;
    // Main thread, at an interval's end: one level down after a whole interval of health.
    static void decay_level_if_healthy(endpoint_health& ep) noexcept;
    outlier_verdict upstream_verdict() const;
    void apply_failure_percentage(const std::vector<std::shared_ptr<endpoint_health>>& eps,
                                  const std::vector<std::pair<std::uint64_t, std::uint64_t>>& figures, nanos now,
                                  outlier_verdict& out);
    void apply_success_rate(const std::vector<std::shared_ptr<endpoint_health>>& eps,
                            const std::vector<std::pair<std::uint64_t, std::uint64_t>>& figures, nanos now, outlier_verdict& out);
    std::shared_ptr<endpoint_health> find_label(const std::string& address) const;

    const std::string upstream_;
    const config::outlier_config cfg_;
    const std::uint64_t seed_;
    const bool counts_rates_; // a rate rule is on: attempts are counted per interval

    mutable std::mutex list_mutex_; // endpoints_: written on the main thread, read off the hot path
    std::vector<std::shared_ptr<endpoint_health>> endpoints_;
    std::atomic<std::uint32_t> endpoint_count_{0};
    std::atomic<std::uint32_t> ejected_count_{0};
    std::atomic<std::int32_t> unhealthy_count_{0}; // ejected or detected (briefly below 0 while a retirement races a change)
    std::array<std::atomic<std::uint64_t>, outlier_rule_count> detected_{};
    std::array<std::atomic<std::uint64_t>, outlier_rule_count> enforced_{};
    std::atomic<std::uint64_t> upstream_opens_{0};
};

// The endpoint's view of an attempt's result: `answered`, whether the upstream answered (else the way
// to it failed: a local-origin failure in Envoy's terms), `classified_*` the classification's verdict.
constexpr endpoint_outcome endpoint_outcome_of(bool answered, bool classified_failure, bool classified_ignored) noexcept
{
    if (classified_ignored)
        return endpoint_outcome::ignored;
    if (answered)
        return classified_failure ? endpoint_outcome::failure_status : endpoint_outcome::success;
    return classified_failure ? endpoint_outcome::local_origin_failure : endpoint_outcome::ignored;
}

} // namespace breakerbox::resilience
