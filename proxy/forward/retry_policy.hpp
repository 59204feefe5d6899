// The retry rules, as pure functions (Envoy keeps its RetryState beside the router in the same way):
// which requests may be sent again, after which outcomes, and how long to wait first. The forwarder's
// attempt loop applies them; the retry budget and the breaker have the last word there.
#pragma once
#include "config/config.hpp"
#include "core/clock.hpp"
#include "core/error.hpp"
#include "http/message.hpp"

#include <cstdint>
#include <optional>

namespace breakerbox::forward {

// Whether the request may be sent more than once (RFC 9110 §9.2.2): its method is in retries.methods
// (idempotent ones by default), or it is a POST with retries.allow_post or an Idempotency-Key field.
bool method_retryable(const http::request& req, const config::retry_config& rc);

// Whether an attempt that ended with `error` (ok: the upstream answered `response`) is worth another.
bool outcome_retryable(proxy_error error, const http::response& response, const config::retry_config& rc);

// Delay before attempt `attempt + 1` (attempt counts from 1): full jitter over
// min(backoff_max, backoff_base × 2^(attempt-1)) drawn from `random`, or the upstream's Retry-After when
// it gave a valid one (RFC 9110 §10.2.3: delay-seconds or an HTTP-date, a date in the past meaning now;
// an invalid value is ignored). nullopt: do not retry (a Retry-After beyond retry_after_max).
// `now_unix`: the wall clock, seconds since the epoch (for HTTP-dates).
std::optional<nanos> retry_delay(proxy_error error, const http::response& response, const config::retry_config& rc,
                                 unsigned attempt, std::uint64_t random, std::int64_t now_unix);

} // namespace breakerbox::forward
