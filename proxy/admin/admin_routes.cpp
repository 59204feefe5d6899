#include "admin/admin_routes.hpp"

#include "admin/cluster_routes.hpp"
#include "admin/event_hub.hpp"
#include "admin/health_report.hpp"
#include "admin/metrics_exposition.hpp"
#include "admin/queue_routes.hpp"
#include "core/log.hpp"
#include "resilience/circuit_view.hpp"

#include <boost/asio/ip/address_v4.hpp>
#include <dashboard_assets.hpp>
#include <nlohmann/json.hpp>

namespace breakerbox::admin {

namespace bhttp = boost::beast::http;

http::response json_response(unsigned status, const nlohmann::json& body)
{
    http::response res{static_cast<bhttp::status>(status), 11};
    res.set(bhttp::field::server, "breakerbox-admin");
    res.set(bhttp::field::content_type, "application/json");
    res.set(bhttp::field::cache_control, "no-store");
    res.body() = body.dump(2, ' ', false, nlohmann::json::error_handler_t::replace); // a path's bytes may be any
    res.body().push_back('\n');
    res.prepare_payload();
    return res;
}

http::response json_error_response(unsigned status, std::string_view code, std::string_view detail)
{
    return json_response(status, {{"error", code}, {"detail", detail}});
}

bool host_is_address_or_localhost(const http::request& req)
{
    std::string_view host = req[bhttp::field::host];
    if (host.starts_with('[')) // [v6]:port
        return host.find(']') != std::string_view::npos;
    host = host.substr(0, host.rfind(':') == std::string_view::npos ? host.size() : host.rfind(':'));
    if (host == "localhost")
        return true;
    error_code ec;
    boost::asio::ip::make_address_v4(host, ec);
    return !ec;
}

namespace {

http::response error(unsigned status, std::string_view code, std::string_view detail)
{
    return json_error_response(status, code, detail);
}

// An operator's action, on the event stream as in the log.
void publish_operator(const admin_context& ctx, nlohmann::json data)
{
    if (ctx.events)
        ctx.events->publish("operator", std::move(data));
}

// Constant-time comparison: the time taken does not reveal how much of a guess was right.
bool same_secret(std::string_view a, std::string_view b)
{
    unsigned char diff = a.size() == b.size() ? 0 : 1;
    for (std::size_t i = 0; i < a.size(); ++i)
        diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
    return diff == 0;
}

// "127.0.0.1" or "127.0.0.1 (alice)" from X-Breakerbox-Actor, sanitised for the log.
std::string who(const http::request& req, std::string_view ip)
{
    std::string actor;
    for (char c : req["X-Breakerbox-Actor"])
        if (actor.size() < 64 && (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '@'))
            actor.push_back(c);
    return actor.empty() ? std::string(ip) : std::string(ip) + " (" + actor + ")";
}

std::optional<http::response> authorize(const http::request& req, std::string_view token)
{
    if (token.empty())
        return error(403, "mutations_disabled", "operator actions need admin.token (or BREAKERBOX_ADMIN_TOKEN) to be set");
    auto auth = req[bhttp::field::authorization];
    constexpr std::string_view bearer = "Bearer ";
    if (auth.size() <= bearer.size() || !boost::beast::iequals(auth.substr(0, bearer.size()), bearer) ||
        !same_secret(auth.substr(bearer.size()), token)) {
        auto res = error(401, "unauthorized", "a valid Authorization: Bearer <token> header is required");
        res.set(bhttp::field::www_authenticate, "Bearer realm=\"breakerbox-admin\"");
        return res;
    }
    return std::nullopt;
}

// An operator action's answer: the action, who, the breaker's state before and after, and what the next
// request finds now and who decides it (/health/circuits/{upstream} has the rest).
nlohmann::json operator_result(nlohmann::json fields, const resilience::upstream_resilience& shared, nanos now)
{
    const auto circuit = resilience::effective_circuit(shared.breaker, shared.cluster, now);
    fields["result"] = "done";
    fields["by"] = fields["who"];
    fields["state"] = resilience::to_string(circuit.state);
    fields["decided_by"] = name_of(circuit.decided_by);
    return fields;
}

http::response circuit_action(const admin_context& ctx, std::string_view upstream, std::string_view action,
                              const std::string& actor)
{
    const auto rt = ctx.state.current();
    for (const auto& shared : rt->upstreams) {
        const std::string& name = shared->cfg.name;
        if (upstream != "*" && name != upstream)
            continue;
        auto& cb = shared->breaker;
        auto before = cb.state();
        if (action == "force-open")
            cb.force_open(actor);
        else if (action == "force-closed")
            cb.force_closed(actor);
        else if (action == "disable")
            cb.disable(actor);
        else if (action == "reset")
            cb.reset(actor);
        else
            return error(404, "unknown_action", "actions: force-open, force-closed, disable, reset");
        const nlohmann::json fields = {{"action", action},
                                       {"upstream", name},
                                       {"who", actor},
                                       {"from", resilience::to_string(before)},
                                       {"to", resilience::to_string(cb.state())}};
        log::warn("operator action", fields);
        publish_operator(ctx, fields);
        if (upstream != "*") // a short result: what changed, and what the next request finds now (the cluster may still decide)
            return json_response(200, operator_result(fields, *shared, ctx.clk.now()));
    }
    if (upstream == "*")
        return json_response(200, {{"action", action}, {"upstream", "*"}, {"by", actor}, {"count", rt->upstreams.size()}});
    return error(404, "unknown_upstream", "no upstream named \"" + std::string(upstream) + "\"");
}

http::response live(const admin_context&, const http::request&, const admin_request_info&, std::string_view)
{
    return json_response(200, {{"status", "live"}});
}

http::response ready(const admin_context& ctx, const http::request&, const admin_request_info&, std::string_view)
{
    if (ctx.state.draining.load())
        return json_response(503, {{"status", "draining"}});
    return ctx.state.ready.load() ? json_response(200, {{"status", "ready"}}) : json_response(503, {{"status", "starting"}});
}

http::response metrics(const admin_context& ctx, const http::request&, const admin_request_info&, std::string_view)
{
    http::response res{bhttp::status::ok, 11};
    res.set(bhttp::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    res.body() = render_metrics(ctx);
    res.prepare_payload();
    return res;
}

// `rest`: "" for every upstream, else one upstream's name.
http::response health(const admin_context& ctx, const http::request&, const admin_request_info&, std::string_view rest)
{
    std::optional<std::string_view> one;
    if (!rest.empty())
        one = rest;
    auto report = build_health_report(ctx, one);
    if (!report)
        return error(404, "unknown_upstream", "no upstream named \"" + std::string(*one) + "\"");
    return json_response(report->status, report->body);
}

http::response reload(const admin_context& ctx, const http::request& req, const admin_request_info& info, std::string_view)
{
    if (!ctx.reload)
        return error(503, "reload_unavailable", "reload is not available here");
    const auto out = ctx.reload();
    log::warn(
        "operator action",
        {{"action", "reload"}, {"who", who(req, info.remote_ip)}, {"applied", out.applied}, {"generation", out.generation}});
    return json_response(out.applied ? 200 : 422, {{"applied", out.applied},
                                                   {"errors", out.errors},
                                                   {"generation", out.generation},
                                                   {"breakers_kept", out.kept_breakers},
                                                   {"breakers_reset", out.fresh_breakers}});
}

// `rest`: "reset" (every circuit) or "{upstream}/{action}".
http::response circuits(const admin_context& ctx, const http::request& req, const admin_request_info& info, std::string_view rest)
{
    if (rest == "reset")
        return circuit_action(ctx, "*", "reset", who(req, info.remote_ip));
    auto slash = rest.find('/');
    if (slash == std::string_view::npos)
        return error(404, "not_found", "use POST /admin/circuits/{upstream}/{force-open|force-closed|disable|reset}");
    return circuit_action(ctx, rest.substr(0, slash), rest.substr(slash + 1), who(req, info.remote_ip));
}

// RFC 3986 §2.1 percent-decoding of one path segment (an IPv6 label's brackets and colons are often
// sent encoded); a malformed escape is kept as it is.
std::string percent_decoded(std::string_view in)
{
    auto hex = [](char c) -> int {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    };
    std::string out;
    for (std::size_t i = 0; i < in.size(); ++i) {
        if (in[i] == '%' && i + 2 < in.size() && hex(in[i + 1]) >= 0 && hex(in[i + 2]) >= 0) {
            out.push_back(static_cast<char>(hex(in[i + 1]) * 16 + hex(in[i + 2])));
            i += 2;
        } else {
            out.push_back(in[i]);
        }
    }
    return out;
}

// POST /admin/endpoints/{upstream}/{address}/{eject|uneject}: an operator takes an endpoint out of load
// balancing until returned by hand (never the last one in it), or returns one (ejected or detected).
http::response endpoint_action(const admin_context& ctx, const http::request& req, const admin_request_info& info,
                               std::string_view rest)
{
    const auto first = rest.find('/');
    const auto last = rest.rfind('/');
    if (first == std::string_view::npos || last == first)
        return error(404, "not_found", "use POST /admin/endpoints/{upstream}/{address}/{eject|uneject}");
    const std::string upstream(rest.substr(0, first));
    const std::string address =
        percent_decoded(rest.substr(first + 1, last - first - 1)); // [::1]:7001 arrives as %5B%3A%3A1%5D%3A7001
    const std::string_view action = rest.substr(last + 1);
    if (action != "eject" && action != "uneject")
        return error(404, "unknown_action", "actions: eject, uneject");
    const auto rt = ctx.state.current();
    const auto i = rt->index_of(upstream);
    if (!i)
        return error(404, "unknown_upstream", "no upstream named \"" + upstream + "\"");
    auto& shared = *rt->upstreams[*i];
    if (!shared.outliers)
        return error(409, "outlier_detection_off", "outlier_detection is disabled for " + upstream);
    const std::string actor = who(req, info.remote_ip);
    const nanos now = ctx.clk.now();
    resilience::outlier_verdict verdict;
    const std::string refused = action == "eject" ? shared.outliers->eject_manually(address, actor, now, verdict)
                                                  : shared.outliers->return_manually(address, actor, now);
    if (!refused.empty())
        return error(refused.starts_with("no endpoint") ? 404 : 409,
                     refused.starts_with("no endpoint") ? "unknown_endpoint" : "refused", refused);
    resilience::apply_outlier_verdict(shared, std::move(verdict), now);
    const nlohmann::json fields = {{"action", action}, {"upstream", upstream}, {"endpoint", address}, {"who", actor}};
    log::warn("operator action", fields);
    publish_operator(ctx, fields);
    auto report = build_health_report(ctx, upstream);
    return json_response(200, {{"action", action},
                               {"upstream", upstream},
                               {"endpoint", address},
                               {"by", actor},
                               {"outlier_detection", report->body["upstreams"][upstream]["outlier_detection"]}});
}

// The dashboard's files, from the binary. The policy says what the page may do: only this origin's
// script, style sheet and requests (/events, /health/circuits, the admin API); nothing inline, no
// frames, no forms elsewhere (CSP Level 3).
http::response asset(std::string_view body, std::string_view type)
{
    http::response res{bhttp::status::ok, 11};
    res.set(bhttp::field::server, "breakerbox-admin");
    res.set(bhttp::field::content_type, type);
    res.set(bhttp::field::cache_control, "no-cache");
    res.set("Content-Security-Policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
    res.set("X-Content-Type-Options", "nosniff");
    res.set("Referrer-Policy", "no-referrer");
    res.body() = body;
    res.prepare_payload();
    return res;
}

http::response dashboard_page(const admin_context&, const http::request&, const admin_request_info&, std::string_view)
{
    return asset(assets::dashboard_html, "text/html; charset=utf-8");
}

http::response dashboard_script(const admin_context&, const http::request&, const admin_request_info&, std::string_view)
{
    return asset(assets::dashboard_js, "text/javascript; charset=utf-8");
}

http::response dashboard_style(const admin_context&, const http::request&, const admin_request_info&, std::string_view)
{
    return asset(assets::dashboard_css, "text/css; charset=utf-8");
}

http::response dashboard_icon(const admin_context&, const http::request&, const admin_request_info&, std::string_view)
{
    return asset(assets::favicon_svg, "image/svg+xml");
}

// GET /: a newcomer who opens the admin address lands on the dashboard (a 302), with the endpoints said.
http::response root(const admin_context&, const http::request&, const admin_request_info&, std::string_view)
{
    auto res = json_response(302, {{"dashboard", "/dashboard"}, {"endpoints", "any other path lists them (404)"}});
    res.set(bhttp::field::location, "/dashboard");
    return res;
}

// HEAD /events (GET is streamed by the admin server itself): the stream's header, no body.
http::response events_head(const admin_context&, const http::request&, const admin_request_info&, std::string_view)
{
    http::response res{bhttp::status::ok, 11};
    res.set(bhttp::field::content_type, "text/event-stream; charset=utf-8");
    res.set(bhttp::field::cache_control, "no-store");
    return res;
}

// POST /admin/token: changes nothing; answers 200 when the bearer token is the admin token (the
// dashboard shows its operator buttons only then), 401/403 otherwise like every mutation.
http::response token_check(const admin_context&, const http::request& req, const admin_request_info& info, std::string_view)
{
    return json_response(200, {{"token", "accepted"}, {"by", who(req, info.remote_ip)}});
}

constexpr auto get = method_get, post = method_post;
constexpr auto token = admin_access::token;

// The admin API (docs/admin-api.md), in its order.
constexpr admin_route routes[]{
    {.methods = get, .path = "/", .now = root, .description = "302 to /dashboard"},
    {.methods = get, .path = "/live", .now = live, .description = "200 while the process runs (liveness)"},
    {.methods = get,
     .path = "/ready",
     .now = ready,
     .description = "200 once every listener is bound and the config loaded; 503 while starting or draining"},
    {.methods = get,
     .path = "/health/circuits",
     .now = health,
     .description = "every upstream's circuit; 503 if any circuit is open or forced open"},
    {.methods = get, .path = "/health/circuits/{upstream}", .now = health, .description = "one upstream's circuit"},
    {.methods = get, .path = "/metrics", .now = metrics, .description = "Prometheus text format (0.0.4)"},
    {.methods = get,
     .path = "/events",
     .now = events_head,
     .description = "a Server-Sent Events stream: transitions, operator actions, reloads, a sample each second",
     .browser_facing = true,
     .streams = true},
    {.methods = get, .path = "/dashboard", .now = dashboard_page, .description = "the live dashboard", .browser_facing = true},
    {.methods = get, .path = "/dashboard.js", .now = dashboard_script, .description = "its script", .browser_facing = true},
    {.methods = get, .path = "/dashboard.css", .now = dashboard_style, .description = "its style sheet", .browser_facing = true},
    {.methods = get, .path = "/favicon.svg", .now = dashboard_icon, .description = "its icon", .browser_facing = true},
    {.methods = post,
     .path = "/admin/token",
     .access = token,
     .now = token_check,
     .description = "changes nothing: 200 when the bearer token is right"},
    {.methods = post,
     .path = "/admin/circuits/{upstream}/{action}?scope=cluster",
     .access = token,
     .later = handle_cluster_action,
     .description = "force-open, force-closed or reset for every replica, through Redis (scope: cluster)"},
    {.methods = post,
     .path = "/admin/circuits/{upstream}/{action}",
     .access = token,
     .now = circuits,
     .description = "force-open, force-closed, disable or reset a circuit (/admin/circuits/reset: every circuit)"},
    {.methods = post,
     .path = "/admin/endpoints/{upstream}/{address}/{action}",
     .access = token,
     .now = endpoint_action,
     .description = "eject or uneject an endpoint (outlier detection)"},
    {.methods = get,
     .path = "/admin/queues",
     .access = token,
     .later = handle_queue_admin,
     .description = "each queue's figures (the queue fallback)",
     .handler_checks_method = true},
    {.methods = get | post | method_delete,
     .path = "/admin/queues/{upstream}[/{id}[/requeue]|/purge]",
     .access = token,
     .later = handle_queue_admin,
     .description = "a queue's entries; one entry; requeue, delete, purge",
     .handler_checks_method = true},
    {.methods = post,
     .path = "/admin/reload",
     .access = token,
     .now = reload,
     .description = "re-read the configuration file, as SIGHUP does"},
};

// A route's path without its query condition, and the fixed part a request's path must start with.
std::string_view route_path(const admin_route& r) { return r.path.substr(0, r.path.find('?')); }
std::string_view fixed_prefix(const admin_route& r) { return r.path.substr(0, r.path.find_first_of("{?")); }

bool matches(const admin_route& r, std::string_view path, std::string_view target)
{
    const auto fixed = fixed_prefix(r);
    const bool exact = fixed.size() == route_path(r).size();
    if (exact ? path != fixed : !path.starts_with(fixed))
        return false;
    const auto q = r.path.find('?');
    if (q == std::string_view::npos)
        return true;
    const auto condition = r.path.substr(q + 1);
    const auto eq = condition.find('=');
    return query_value(target, condition.substr(0, eq)) == condition.substr(eq + 1);
}

bool answers(std::uint8_t methods, bhttp::verb v)
{
    return ((methods & method_get) && (v == bhttp::verb::get || v == bhttp::verb::head)) ||
           ((methods & method_post) && v == bhttp::verb::post) || ((methods & method_delete) && v == bhttp::verb::delete_);
}

// "GET", "POST", "GET|POST|DELETE".
std::string methods_text(std::uint8_t methods)
{
    constexpr std::pair<admin_method, std::string_view> names[]{
        {method_get, "GET"}, {method_post, "POST"}, {method_delete, "DELETE"}};
    std::string out;
    for (const auto& [bit, name] : names)
        if (methods & bit)
            out += (out.empty() ? "" : "|") + std::string(name);
    return out;
}

} // namespace

std::span<const admin_route> admin_api() { return routes; }

const admin_route* find_route(const http::request& req)
{
    const std::string_view target = req.target();
    const std::string_view path = target.substr(0, target.find('?'));
    for (const auto& route : routes)
        if (matches(route, path, target))
            return &route;
    return nullptr;
}

std::string_view route_rest(const admin_route& route, const http::request& req)
{
    const std::string_view target = req.target();
    const auto fixed = fixed_prefix(route);
    if (fixed.size() == route_path(route).size())
        return {};
    return target.substr(0, target.find('?')).substr(fixed.size());
}

std::optional<http::response> refusal(const admin_route& route, const http::request& req, const admin_request_info& info)
{
    if (!route.handler_checks_method && !answers(route.methods, req.method()))
        return error(405, "method_not_allowed", methods_text(route.methods) + " only");
    if (route.access == admin_access::token)
        if (auto denied = authorize(req, info.token)) {
            const std::string_view target = req.target();
            log::warn("admin request refused: no valid token",
                      {{"path", target.substr(0, target.find('?'))}, {"remote", info.remote_ip}});
            return denied;
        }
    if (route.browser_facing && !host_is_address_or_localhost(req))
        return error(421, "misdirected_request",
                     "open the dashboard by IP address or localhost (a DNS name in Host is refused: DNS rebinding)");
    return std::nullopt;
}

http::response not_found_response()
{
    std::string listed;
    nlohmann::json endpoints = nlohmann::json::array();
    for (const auto& route : routes) {
        const auto usage = methods_text(route.methods) + " " + std::string(route.path);
        listed += (listed.empty() ? "" : ", ") + usage;
        endpoints.push_back(
            {{"endpoint", usage}, {"token", route.access == admin_access::token}, {"description", route.description}});
    }
    return json_response(404, {{"error", "not_found"}, {"detail", "endpoints: " + listed}, {"endpoints", endpoints}});
}

std::string_view query_value(std::string_view target, std::string_view key)
{
    const auto q = target.find('?');
    if (q == std::string_view::npos)
        return {};
    std::string_view rest = target.substr(q + 1);
    while (!rest.empty()) {
        const auto amp = rest.find('&');
        const auto pair = rest.substr(0, amp);
        const auto eq = pair.find('=');
        if (pair.substr(0, eq) == key)
            return eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
        if (amp == std::string_view::npos)
            break;
        rest.remove_prefix(amp + 1);
    }
    return {};
}

} // namespace breakerbox::admin
