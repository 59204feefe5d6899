// Microbenchmarks of the resilience hot paths: breaker admit + record, the windows, fast rejection.
//   build/bench/resilience_bench --benchmark_min_time=0.5
#include "resilience/circuit_breaker.hpp"

#include <benchmark/benchmark.h>

#include <atomic>

using namespace breakerbox;
using namespace breakerbox::resilience;

namespace {

// Simulated time shared by all benchmark threads: 1 µs per call, so that a 1 s bucket sees at most
// 1e6 calls (a bucket holds 2^21 - 1), and threads stay in the same bucket (a thread with an older
// timestamp than the bucket would take the cheaper "stale" path and flatter the figures). The atomic
// increment is included in the timings: the numbers are an upper bound.
std::atomic<nanos> g_ticks{0};
nanos tick() noexcept { return seconds(1000) + g_ticks.fetch_add(1000, std::memory_order_relaxed); }

config::breaker_config bench_config(config::window_type type)
{
    config::breaker_config c;
    c.window = type;
    c.consecutive_failures = 1000000; // never trips: measures the closed-state hot path
    c.failure_rate_threshold = 100;
    return c;
}

circuit_breaker& shared_breaker(config::window_type type)
{
    static circuit_breaker time_cb("bench", bench_config(config::window_type::time_based), steady_clock_source::instance());
    static circuit_breaker count_cb("bench", bench_config(config::window_type::count_based), steady_clock_source::instance());
    return type == config::window_type::time_based ? time_cb : count_cb;
}

// As the forwarder calls it: the request's own start and end timestamps are passed in (the proxy reads
// them anyway for the deadline and the latency histogram), so the breaker adds no clock read.
void admit_record_success(benchmark::State& state, config::window_type type)
{
    auto& cb = shared_breaker(type);
    for (auto _ : state) {
        const nanos now = tick();
        auto p = cb.try_acquire(now);
        cb.on_result(p, outcome::success, now);
        benchmark::DoNotOptimize(p);
    }
}

// The same with the breaker reading the clock itself, twice per call.
void admit_record_with_clock_reads(benchmark::State& state)
{
    auto& cb = shared_breaker(config::window_type::time_based);
    for (auto _ : state) {
        auto p = cb.try_acquire();
        cb.on_result(p, outcome::success);
        benchmark::DoNotOptimize(p);
    }
}

void admit_record_mixed(benchmark::State& state, config::window_type type)
{
    // Its own breaker: 10% failures must never trip it (the threshold is 100%), so it stays closed.
    static circuit_breaker cb_time("bench", bench_config(config::window_type::time_based), steady_clock_source::instance());
    static circuit_breaker cb_count("bench", bench_config(config::window_type::count_based), steady_clock_source::instance());
    auto& cb = type == config::window_type::time_based ? cb_time : cb_count;
    std::uint32_t i = 0;
    for (auto _ : state) {
        const nanos now = tick();
        auto p = cb.try_acquire(now);
        cb.on_result(p, (++i % 10) == 0 ? outcome::failure : outcome::success, now);
        benchmark::DoNotOptimize(p);
    }
}

void rejected_while_open(benchmark::State& state)
{
    static circuit_breaker cb("bench", bench_config(config::window_type::time_based), steady_clock_source::instance());
    if (state.thread_index() == 0)
        cb.force_open("bench");
    nanos now = steady_clock_source::instance().now();
    for (auto _ : state) {
        auto p = cb.try_acquire(now);
        benchmark::DoNotOptimize(p);
    }
}

void time_window_record(benchmark::State& state)
{
    static time_window w(seconds(10), 10);
    for (auto _ : state)
        w.record(tick(), false, false);
}

void count_window_record(benchmark::State& state)
{
    static count_window w(100);
    for (auto _ : state)
        w.record(false, false);
}

} // namespace

BENCHMARK_CAPTURE(admit_record_success, time_window, config::window_type::time_based)->Threads(1)->Threads(2);
BENCHMARK_CAPTURE(admit_record_success, count_window, config::window_type::count_based)->Threads(1)->Threads(2);
BENCHMARK_CAPTURE(admit_record_mixed, time_window_10pct_failures, config::window_type::time_based)->Threads(1)->Threads(2);
BENCHMARK(admit_record_with_clock_reads)->Threads(1)->Threads(2);
BENCHMARK(rejected_while_open)->Threads(1)->Threads(2);
BENCHMARK(time_window_record)->Threads(1)->Threads(2);
BENCHMARK(count_window_record)->Threads(1)->Threads(2);

BENCHMARK_MAIN();
