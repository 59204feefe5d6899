// RAII for a breaker permit across co_awaits: the outcome is recorded once with complete(); if the
// request ends any other way (client gone, coroutine destroyed, local decision), the permit is released
// so a half-open probe slot can never leak. With slow_calls.in_flight, the worker's sweep may record the
// call as slow before it ends (then complete() adds only what the end tells). Owned by one request's
// coroutine frame, on its worker's thread.
#pragma once
#include "resilience/circuit_breaker.hpp"

namespace breakerbox::resilience {

class breaker_permit {
public:
    breaker_permit(circuit_breaker& cb, permit p) noexcept : cb_(&cb), permit_(p) { }
    breaker_permit(const breaker_permit&) = delete;
    breaker_permit& operator=(const breaker_permit&) = delete;
    ~breaker_permit()
    {
        if (cb_ && !slow_recorded_) // a probe recorded as slow has already given its slot back
            cb_->release(permit_);
    }

    const permit& get() const noexcept { return permit_; }
    // `body_to_come`: a streamed answer's head, whose body may still break (circuit_breaker::
    // on_stream_head). After a slow-in-flight record, only what the end adds.
    void complete(outcome o, nanos now, bool body_to_come = false) noexcept
    {
        if (cb_ && slow_recorded_)
            cb_->on_result_after_slow(permit_, o, now);
        else if (cb_ && body_to_come)
            cb_->on_stream_head(permit_, o, now);
        else if (cb_)
            cb_->on_result(permit_, o, now);
        cb_ = nullptr;
    }
    // slow_calls.in_flight: records the call as slow now if it has run that long (once). Called by the
    // worker's sweep, on the thread that owns the request.
    void record_if_slow(nanos now) noexcept
    {
        if (cb_ && !slow_recorded_ && cb_->slow_in_flight_due(permit_, now)) {
            cb_->on_slow_in_flight(permit_, now);
            slow_recorded_ = true;
        }
    }
    bool slow_recorded() const noexcept { return slow_recorded_; }
    // The call's time is measured from `t` instead of its admission (a streamed upload's time was the
    // client's, not the upstream's: docs/streaming.md).
    void measure_from(nanos t) noexcept { permit_.started = t; }

private:
    circuit_breaker* cb_;
    permit permit_;
    bool slow_recorded_ = false;
};

} // namespace breakerbox::resilience
