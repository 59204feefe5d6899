// RAII for a breaker permit across co_awaits: the outcome is recorded once with complete(); if the
// request ends any other way (client gone, coroutine destroyed, local decision), the permit is released
// so a half-open probe slot can never leak. Owned by one request's coroutine frame.
#pragma once
#include "resilience/circuit_breaker.hpp"

namespace breakerbox::resilience {

class breaker_permit {
public:
    breaker_permit(circuit_breaker& cb, permit p) noexcept : cb_(&cb), permit_(p) {}
    breaker_permit(const breaker_permit&) = delete;
    breaker_permit& operator=(const breaker_permit&) = delete;
    ~breaker_permit()
    {
        if (cb_)
            cb_->release(permit_);
    }

    const permit& get() const noexcept { return permit_; }
    void complete(outcome o, nanos now) noexcept
    {
        if (cb_)
            cb_->on_result(permit_, o, now);
        cb_ = nullptr;
    }

private:
    circuit_breaker* cb_;
    permit permit_;
};

} // namespace breakerbox::resilience
