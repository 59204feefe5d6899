// The admin API as one table of routes (admin_api()): each route's methods, path, whether it needs the
// admin token, its handler and a one-line description. Dispatch, the method and token checks, and the
// 404's list of endpoints all read it. Request → response, independent of the socket (unit-tested); the
// admin server (admin_server.cpp) runs the handlers and streams /events.
#pragma once
#include "admin/admin_context.hpp"
#include "core/asio.hpp"
#include "http/message.hpp"

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace breakerbox::admin {

struct admin_request_info {
    std::string_view remote_ip;
    std::string_view token; // the configured token ("" = mutations refused)
};

// The methods a route answers, as bits; GET answers HEAD too (the head only).
enum admin_method : std::uint8_t { method_get = 1, method_post = 2, method_delete = 4 };

// Who may call a route: whoever reaches the listener, or only with the admin token
// (Authorization: Bearer; 401 without it, 403 when no token is configured).
enum class admin_access : std::uint8_t { open, token };

// `rest`: the part of the path after a route's fixed prefix ("" for an exact path).
using answer_now = http::response (*)(const admin_context&, const http::request&, const admin_request_info&,
                                      std::string_view rest);
// For routes that wait for another thread or Redis (the queue's writer thread, the cluster sync).
using answer_later = asio::awaitable<http::response> (*)(const admin_context&, const http::request&, const admin_request_info&,
                                                         std::string_view rest);

struct admin_route {
    std::uint8_t methods; // admin_method bits
    // The path as listed: exact, or a fixed prefix followed by `{...}` parts (the handler reads them
    // from `rest`), then optionally `?key=value`, a query parameter the target must have (a route with
    // one comes before the same path without).
    std::string_view path;
    admin_access access = admin_access::open;
    answer_now now = nullptr; // exactly one of `now` and `later`
    answer_later later = nullptr;
    std::string_view description; // one line
    // Its resources differ in methods: the handler checks the method, after the token (so a request
    // without the token learns nothing about them).
    bool handler_checks_method = false;
    // The dashboard's files and the stream: Host must be an address or localhost (421 otherwise).
    bool browser_facing = false;
    // GET is the /events stream, which the admin server writes itself; `now` answers HEAD (and a GET
    // that arrives with pipelined bytes behind it).
    bool streams = false;
};

// The admin API, in the order docs/admin-api.md lists it.
std::span<const admin_route> admin_api();

// The route `req` asks for, by path (and query); nullptr when none (then not_found_response()).
const admin_route* find_route(const http::request& req);

// The part of `req`'s path after `route`'s fixed prefix.
std::string_view route_rest(const admin_route& route, const http::request& req);

// What the route refuses before its handler runs: a method it does not answer (405), a missing admin
// token (401/403, logged), a DNS name in Host for a browser-facing route (421); nullopt when it may run.
std::optional<http::response> refusal(const admin_route& route, const http::request& req, const admin_request_info& info);

// The 404 of a path no route takes: it lists the endpoints (from admin_api()).
http::response not_found_response();

// Whether Host names the listener by IP address or as localhost. The dashboard's files and the stream
// are served only then: a page on another site that makes its own name resolve to 127.0.0.1 (DNS
// rebinding) sends its own name as Host and gets 421.
bool host_is_address_or_localhost(const http::request& req);

// A query parameter's raw (not decoded) value in `target`; "" when absent.
std::string_view query_value(std::string_view target, std::string_view key);

// A JSON answer ({"error": code, "detail": detail} for errors), Cache-Control: no-store.
http::response json_response(unsigned status, const nlohmann::json& body);
http::response json_error_response(unsigned status, std::string_view code, std::string_view detail);

} // namespace breakerbox::admin
