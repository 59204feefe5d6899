#include "queue/queue_request.hpp"

#include "core/iso8601.hpp"
#include "http/field_scan.hpp"
#include "resilience/fallback_response.hpp"

#include <boost/beast/core/string.hpp>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include <algorithm>
#include <map>

namespace breakerbox::queue {
namespace {

namespace bhttp = boost::beast::http;
using boost::beast::iequals;

std::string_view trim(std::string_view s)
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

bool is_credential(bhttp::field f)
{
    return f == bhttp::field::authorization || f == bhttp::field::cookie || f == bhttp::field::proxy_authorization;
}

bool is_framing(bhttp::field f) { return f == bhttp::field::content_length || f == bhttp::field::transfer_encoding; }

const http::field_name idempotency_key = http::field_name::of(idempotency_key_header);

std::string iso_ms(std::int64_t unix_ms)
{
    return iso8601(std::chrono::system_clock::time_point(std::chrono::milliseconds(unix_ms)));
}

http::response json_answer(bhttp::status status, const nlohmann::json& body, unsigned version)
{
    http::response res{status, version};
    res.set(bhttp::field::server, "breakerbox");
    res.set(bhttp::field::content_type, "application/json");
    res.set(bhttp::field::cache_control, "no-store");
    res.body() = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    res.prepare_payload();
    return res;
}

} // namespace

bool prefers_respond_async(const http::request& req)
{
    for (const auto& f : req.base()) {
        if (f.name() != bhttp::field::prefer)
            continue;
        std::string_view v = f.value();
        while (!v.empty()) {
            const auto comma = v.find(',');
            auto item = trim(v.substr(0, comma));
            item = trim(item.substr(0, std::min(item.find(';'), item.find('='))));
            if (iequals(item, "respond-async"))
                return true;
            if (comma == std::string_view::npos)
                break;
            v.remove_prefix(comma + 1);
        }
    }
    return false;
}

bool queueable(const config::queue_fallback_config& q, const http::request& req, std::string_view upstream_target)
{
    const auto method = req.method_string();
    if (std::none_of(q.methods.begin(), q.methods.end(), [&](const std::string& m) { return m == method; }))
        return false;
    if (!q.path_prefixes.empty() && std::none_of(q.path_prefixes.begin(), q.path_prefixes.end(),
                                                 [&](const std::string& p) { return upstream_target.substr(0, p.size()) == p; }))
        return false;
    return !q.require_prefer_async || prefers_respond_async(req);
}

stored_request to_stored(const http::request& req, bool keep_credentials)
{
    stored_request r;
    r.method = std::string(req.method_string());
    r.target = std::string(req.target());
    for (const auto& f : req.base()) {
        if (is_framing(f.name()) || idempotency_key.matches(f) || (!keep_credentials && is_credential(f.name())))
            continue;
        r.fields.append(f.name_string()).append(": ").append(f.value()).append("\r\n");
    }
    r.body = req.body();
    return r;
}

std::string fingerprint(const stored_request& r, std::string_view principal)
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    const char nul = 0;
    bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1;
    for (std::string_view part : {std::string_view(r.method), std::string_view(&nul, 1), std::string_view(r.target),
                                  std::string_view(&nul, 1), std::string_view(r.body), std::string_view(&nul, 1), principal})
        ok = ok && EVP_DigestUpdate(ctx, part.data(), part.size()) == 1;
    ok = ok && EVP_DigestFinal_ex(ctx, digest, &length) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok) // never expected; a fingerprint that matches nothing makes a reused key a 422, never a wrong id
        return "unavailable";
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < length; ++i) {
        out += hex[digest[i] >> 4];
        out += hex[digest[i] & 15];
    }
    return out;
}

http::request to_delivery(const entry& e, const config::queue_delivery_config& d)
{
    http::request req;
    req.method_string(e.request.method);
    req.target(e.request.target);
    req.version(11);
    std::string_view lines = e.request.fields;
    while (!lines.empty()) {
        const auto end = lines.find("\r\n");
        const auto line = lines.substr(0, end);
        const auto colon = line.find(':');
        if (colon != std::string_view::npos)
            req.insert(line.substr(0, colon), trim(line.substr(colon + 1)));
        if (end == std::string_view::npos)
            break;
        lines.remove_prefix(end + 2);
    }
    for (const auto& [name, value] : d.headers)
        http::set_field(req.base(), http::field_name::of(name), value);
    http::set_field(req.base(), idempotency_key, e.idempotency_key);
    http::set_field(req.base(), http::field_name::of(attempt_header), std::to_string(e.attempts));
    http::set_field(req.base(), http::field_name::of(queue_id_header), e.id);
    req.body() = e.request.body;
    req.prepare_payload();
    return req;
}

