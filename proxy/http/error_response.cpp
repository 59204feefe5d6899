#include "http/error_response.hpp"

#include <nlohmann/json.hpp>

namespace breakerbox::http {

namespace {
nlohmann::json error_body(proxy_error reason, std::string_view upstream, std::string_view detail)
{
    nlohmann::json body = {{"error", token(reason)},
                           {"detail", detail.empty() ? make_error_code(reason).message() : std::string(detail)}};
    if (!upstream.empty())
        body["upstream"] = upstream;
    else
        body["upstream"] = nullptr;
    return body;
}

void finish(response& res, const nlohmann::json& body)
{
    res.body() = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    res.body().push_back('\n');
    res.prepare_payload();
}
} // namespace

response make_circuit_open_response(std::string_view upstream, std::string_view state, std::string_view decided_by,
                                    long retry_after_seconds, std::string_view detail)
{
    response res = make_error_response(proxy_error::circuit_open, upstream, detail);
    if (retry_after_seconds > 0)
        res.set(bhttp::field::retry_after, std::to_string(retry_after_seconds));
    auto body = error_body(proxy_error::circuit_open, upstream, detail);
    body["state"] = state;
    body["decided_by"] = decided_by;
    body["retry_after_seconds"] = retry_after_seconds > 0 ? nlohmann::json(retry_after_seconds) : nlohmann::json(nullptr);
    finish(res, body);
    return res;
}

response make_error_response(proxy_error reason, std::string_view upstream, std::string_view detail, unsigned version)
{
    response res{static_cast<bhttp::status>(http_status(reason)), version};
    res.set(bhttp::field::server, "breakerbox");
    res.set(bhttp::field::content_type, "application/json");
    res.set(bhttp::field::cache_control, "no-store");
    res.set(error_header, token(reason));
    if (!upstream.empty())
        res.set(upstream_header, upstream);
    finish(res, error_body(reason, upstream, detail));
    return res;
}

} // namespace breakerbox::http
