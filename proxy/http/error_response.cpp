#include "http/error_response.hpp"

#include <nlohmann/json.hpp>

namespace breakerbox::http {

response make_error_response(proxy_error reason, std::string_view upstream, std::string_view detail,
                             unsigned version)
{
    response res{static_cast<bhttp::status>(http_status(reason)), version};
    res.set(bhttp::field::server, "breakerbox");
    res.set(bhttp::field::content_type, "application/json");
    res.set(bhttp::field::cache_control, "no-store");
    res.set(error_header, token(reason));
    nlohmann::json body = {{"error", token(reason)}, {"detail", detail.empty() ? make_error_code(reason).message() : std::string(detail)}};
    if (!upstream.empty()) {
        body["upstream"] = upstream;
        res.set(upstream_header, upstream);
    } else {
        body["upstream"] = nullptr;
    }
    res.body() = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    res.body().push_back('\n');
    res.prepare_payload();
    return res;
}

} // namespace breakerbox::http
