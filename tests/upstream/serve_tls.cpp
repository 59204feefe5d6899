// serve() over TLS: one instantiation of the handlers per translation unit (upstream_handlers.hpp).
#include "upstream_handlers.hpp"

namespace breakerbox_test_upstream {

asio::awaitable<void> serve_tls(beast::ssl_stream<beast::tcp_stream>& stream, const handshake_facts& handshake)
{
    co_await serve(stream, handshake);
}

} // namespace breakerbox_test_upstream
