#include "admin/admin_routes.hpp"

#include "admin/event_hub.hpp"
#include "admin/health_report.hpp"
#include "admin/metrics_exposition.hpp"
#include "core/log.hpp"
#include "background/outlier_monitor.hpp"

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

bool is_event_stream_request(const http::request& req)
{
    std::string_view target = req.target();
    return req.method() == bhttp::verb::get && target.substr(0, target.find('?')) == "/events";
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
        if (upstream != "*") {
            auto report = build_health_report(ctx, name);
            return json_response(
                200, {{"action", action}, {"upstream", name}, {"by", actor}, {"circuit", report->body["upstreams"][name]}});
        }
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

// The admin API: a path (or a path prefix, whose remainder goes to the handler), its one method (GET
// also answers HEAD), and whether it changes anything (then only with the admin token).
struct admin_route {
    std::string_view path;
    bool prefix;
    bool mutation; // POST with the admin token; otherwise GET
    http::response (*handle)(const admin_context&, const http::request&, const admin_request_info&, std::string_view rest);
    bool browser_facing = false; // the dashboard's files: Host must be an address or localhost
};

constexpr admin_route admin_routes[]{
    {"/live", false, false, live},
    {"/events", false, false, events_head, true},
    {"/dashboard", false, false, dashboard_page, true},
    {"/dashboard.js", false, false, dashboard_script, true},
    {"/dashboard.css", false, false, dashboard_style, true},
    {"/favicon.svg", false, false, dashboard_icon, true},
    {"/admin/token", false, true, token_check},
    {"/ready", false, false, ready},
    {"/metrics", false, false, metrics},
    {"/health/circuits", false, false, health},
    {"/health/circuits/", true, false, health},
    {"/admin/reload", false, true, reload},
    {"/admin/circuits/", true, true, circuits},
    {"/admin/endpoints/", true, true, endpoint_action},
};

} // namespace

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

std::optional<http::response> refuse_without_token(const http::request& req, std::string_view token)
{
    return authorize(req, token);
}

http::response handle_admin_request(const admin_context& ctx, const http::request& req, const admin_request_info& info)
{
    std::string_view target = req.target();
    std::string_view path = target.substr(0, target.find('?'));
    const bool get = req.method() == bhttp::verb::get || req.method() == bhttp::verb::head;
    const bool post = req.method() == bhttp::verb::post;
    for (const auto& route : admin_routes) {
        if (route.prefix ? !path.starts_with(route.path) : path != route.path)
            continue;
        if (route.mutation ? !post : !get)
            return error(405, "method_not_allowed", route.mutation ? "POST only" : "GET only");
        if (route.mutation)
            if (auto denied = authorize(req, info.token)) {
                log::warn("admin request refused: no valid token", {{"path", path}, {"remote", info.remote_ip}});
                return *denied;
            }
        if (route.browser_facing && !host_is_address_or_localhost(req))
            return error(421, "misdirected_request",
                         "open the dashboard by IP address or localhost (a DNS name in Host is refused: DNS rebinding)");
        const auto rest = route.prefix ? path.substr(route.path.size()) : std::string_view{};
        return route.handle(ctx, req, info, rest);
    }
    return error(
        404, "not_found",
        "endpoints: /live, /ready, /health/circuits[/{upstream}], /metrics, /events, /dashboard, POST /admin/circuits/..., "
        "POST /admin/endpoints/..., /admin/queues[/...]");
}

} // namespace breakerbox::admin
