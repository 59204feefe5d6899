#include "admin/admin_server.hpp"

#include "admin/admin_routes.hpp"
#include "core/log.hpp"
#include "http/error_response.hpp"
#include "http/message_rules.hpp"
#include "http/read_message.hpp"
#include "http/serialize.hpp"
#include "core/write_all.hpp"
#include "server/listener.hpp"

#include <boost/beast/http/parser.hpp>
#include <nlohmann/json.hpp>

namespace breakerbox::admin {

namespace bhttp = boost::beast::http;

admin_server::admin_server(asio::io_context& ioc, admin_context ctx, std::string token)
    : acceptor_(ioc), ctx_(std::move(ctx)), token_(std::move(token))
{
}

void admin_server::bind(const config::host_port& address) { server::listen_on(acceptor_, address, "the admin listener"); }

std::uint16_t admin_server::port() const
{
    error_code ec;
    return acceptor_.local_endpoint(ec).port();
}

void admin_server::start() { asio::co_spawn(acceptor_.get_executor(), accept_loop(), asio::detached); }

asio::awaitable<void> admin_server::accept_loop()
{
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

asio::awaitable<void> admin_server::session(tcp::socket socket)
{
    error_code ec;
    const std::string remote = socket.remote_endpoint(ec).address().to_string();
    deadline_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    std::string head;
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
        auto res = refused == proxy_error::ok ? handle_admin_request(ctx_, req, {remote, token_})
                                              : http::make_error_response(refused, {}, "refused by RFC 9112 §3.2 / §6.1", 11);
        const bool keep_alive = refused == proxy_error::ok && req.keep_alive();
        res.keep_alive(keep_alive);
        res.prepare_payload();
        http::serialize_head(res, head);
        const head_and_body message(head, req.method() == bhttp::verb::head ? std::string_view{} : std::string_view(res.body()));
        if ((co_await message.write_all(stream, seconds(30))).ec || !keep_alive)
            break;
    }
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

} // namespace breakerbox::admin
