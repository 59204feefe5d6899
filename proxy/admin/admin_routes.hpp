// Request → response for the admin API, independent of the socket (so it can be unit-tested).
#pragma once
#include "admin/admin_context.hpp"
#include "http/message.hpp"

#include <nlohmann/json_fwd.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace breakerbox::admin {

struct admin_request_info {
    std::string_view remote_ip;
    std::string_view token; // the configured token ("" = mutations refused)
};

http::response handle_admin_request(const admin_context& ctx, const http::request& req, const admin_request_info& info);

// GET /events: answered by the admin server itself, as a stream (admin/event_hub.hpp).
bool is_event_stream_request(const http::request& req);

// Whether Host names the listener by IP address or as localhost. The dashboard's files and the stream
// are served only then: a page on another site that makes its own name resolve to 127.0.0.1 (DNS
// rebinding) sends its own name as Host and gets 421.
bool host_is_address_or_localhost(const http::request& req);

// The refusal of a request that needs the admin token and lacks it (401, or 403 without a configured
// token); nullopt when the token is there.
std::optional<http::response> refuse_without_token(const http::request& req, std::string_view token);

// A query parameter's raw (not decoded) value in `target`; "" when absent.
std::string_view query_value(std::string_view target, std::string_view key);

// A JSON answer ({"error": code, "detail": detail} for errors), Cache-Control: no-store.
http::response json_response(unsigned status, const nlohmann::json& body);
http::response json_error_response(unsigned status, std::string_view code, std::string_view detail);

} // namespace breakerbox::admin
