// Replays long random outcome sequences against a deliberately simple single-threaded reference model
// of the documented semantics, and requires the same state after every step.
#include "../support/manual_clock.hpp"
#include "resilience/circuit_breaker.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <random>

using namespace breakerbox;
using namespace breakerbox::resilience;

namespace {

// The specification, written plainly: lists instead of rings, no atomics, no packing.
class reference_breaker {
public:
    explicit reference_breaker(const config::breaker_config& c) : c_(c) { }

    breaker_state state = breaker_state::closed;

    admission acquire(nanos now)
    {
        if (state == breaker_state::open && now >= until_) {
            state = breaker_state::half_open;
            until_ = now + c_.half_open_max_wait;
            ++generation_;
            calls_.clear();
            consecutive_ = 0;
            probes_ = successes_ = 0;
        }
        if (state == breaker_state::half_open && now >= until_) {
            trip(now, false);
            return admission::rejected_open;
        }
        if (state == breaker_state::open)
            return admission::rejected_open;
        if (state == breaker_state::half_open) {
            if (probes_ >= c_.half_open_max_probes)
                return admission::rejected_probes;
            ++probes_;
            return admission::probe;
        }
        return admission::admitted;
    }

    void result(admission kind, int generation, nanos started, nanos now, outcome o)
    {
        if (kind != admission::admitted && kind != admission::probe)
            return;
        if (generation != generation_)
            return;
        if (o == outcome::ignored) {
            if (kind == admission::probe)
                --probes_;
            return;
        }
        bool failure = o == outcome::failure;
        bool slow = c_.slow_call_enabled && now - started >= c_.slow_call_duration;
        if (kind == admission::probe) {
            --probes_;
            if (failure || slow) {
                trip(now, false);
            } else if (++successes_ >= c_.half_open_successes_to_close) {
                state = breaker_state::closed;
                closed_since_ = now;
                ++generation_;
                consecutive_ = 0;
            }
            return;
        }
        calls_.push_back({now / bucket_width(), failure, slow});
        if (c_.window == config::window_type::count_based && calls_.size() > c_.window_size)
            calls_.pop_front();
        consecutive_ = failure ? consecutive_ + 1 : 0;
        if (!failure && !slow)
            return;
        if (c_.consecutive_failures && consecutive_ >= c_.consecutive_failures)
            return trip(now, true);
        std::uint32_t calls = 0, failures = 0, slows = 0;
        for (const auto& r : calls_) {
            if (c_.window == config::window_type::time_based && r.bucket <= now / bucket_width() - c_.window_buckets)
                continue;
            ++calls;
            failures += r.failure;
            slows += r.slow;
        }
        if (calls == 0)
            return;
        bool enough = calls >= c_.minimum_calls || (c_.minimum_failures && failures >= c_.minimum_failures);
        if (c_.failure_rate_enabled && enough && 100.0 * failures / calls >= c_.failure_rate_threshold)
            return trip(now, true);
        if (c_.slow_call_enabled && calls >= c_.minimum_calls && 100.0 * slows / calls >= c_.slow_call_rate_threshold)
            return trip(now, true);
    }

    int generation() const { return generation_; }

private:
    struct call_record {
        std::int64_t bucket;
        bool failure, slow;
    };
    nanos bucket_width() const
    {
        return c_.window == config::window_type::time_based ? c_.window_duration / c_.window_buckets : 1;
    }
    void trip(nanos now, bool from_closed)
    {
        if (from_closed && now - closed_since_ >= c_.open_backoff_reset_after)
            trips_in_row_ = 0;
        double d = static_cast<double>(c_.open_duration) * std::pow(c_.open_duration_multiplier, trips_in_row_);
        d = std::min(d, static_cast<double>(c_.max_open_duration));
        ++trips_in_row_;
        state = breaker_state::open;
        until_ = now + static_cast<nanos>(d);
        ++generation_;
    }

    config::breaker_config c_;
    std::deque<call_record> calls_;
    std::uint32_t consecutive_ = 0, probes_ = 0, successes_ = 0, trips_in_row_ = 0;
    nanos until_ = 0;
    nanos closed_since_ = -seconds(1'000'000);
    int generation_ = 0;
};

config::breaker_config random_config(std::mt19937_64& rng)
{
    config::breaker_config c;
    auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    c.window = pick(0, 1) ? config::window_type::time_based : config::window_type::count_based;
    c.window_size = pick(5, 30);
    c.window_duration = seconds(pick(2, 10));
    c.window_buckets = pick(1, 10);
    c.minimum_calls = pick(1, 20);
    c.minimum_failures = pick(0, 1) ? pick(1, 10) : 0;
    c.consecutive_failures = pick(0, 1) ? pick(1, 8) : 0;
    c.failure_rate_enabled = pick(0, 3) > 0;
    c.failure_rate_threshold = pick(10, 100);
    c.slow_call_enabled = pick(0, 1);
    c.slow_call_duration = millis(pick(10, 300));
    c.slow_call_rate_threshold = pick(20, 100);
    c.open_duration = millis(pick(1, 20) * 100);
    c.open_duration_multiplier = pick(1, 3);
    c.max_open_duration = c.open_duration * pick(1, 8);
    c.open_duration_jitter = 0; // the model has no jitter; jitter has its own test
    c.open_backoff_reset_after = seconds(pick(1, 20));
    c.half_open_max_probes = pick(1, 3);
    c.half_open_successes_to_close = pick(1, 3);
    c.half_open_max_wait = millis(pick(1, 30) * 100);
    return c;
}

} // namespace

TEST(circuit_breaker_model, random_sequences_match_the_reference)
{
    for (std::uint64_t seed = 1; seed <= 300; ++seed) {
        std::mt19937_64 rng(seed);
        auto cfg = random_config(rng);
        manual_clock clk(seconds(100));
        circuit_breaker real("svc", cfg, clk);
        reference_breaker model(cfg);
        struct pending {
            permit p;
            admission kind;
            int model_generation;
        };
        std::vector<pending> in_flight;
        for (int step = 0; step < 3000; ++step) {
            int action = std::uniform_int_distribution<int>(0, 9)(rng);
            if (action <= 1) {
                clk.advance(millis(std::uniform_int_distribution<int>(1, 400)(rng)));
            } else if (action <= 5 || in_flight.empty()) {
                auto p = real.try_acquire();
                auto kind = model.acquire(clk.now());
                ASSERT_EQ(p.kind, kind) << "seed " << seed << " step " << step;
                if (p.admitted())
                    in_flight.push_back({p, kind, model.generation()});
            } else {
                auto i = std::uniform_int_distribution<std::size_t>(0, in_flight.size() - 1)(rng);
                auto call = in_flight[i];
                in_flight.erase(in_flight.begin() + static_cast<long>(i));
                int r = std::uniform_int_distribution<int>(0, 9)(rng);
                outcome o = r < 5 ? outcome::success : r < 9 ? outcome::failure : outcome::ignored;
                real.on_result(call.p, o);
                model.result(call.kind, call.model_generation, call.p.started, clk.now(), o);
            }
            ASSERT_EQ(real.state(), model.state) << "seed " << seed << " step " << step;
        }
    }
}
