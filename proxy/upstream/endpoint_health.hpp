// What outlier detection knows about one address of one upstream, shared by every worker that balances
// over it (resilience::outlier_detector decides; load balancing here only reads). One 64-bit state word
// {until_ms:59, spare:1, retired:1, manual:1, state:2} holds the state and when an ejection ends, so a
// reader never pairs a new state with an old end time; every change is a compare-and-swap by the
// detector, and only the winner counts and logs.
#pragma once
#include "core/asio.hpp"
#include "core/clock.hpp"

#include <atomic>
#include <cstdint>
#include <string>

namespace breakerbox::upstream {

enum class endpoint_state : std::uint8_t { healthy = 0, detected = 1, ejected = 2 };

struct endpoint_word {
    endpoint_state state = endpoint_state::healthy;
    bool manual = false;  // ejected by an operator: no end time
    bool retired = false; // no longer an address of the upstream: never ejected, never counted
    std::int64_t until_ms = 0;

    static endpoint_word decode(std::uint64_t bits) noexcept
    {
        return {static_cast<endpoint_state>(bits & 3), ((bits >> 2) & 1) != 0, ((bits >> 3) & 1) != 0,
                static_cast<std::int64_t>(bits >> 5)};
    }
    std::uint64_t encode() const noexcept
    {
        return static_cast<std::uint64_t>(state) | (std::uint64_t{manual} << 2) | (std::uint64_t{retired} << 3) |
               (static_cast<std::uint64_t>(until_ms) << 5);
    }
    // Ejected and not yet due back (the detector makes the return official; until then a pick may
    // already use an endpoint whose time is over).
    bool keeps_out(nanos now) const noexcept
    {
        return state == endpoint_state::ejected && (manual || now < until_ms * 1'000'000);
    }
};

struct endpoint_health {
    explicit endpoint_health(const tcp::endpoint& a) : address(a), label(label_of(a)) { }
    // "127.0.0.1:7001", "[::1]:7001"
    static std::string label_of(const tcp::endpoint& a);

    // Hot path (load balancing): one relaxed-acquire load.
    bool in_load_balancing(nanos now) const noexcept
    {
        return !endpoint_word::decode(word.load(std::memory_order_acquire)).keeps_out(now);
    }

    const tcp::endpoint address;
    const std::string label; // "127.0.0.1:7001", "[::1]:7001"
    std::atomic<std::uint64_t> word{0};
    std::atomic<std::uint32_t> consecutive_5xx{0};
    std::atomic<std::uint32_t> consecutive_local_origin{0};
    // This interval's figures for the rate rules (written only when one is enabled).
    std::atomic<std::uint64_t> interval_requests{0};
    std::atomic<std::uint64_t> interval_failures{0};
    std::atomic<std::uint32_t> level{0}; // drives the ejection time
    std::atomic<std::uint64_t> ejections{0};
    std::atomic<std::uint8_t> last_rule{0};
    // Main thread only (outlier_detector::evaluate): what the previous interval's end saw, so that the
    // level decays only after a whole interval of real health (no ejection, no detection in it).
    bool healthy_at_last_evaluation = false;
    std::uint64_t ejections_at_last_evaluation = 0;
};

} // namespace breakerbox::upstream
