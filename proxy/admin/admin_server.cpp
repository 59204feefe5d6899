#include "admin/admin_server.hpp"

#include "admin/admin_routes.hpp"
#include "core/listen_on.hpp"
#include "core/log.hpp"
#include "core/write_all.hpp"
#include "http/error_response.hpp"
#include "http/message_rules.hpp"
#include "http/read_message.hpp"
#include "http/serialize.hpp"
#include "resilience/upstream_resilience.hpp"

#include <boost/beast/http/parser.hpp>
#include <nlohmann/json.hpp>

#include <charconv>

namespace breakerbox::admin {

namespace bhttp = boost::beast::http;

admin_server::admin_server(asio::io_context& ioc, admin_context ctx, std::string token, event_limits events)
    : acceptor_(ioc), ctx_(std::move(ctx)), token_(std::move(token)), hub_(ioc.get_executor(), ctx_, events)
{
    ctx_.events = &hub_;
}

admin_server::~admin_server() { resilience::set_transition_observer({}); }

void admin_server::bind(const config::host_port& address)
{
    listen_on(acceptor_, address.host, address.port, "the admin listener");
}

std::uint16_t admin_server::port() const
{
    error_code ec;
    return acceptor_.local_endpoint(ec).port();
}

void admin_server::start()
{
    hub_.start();
    asio::co_spawn(acceptor_.get_executor(), accept_loop(), asio::detached);
}

namespace {

asio::awaitable<bool> write_response(deadline_stream& stream, http::response& res, bool keep_alive, bool head_only = false)
{
    res.keep_alive(keep_alive);
    res.prepare_payload();
    std::string head;
    http::serialize_head(res, head);
    const head_and_body message(head, head_only ? std::string_view{} : std::string_view(res.body()));
    co_return !(co_await message.write_all(stream, seconds(30))).ec;
}

std::optional<std::uint64_t> last_event_id(const http::request& req)
{
    const auto field = req["Last-Event-ID"];
    std::uint64_t id = 0;
    const auto [end, ec] = std::from_chars(field.data(), field.data() + field.size(), id);
    if (field.empty() || ec != std::errc{} || end != field.data() + field.size())
        return std::nullopt;
    return id;
}

// Ends the viewer as soon as its client closes the connection (or sends anything: an event stream
// is one-way), so a closed page frees its place at once rather than at the next heartbeat.
asio::awaitable<void> watch_for_close(tcp::socket& socket, std::shared_ptr<event_viewer> viewer)
{
    char byte;
    co_await socket.async_read_some(asio::buffer(&byte, 1), nothrow_awaitable);
    viewer->dropped = true;
    viewer->wake.cancel();
}

} // namespace

asio::awaitable<void> admin_server::stream_events(deadline_stream& stream, const http::request& req)
{
    owner_.assert_owned("admin_server::stream_events");
    auto viewer = hub_.subscribe(last_event_id(req));
    if (!viewer) {
        auto res = json_error_response(503, "too_many_viewers",
                                       "at most " + std::to_string(hub_.limits().max_viewers) + " event viewers at once");
        co_await write_response(stream, res, false);
        co_return;
    }
    viewer->socket = &stream.socket();
    // Whatever ends this coroutine, the hub forgets the viewer and its socket.
    struct unsubscribe_on_exit {
        event_hub& hub;
        std::shared_ptr<event_viewer>& viewer;
        ~unsubscribe_on_exit()
        {
            viewer->socket = nullptr;
            hub.unsubscribe(viewer);
        }
    } guard{hub_, viewer};
    stream.expires_never(); // the request's read deadline is over: only writes are under one from here
    error_code ec;
    // A small kernel buffer too: a viewer that does not read is noticed after ~64 KiB, not megabytes.
    stream.socket().set_option(asio::socket_base::send_buffer_size(64 * 1024), ec);
    std::string out = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-store\r\n"
                      "X-Accel-Buffering: no\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n";
    asio::co_spawn(stream.socket().get_executor(), watch_for_close(stream.socket(), viewer), asio::detached);
    const nanos heartbeat = hub_.limits().heartbeat;
    for (;;) {
        out += std::exchange(viewer->pending, {});
        if (!out.empty()) {
            // The body is close-delimited (RFC 9112 §6.3): no length, and the end is the connection's.
            if ((co_await write_all(stream, asio::buffer(out), seconds(10))).ec)
                break;
            stream.expires_never(); // a write that had to wait armed a deadline: not for the next wait
            out.clear();
            continue; // more may have come while writing
        }
        if (viewer->dropped)
            break;
        viewer->wake.expires_after(as_duration(heartbeat));
        auto [wec] = co_await viewer->wake.async_wait(nothrow_awaitable);
        if (viewer->dropped)
            break;
        if (!wec && viewer->pending.empty())
            out = ": heartbeat\n\n";
    }
    stream.socket().close(ec); // also ends watch_for_close
}

asio::awaitable<void> admin_server::accept_loop()
{
    owner_.bind_to_this_thread(); // the thread that runs the main io_context: every session runs there too
    asio::steady_timer backoff(acceptor_.get_executor());
    for (;;) {
        auto [ec, socket] = co_await acceptor_.async_accept(nothrow_awaitable);
        if (ec) {
            if (!acceptor_.is_open())
                co_return;
            backoff.expires_after(std::chrono::milliseconds(50));
            co_await backoff.async_wait(nothrow_awaitable);
            continue;
        }
        asio::co_spawn(acceptor_.get_executor(), session(std::move(socket)), asio::detached);
    }
}

asio::awaitable<std::optional<http::response>> admin_server::answer(deadline_stream& stream, const http::request& req,
                                                                    bool pipelined, const admin_request_info& info)
{
    owner_.assert_owned("admin_server::answer");
    const admin_route* route = find_route(req);
    if (!route)
        co_return not_found_response();
    if (auto refused = refusal(*route, req, info))
        co_return std::move(*refused);
    // A stream is one-way: with more requests pipelined behind this one, the stream's head only.
    if (route->streams && req.method() == bhttp::verb::get && !pipelined) {
        co_await stream_events(stream, req);
        co_return std::nullopt;
    }
    const auto rest = route_rest(*route, req);
    if (route->later) // waits for the queue's writer thread, or for Redis (bounded by cluster.command_timeout)
        co_return co_await route->later(ctx_, req, info, rest);
    co_return route->now(ctx_, req, info, rest);
}

asio::awaitable<void> admin_server::session(tcp::socket socket)
{
    owner_.assert_owned("admin_server::session");
    error_code ec;
    const std::string remote = socket.remote_endpoint(ec).address().to_string();
    deadline_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    for (;;) {
        bhttp::request_parser<bhttp::string_body> parser;
        http::trailer_fence fence{parser};
        parser.header_limit(16 * 1024);
        parser.body_limit(64 * 1024);
        stream.expires_after(std::chrono::seconds(30));
        if (co_await http::read_message(stream, buffer, parser, fence))
            break;
        auto req = parser.release();
        // The same message rules as the data listener (http/message_rules.hpp); a refused request closes.
        const auto refused = http::request_head_refusal(req);
        http::response res;
        if (refused != proxy_error::ok)
            res = http::make_error_response(refused, {}, "refused by RFC 9112 §3.2 / §6.1", 11);
        else if (auto answered = co_await answer(stream, req, buffer.size() > 0, {remote, token_}))
            res = std::move(*answered);
        else
            co_return; // it was the event stream, which ends with the connection
        const bool keep_alive = refused == proxy_error::ok && req.keep_alive();
        if (!co_await write_response(stream, res, keep_alive, req.method() == bhttp::verb::head) || !keep_alive)
            break;
    }
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

} // namespace breakerbox::admin