http::response accepted_response(const enqueue_result& r, std::string_view upstream, std::string_view status_path,
                                 long retry_after_seconds, bool respond_async_asked, unsigned version)
{
    const std::string location = std::string(status_path) + r.id;
    auto res = json_answer(bhttp::status::accepted,
                           {{"id", r.id},
                            {"status", name_of(r.state)},
                            {"upstream", upstream},
                            {"idempotency_key", r.idempotency_key},
                            {"location", location},
                            {"duplicate", r.status == enqueue_status::duplicate}},
                           version);
    res.set(bhttp::field::location, location);
    if (retry_after_seconds > 0) // none when nothing is scheduled (an operator holds the circuit open)
        res.set(bhttp::field::retry_after, std::to_string(retry_after_seconds));
    if (respond_async_asked)
        res.set("Preference-Applied", "respond-async");
    return res;
}

http::response key_reused_response(std::string_view upstream, unsigned version)
{
    return json_answer(bhttp::status::unprocessable_entity,
                       {{"error", "idempotency_key_reused"},
                        {"upstream", upstream},
                        {"detail", "this Idempotency-Key was already used for a request with another method, target or body"}},
                       version);
}

std::string status_json(const entry& e)
{
    nlohmann::json j{{"id", e.id},
                     {"upstream", e.upstream},
                     {"status", name_of(e.state)},
                     {"attempts", e.attempts},
                     {"method", e.request.method},
                     {"target", e.request.target},
                     {"idempotency_key", e.idempotency_key},
                     {"enqueued_at", iso_ms(e.enqueued_ms)},
                     {"updated_at", iso_ms(e.updated_ms)},
                     {"body_size", e.body_size},
                     {"last_error", e.last_error}};
    if (e.response_status) {
        auto headers = nlohmann::json::parse(e.response_headers, nullptr, false);
        j["response"] = {{"status", e.response_status},
                         {"headers", headers.is_discarded() ? nlohmann::json::object() : headers},
                         {"body", e.response_body},
                         {"body_truncated", e.response_truncated}};
    } else {
        j["response"] = nullptr;
    }
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::optional<std::string> status_id(std::string_view target, std::string_view status_path)
{
    if (target.substr(0, status_path.size()) != status_path)
        return std::nullopt;
    auto id = target.substr(status_path.size());
    id = id.substr(0, id.find('?'));
    const bool well_formed = id.size() == 32 && std::all_of(id.begin(), id.end(), [](char c) {
                                 return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
                             });
    return well_formed ? std::optional<std::string>(id) : std::nullopt;
}

http::response status_response(const queue_result<std::optional<entry>>& found, unsigned version)
{
    if (!found.ok()) { // a store error, or no answer within commit_timeout
        auto res = json_answer(bhttp::status::service_unavailable,
                               {{"error", "store_error"}, {"detail", "the queue's store could not answer; try again"}}, version);
        res.set(bhttp::field::retry_after, "1");
        return res;
    }
    const auto& e = found.value;
    if (!e)
        return json_answer(bhttp::status::not_found,
                           {{"error", "not_found"}, {"detail", "no queued request with this id (or its record was purged)"}},
                           version);
    http::response res{bhttp::status::ok, version};
    res.set(bhttp::field::server, "breakerbox");
    res.set(bhttp::field::content_type, "application/json");
    res.set(bhttp::field::cache_control, "no-store");
    res.body() = status_json(*e);
    res.prepare_payload();
    return res;
}

http::response status_method_not_allowed(unsigned version)
{
    auto res =
        json_answer(bhttp::status::method_not_allowed,
                    {{"error", "method_not_allowed"}, {"detail", "the status of a queued request is read with GET"}}, version);
    res.set(bhttp::field::allow, "GET, HEAD");
    return res;
}

void keep_response(const http::response& res, std::uint64_t limit, delivery_outcome& out)
{
    // The status resource answers anyone with the id: only fields that describe the answer, never the
    // upstream's Set-Cookie or other session state (a delivery may carry a service's own credentials).
    static constexpr bhttp::field kept[]{
        bhttp::field::content_type, bhttp::field::content_language, bhttp::field::content_location, bhttp::field::location,
        bhttp::field::etag,         bhttp::field::last_modified,    bhttp::field::retry_after};
    std::map<std::string, std::string> fields;
    for (const auto& f : res.base()) {
        if (std::find(std::begin(kept), std::end(kept), f.name()) == std::end(kept))
            continue;
        std::string name(f.name_string());
        std::transform(name.begin(), name.end(), name.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        auto& v = fields[name];
        v += (v.empty() ? "" : ", ") + std::string(f.value());
    }
    out.status = static_cast<int>(res.result_int());
    out.response_headers = nlohmann::json(fields).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    const auto& body = res.body();
    out.response_truncated = body.size() > limit;
    out.response_body = body.substr(0, static_cast<std::size_t>(std::min<std::uint64_t>(limit, body.size())));
}

delivery_result classify_delivery_status(unsigned status)
{
    if (status >= 200 && status < 300)
        return delivery_result::delivered;
    switch (status) {
    case 401: // credentials (delivery.headers) rotated or expired: fixable by a reload, so the queue waits
    case 403:
    case 408:
    case 409: // the Idempotency-Key draft's "a request with this key is still being processed"
    case 425:
    case 429: return delivery_result::retryable;
    default: return status >= 500 ? delivery_result::retryable : delivery_result::terminal; // 3xx: sent elsewhere, not done
    }
}

} // namespace breakerbox::queue
