// Many threads against one breaker (run under ThreadSanitizer too): half-open never admits more probes
// than allowed, and each transition is published exactly once.
#include "../support/manual_clock.hpp"
#include "resilience/circuit_breaker.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

using namespace breakerbox;
using namespace breakerbox::resilience;

TEST(circuit_breaker_stress, probes_never_exceed_the_limit_and_each_trip_is_published_once)
{
    config::breaker_config c;
    c.window = config::window_type::count_based;
    c.window_size = 50;
    c.minimum_calls = 10;
    c.consecutive_failures = 3;
    c.open_duration = millis(1);
    c.open_duration_multiplier = 1;
    c.open_duration_jitter = 0;
    c.half_open_max_probes = 2;
    c.half_open_successes_to_close = 2;
    c.half_open_max_wait = millis(50);
    // The threads drive a shared manual clock forward as they go: time passes with the work, not with
    // the machine's speed, so the number of open/half-open cycles does not depend on timing.
    manual_clock clk;
    std::mutex events_mutex;
    std::vector<transition_event> events;
    circuit_breaker cb("svc", c, clk, [&](const transition_event& e) {
        std::lock_guard lock(events_mutex);
        events.push_back(e);
    });

    // Probes in flight per half-open period (generation). A probe left over from an earlier period
    // (re-opened by another probe's failure) is no longer that period's: it is abandoned, its outcome ignored.
    std::vector<std::atomic<int>> probes_now(65536);
    std::atomic<int> max_probes_seen{0};
    std::atomic<bool> stop{false};
    constexpr int threads = 8;
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            std::uint64_t x = 0x9e3779b97f4a7c15ull * (t + 1);
            for (int i = 0; i < 200000 && !stop.load(std::memory_order_relaxed); ++i) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                clk.advance(50'000); // 50 µs of simulated time per call
                auto p = cb.try_acquire();
                if (!p.admitted())
                    continue;
                if (p.kind == admission::probe) {
                    int now = probes_now[p.generation].fetch_add(1) + 1;
                    int seen = max_probes_seen.load();
                    while (now > seen && !max_probes_seen.compare_exchange_weak(seen, now)) { }
                    for (int k = 0; k < 20; ++k) // hold the probe a moment, as a real call would
                        std::this_thread::yield();
                }
                // Counted only while certainly held: after the breaker granted it, and until just before it
                // is handed back, so the count can only under-state what the breaker admitted.
                if (p.kind == admission::probe)
                    probes_now[p.generation].fetch_sub(1);
                switch (x % 8) {
                case 0: cb.release(p); break;
                case 1:
                case 2:
                case 3: cb.on_result(p, outcome::failure); break;
                default: cb.on_result(p, outcome::success); break;
                }
            }
        });
    }
    for (auto& th : pool)
        th.join();

    EXPECT_LE(max_probes_seen.load(), 2);
    // Every transition published once: the listener saw exactly what the counters counted.
    std::lock_guard lock(events_mutex);
    auto snapshot = cb.snapshot();
    EXPECT_EQ(events.size(), snapshot.transitions);
    EXPECT_GT(snapshot.trips, 100u);
    std::uint64_t opens = 0;
    for (const auto& e : events)
        opens += e.to == breaker_state::open;
    EXPECT_EQ(opens, snapshot.trips);
}
