// The queue fallback's message work, independent of the store and the sockets: whether a request may be
// queued, the request as stored (and back), its payload fingerprint, and the answers (202, 422, the
// status resource). Pure functions, unit-tested.
#pragma once
#include "config/config.hpp"
#include "http/message.hpp"
#include "queue/queue_store.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace breakerbox::queue {

inline constexpr std::string_view idempotency_key_header = "Idempotency-Key"; // IETF draft-ietf-httpapi-idempotency-key-header
inline constexpr std::string_view attempt_header = "X-Breakerbox-Delivery-Attempt";
inline constexpr std::string_view queue_id_header = "X-Breakerbox-Queue-Id";

// Whether the client asked for an asynchronous answer: a `respond-async` preference in Prefer (RFC 7240 §4.1).
bool prefers_respond_async(const http::request& req);

// Whether `req` (its method, and `upstream_target`: the target as sent upstream) may be queued by `q`.
// The body size is checked apart (its refusal is counted).
bool queueable(const config::queue_fallback_config& q, const http::request& req, std::string_view upstream_target);

// The request as it is stored: `req` already rewritten for the upstream. Content-Length and
// Transfer-Encoding are left out (delivery frames the body anew), the client's Idempotency-Key too (it
// is stored apart and sent on every delivery), and — unless `keep_credentials` — Authorization, Cookie
// and Proxy-Authorization.
stored_request to_stored(const http::request& req, bool keep_credentials);

// SHA-256 over method, target, body and `principal` (the request's Authorization value, which is never
// stored: only this hash of it), as 64 hex digits: what an Idempotency-Key is bound to. Keys are scoped
// per caller (the draft's advice), so two callers behind one sidecar that happen to send the same key and
// payload get a 422, never each other's entry.
std::string fingerprint(const stored_request& r, std::string_view principal = {});

// The request a delivery sends: the stored one with Idempotency-Key, the attempt number and the queue id,
// and the configured delivery headers (replacing fields of the same name).
http::request to_delivery(const entry& e, const config::queue_delivery_config& d);

// 202 Accepted for a stored (or already stored) request: Location, Retry-After (whole seconds; none when
// `retry_after_seconds` is 0, which means no probe is scheduled: an operator holds the circuit open),
// Preference-Applied when asked, and the JSON body of docs/queue.md.
http::response accepted_response(const enqueue_result& r, std::string_view upstream, std::string_view status_path,
                                 long retry_after_seconds, bool respond_async_asked, unsigned version);

// 422: the Idempotency-Key is already bound to another payload (draft §2.7).
http::response key_reused_response(std::string_view upstream, unsigned version);

// The status resource's JSON (docs/queue.md).
std::string status_json(const entry& e);

// The id in a status resource's target (`<status_path><id>`, a query ignored), when it has the form of
// one (32 lower-case hex digits); nullopt otherwise.
std::optional<std::string> status_id(std::string_view target, std::string_view status_path);

// The status resource's answers: 200 with status_json, 404 for an unknown id, 503 when the store could
// not answer (never a 404: the request may well be queued), 405 for a method other than GET and HEAD.
// JSON bodies, Cache-Control: no-store.
http::response status_response(const queue_result<std::optional<entry>>& found, unsigned version);
http::response status_method_not_allowed(unsigned version);

// The upstream's answer as the status resource keeps it: the fields that describe it (Content-Type,
// -Language, -Location, Location, ETag, Last-Modified, Retry-After; never Set-Cookie) as a JSON object
// (lower-case names, repeated names joined with ", ") and at most `limit` bytes of its body.
void keep_response(const http::response& res, std::uint64_t limit, delivery_outcome& out);

// What a delivery's answer means for the entry: 2xx delivered; 401, 403 (credentials: fixable by a
// reload), 408, 409 (the key is still being processed, per the Idempotency-Key draft), 425, 429 and 5xx
// retryable; 3xx and any other 4xx terminal.
delivery_result classify_delivery_status(unsigned status);

} // namespace breakerbox::queue
