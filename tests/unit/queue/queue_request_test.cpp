// The queue fallback's message rules: what may be queued, what is stored (no credentials, no framing),
// the payload an Idempotency-Key is bound to, what a delivery sends, and how its answer is classified.
#include "queue/queue_request.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace breakerbox::queue {
namespace {

namespace bhttp = boost::beast::http;

http::request post(std::string target, std::string body = "{}")
{
    http::request req{bhttp::verb::post, target, 11};
    req.set(bhttp::field::host, "orders");
    req.body() = std::move(body);
    req.prepare_payload();
    return req;
}

TEST(queue_request, respond_async_is_found_among_other_preferences)
{
    auto req = post("/o");
    EXPECT_FALSE(prefers_respond_async(req));
    req.set(bhttp::field::prefer, "return=minimal, wait=10");
    EXPECT_FALSE(prefers_respond_async(req));
    req.set(bhttp::field::prefer, "wait=10, Respond-Async");
    EXPECT_TRUE(prefers_respond_async(req));
    req.set(bhttp::field::prefer, "respond-async; x=1");
    EXPECT_TRUE(prefers_respond_async(req));
    req.set(bhttp::field::prefer, "respond-asynchronously");
    EXPECT_FALSE(prefers_respond_async(req));
}

TEST(queue_request, queueable_checks_method_path_and_preference)
{
    config::queue_fallback_config q;
    EXPECT_TRUE(queueable(q, post("/o"), "/o"));
    http::request get{bhttp::verb::get, "/o", 11};
    EXPECT_FALSE(queueable(q, get, "/o"));
    q.methods = {"PUT"};
    EXPECT_FALSE(queueable(q, post("/o"), "/o"));
    q.methods = {"POST"};
    q.path_prefixes = {"/orders/"};
    EXPECT_FALSE(queueable(q, post("/o"), "/o"));
    EXPECT_TRUE(queueable(q, post("/orders/1"), "/orders/1"));
    q.require_prefer_async = true;
    auto asked = post("/orders/1");
    EXPECT_FALSE(queueable(q, asked, "/orders/1"));
    asked.set(bhttp::field::prefer, "respond-async");
    EXPECT_TRUE(queueable(q, asked, "/orders/1"));
}

TEST(queue_request, credentials_and_framing_are_not_stored_unless_asked)
{
    auto req = post("/o", "body");
    req.set(bhttp::field::authorization, "Bearer secret");
    req.set(bhttp::field::cookie, "session=secret");
    req.set(bhttp::field::proxy_authorization, "Basic secret");
    req.set("Idempotency-Key", "k1");
    req.set("X-Trace", "t1");
    const auto stored = to_stored(req, false);
    EXPECT_EQ(stored.method, "POST");
    EXPECT_EQ(stored.target, "/o");
    EXPECT_EQ(stored.body, "body");
    EXPECT_EQ(stored.fields.find("secret"), std::string::npos) << stored.fields;
    EXPECT_EQ(stored.fields.find("Content-Length"), std::string::npos);
    EXPECT_EQ(stored.fields.find("Idempotency-Key"), std::string::npos);
    EXPECT_NE(stored.fields.find("X-Trace: t1\r\n"), std::string::npos);
    const auto kept = to_stored(req, true);
    EXPECT_NE(kept.fields.find("Authorization: Bearer secret"), std::string::npos);
    EXPECT_NE(kept.fields.find("Cookie: session=secret"), std::string::npos);
}

TEST(queue_request, the_fingerprint_covers_method_target_and_body_and_nothing_else)
{
    const auto a = to_stored(post("/o", "x"), false);
    auto with_header = post("/o", "x");
    with_header.set("X-Trace", "other");
    EXPECT_EQ(fingerprint(a), fingerprint(to_stored(with_header, false)));
    EXPECT_NE(fingerprint(a), fingerprint(to_stored(post("/o", "y"), false)));
    EXPECT_NE(fingerprint(a), fingerprint(to_stored(post("/p", "x"), false)));
    // The separator keeps "ab" + "c" apart from "a" + "bc".
    stored_request s1{"POST", "/ab", "", "c"}, s2{"POST", "/a", "", "bc"};
    EXPECT_NE(fingerprint(s1), fingerprint(s2));
    EXPECT_EQ(fingerprint(a).size(), 64u);
    // Scoped per caller: another Authorization is another payload (only its hash is kept).
    EXPECT_NE(fingerprint(a, "Bearer alice"), fingerprint(a, "Bearer bob"));
    EXPECT_EQ(fingerprint(a, "Bearer alice"), fingerprint(a, "Bearer alice"));
}

TEST(queue_request, a_delivery_carries_the_key_the_attempt_and_configured_headers)
{
    entry e;
    e.id = "0123456789abcdef0123456789abcdef";
    e.idempotency_key = "k1";
    e.attempts = 3;
    e.request = to_stored(post("/o", "payload"), false);
    config::queue_delivery_config d;
    d.headers = {{"Authorization", "Bearer delivery"}, {"X-Trace", "replaced"}};
    auto stored_with_trace = post("/o", "payload");
    stored_with_trace.set("X-Trace", "client");
    e.request = to_stored(stored_with_trace, false);
    const auto req = to_delivery(e, d);
    EXPECT_EQ(req.method(), bhttp::verb::post);
    EXPECT_EQ(req.target(), "/o");
    EXPECT_EQ(req.body(), "payload");
    EXPECT_EQ(req["Content-Length"], "7");
    EXPECT_EQ(req["Idempotency-Key"], "k1");
    EXPECT_EQ(req["X-Breakerbox-Delivery-Attempt"], "3");
    EXPECT_EQ(req["X-Breakerbox-Queue-Id"], e.id);
    EXPECT_EQ(req["Authorization"], "Bearer delivery");
    EXPECT_EQ(req["X-Trace"], "replaced");
    EXPECT_EQ(req.count("X-Trace"), 1u);
    EXPECT_EQ(req["Host"], "orders");
}

TEST(queue_request, answers_are_classified_as_the_docs_say)
{
    for (unsigned s : {200u, 201u, 202u, 204u})
        EXPECT_EQ(classify_delivery_status(s), delivery_result::delivered) << s;
    // 401/403: the delivery's credentials (fixable by a reload); 409: the key is still being processed.
    for (unsigned s : {401u, 403u, 408u, 409u, 425u, 429u, 500u, 502u, 503u, 504u})
        EXPECT_EQ(classify_delivery_status(s), delivery_result::retryable) << s;
    // 3xx: the request belongs elsewhere, it was not done.
    for (unsigned s : {301u, 307u, 308u, 400u, 404u, 410u, 413u, 422u})
        EXPECT_EQ(classify_delivery_status(s), delivery_result::terminal) << s;
}

TEST(queue_request, the_202_points_to_the_status_resource)
{
    enqueue_result r{enqueue_status::stored, "0123456789abcdef0123456789abcdef", "k1", entry_state::queued};
    auto res = accepted_response(r, "orders", "/_breakerbox/queue/", 7, true, 11);
    EXPECT_EQ(res.result_int(), 202u);
    EXPECT_EQ(res["Location"], "/_breakerbox/queue/0123456789abcdef0123456789abcdef");
    EXPECT_EQ(res["Retry-After"], "7");
    EXPECT_EQ(res["Preference-Applied"], "respond-async");
    const auto body = nlohmann::json::parse(res.body());
    EXPECT_EQ(body["id"], r.id);
    EXPECT_EQ(body["status"], "queued");
    EXPECT_EQ(body["duplicate"], false);
    auto plain = accepted_response(r, "orders", "/q/", 0, false, 11);
    EXPECT_EQ(plain.count("Preference-Applied"), 0u);
    EXPECT_EQ(plain.count("Retry-After"), 0u); // 0: no probe scheduled (forced open), so no promise
}

TEST(queue_request, status_ids_have_one_form)
{
    const std::string id = "0123456789abcdef0123456789abcdef";
    EXPECT_EQ(status_id("/_breakerbox/queue/" + id, "/_breakerbox/queue/"), id);
    EXPECT_EQ(status_id("/_breakerbox/queue/" + id + "?x=1", "/_breakerbox/queue/"), id);
    EXPECT_FALSE(status_id("/_breakerbox/queue/" + id + "0", "/_breakerbox/queue/"));
    EXPECT_FALSE(status_id("/_breakerbox/queue/0123456789ABCDEF0123456789abcdef", "/_breakerbox/queue/"));
    EXPECT_FALSE(status_id("/_breakerbox/queue/../" + id, "/_breakerbox/queue/"));
    EXPECT_FALSE(status_id("/other/" + id, "/_breakerbox/queue/"));
}

TEST(queue_request, the_kept_answer_is_cut_to_the_limit)
{
    http::response res{bhttp::status::created, 11};
    res.set(bhttp::field::content_type, "application/json");
    res.set(bhttp::field::location, "/orders/1");
    res.set(bhttp::field::set_cookie, "session=service-account");
    res.set("X-Internal", "secret");
    res.body() = "0123456789";
    delivery_outcome o;
    keep_response(res, 4, o);
    EXPECT_EQ(o.status, 201);
    EXPECT_EQ(o.response_body, "0123");
    EXPECT_TRUE(o.response_truncated);
    const auto kept = nlohmann::json::parse(o.response_headers);
    EXPECT_EQ(kept["content-type"], "application/json");
    EXPECT_EQ(kept["location"], "/orders/1");
    EXPECT_FALSE(kept.contains("set-cookie")) << "the status resource answers anyone with the id";
    EXPECT_FALSE(kept.contains("x-internal"));
}

} // namespace
} // namespace breakerbox::queue
