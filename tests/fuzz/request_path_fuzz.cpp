// libFuzzer: any bytes from a client, through the real downstream session (parser, limits, routing,
// forwarding, error responses) over a real loopback connection; whatever comes back must be one or
// more well-formed HTTP responses. The only upstream refuses connections (127.0.0.1:1), so nothing
// leaves the machine and every forwarded request ends in a prompt 502 or a fallback.
#include "config/loader.hpp"
#include "core/asio.hpp"
#include "runtime/proxy_state.hpp"
#include "server/downstream_session.hpp"
#include "server/worker_pool.hpp"

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <cstdint>
#include <memory>
#include <string>

namespace {

using namespace breakerbox;

struct fixture {
    fixture()
    {
        auto loaded = config::load_string(R"(
workers: 1
listeners: [{name: main, address: "127.0.0.1:0"}]
admin: {enabled: false}
limits: {max_header_bytes: 4KiB, max_request_body: 8KiB, header_timeout: 200ms, body_timeout: 200ms, idle_timeout: 200ms}
logging: {level: error}
upstreams:
  svc:
    endpoints: ["127.0.0.1:1"]
    retries: {max_attempts: 2, backoff_base: 0, backoff_max: 0}
    routes: {path_prefix: /, hosts: [svc]}
  static:
    endpoints: ["127.0.0.1:1"]
    routes: {path_prefix: /static}
    fallbacks: [{static: {status: 200, body: "{{upstream}} {{reason}}"}}]
)",
                                          "fuzz.yaml");
        if (!loaded.cfg)
            __builtin_trap();
        auto rt =
            std::make_shared<const runtime::config_generation>(std::move(*loaded.cfg), steady_clock_source::instance(), nullptr);
        state = std::make_unique<runtime::proxy_state>(rt, 1);
        w = std::make_unique<server::worker>(*state, 0);
        for (auto& up : w->context.current->upstreams)
            up.local.set_endpoints({tcp::endpoint(asio::ip::make_address("127.0.0.1"), 1)});
        acceptor = std::make_unique<tcp::acceptor>(w->ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
        w->context.owner.bind_to_this_thread(); // the worker's io_context runs on this (the fuzzer's) thread
    }
    std::unique_ptr<runtime::proxy_state> state;
    std::unique_ptr<server::worker> w;
    std::unique_ptr<tcp::acceptor> acceptor;
};

bool well_formed(const std::string& out)
{
    // Every response starts with a status line; the session never writes anything else.
    return out.empty() || out.rfind("HTTP/1.", 0) == 0;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    static fixture f;
    auto& ioc = f.w->ioc;
    tcp::socket client(ioc);
    client.connect(f.acceptor->local_endpoint());
    tcp::socket server_side = f.acceptor->accept();
    f.state->active_connections.fetch_add(1);
    asio::co_spawn(ioc, server::run_downstream_session(std::move(server_side), *f.w, 0), asio::detached);

    error_code ec;
    asio::write(client, asio::buffer(data, size), ec);
    client.shutdown(tcp::socket::shutdown_send, ec);
    std::string out;
    asio::co_spawn(
        ioc,
        [&]() -> asio::awaitable<void> {
            char buf[8192];
            for (;;) {
                auto [rec, n] = co_await client.async_read_some(asio::buffer(buf), nothrow_awaitable);
                if (rec)
                    break;
                out.append(buf, n);
            }
        },
        asio::detached);
    ioc.restart();
    ioc.run_for(std::chrono::seconds(5));
    if (!well_formed(out))
        __builtin_trap();
    return 0;
}
