// breakerbox-test-upstream: a controllable HTTP/1.1 upstream for integration tests, the demo and the
// benchmarks. Each request may ask for its own behaviour with query parameters; `POST /__config`
// sets the defaults for requests that do not (so a test can make an upstream fail without changing
// what clients send). `GET /__stats` reports what it saw (counts, also per path); `POST /__reset` clears counters and defaults.
//
//   The query knobs (status=, delay_ms=, bytes=, fault=, stream=, die_after=, /__sink, WebSocket echo …)
//   are listed once, in knobs_help below: `breakerbox-test-upstream --help` prints them.
//
// TLS mode (--tls-cert and --tls-key): every connection is TLS; --client-ca requires a client
// certificate signed by that CA; --tls-max-version 1.2 caps the protocol. /__stats then reports the
// handshakes of connections that carried a real request: full or resumed, the SNI, the protocol and the
// client certificate's common name.

#include "upstream_handlers.hpp"

#include <CLI/CLI.hpp>

namespace breakerbox_test_upstream {

// serve() for each kind of stream, each in its own translation unit (serve_plain.cpp, serve_tls.cpp).
asio::awaitable<void> serve_plain(beast::tcp_stream& stream, const handshake_facts& handshake);
asio::awaitable<void> serve_tls(beast::ssl_stream<beast::tcp_stream>& stream, const handshake_facts& handshake);

handshake_facts facts_of(SSL* ssl)
{
    handshake_facts h;
    h.tls = true;
    h.resumed = SSL_session_reused(ssl) == 1;
    const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    h.sni = sni ? sni : "";
    h.protocol = SSL_get_version(ssl);
    const unsigned char* alpn = nullptr;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
    h.alpn.assign(reinterpret_cast<const char*>(alpn ? alpn : reinterpret_cast<const unsigned char*>("")), alpn_len);
    if (X509* peer = SSL_get0_peer_certificate(ssl)) {
        char cn[256] = {};
        if (X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn) > 0)
            h.client_subject = cn;
    }
    return h;
}

asio::awaitable<void> session(tcp::socket socket)
{
    g_open.fetch_add(1);
    struct open_guard {
        ~open_guard() { g_open.fetch_sub(1); }
    } guard;
    if (!g_tls_context) {
        beast::tcp_stream stream(std::move(socket));
        const handshake_facts plain; // a named object: g++ 12 frees a temporary in a co_await expression twice
        co_await serve_plain(stream, plain);
        error_code ec;
        stream.socket().shutdown(tcp::socket::shutdown_send, ec);
        co_return;
    }
    beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)), *g_tls_context);
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(5));
    auto [hec] = co_await stream.async_handshake(asio::ssl::stream_base::server, nothrow);
    if (hec) {
        std::lock_guard lock(g_paths_mutex);
        ++g_tls.failed;
        co_return;
    }
    const auto facts = facts_of(stream.native_handle());
    co_await serve_tls(stream, facts);
    if (g_idle_timeout_ms > 0) { // an idle close of ours: with close_notify, as a well-behaved server does
        beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(1));
        co_await stream.async_shutdown(nothrow);
    }
    error_code ec;
    beast::get_lowest_layer(stream).socket().shutdown(tcp::socket::shutdown_send, ec);
}

// The server side of TLS mode: certificate and key, optionally a CA whose client certificates are
// required, and a maximum version. Sessions are resumable (tickets and a session id context).
std::shared_ptr<asio::ssl::context> make_tls_context(const std::string& cert, const std::string& key,
                                                     const std::string& client_ca, const std::string& max_version)
{
    auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
    ctx->use_certificate_chain_file(cert);
    ctx->use_private_key_file(key, asio::ssl::context::pem);
    static constexpr unsigned char id[] = "bbtest";
    SSL_CTX_set_session_id_context(ctx->native_handle(), id, sizeof id - 1);
    if (max_version == "1.2")
        SSL_CTX_set_max_proto_version(ctx->native_handle(), TLS1_2_VERSION);
    if (!client_ca.empty()) {
        ctx->load_verify_file(client_ca);
        ctx->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
    }
    SSL_CTX_set_alpn_select_cb(
        ctx->native_handle(),
        [](SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned inlen, void*) {
            static constexpr unsigned char ours[] = "\x08http/1.1";
            unsigned char* selected = nullptr;
            if (SSL_select_next_proto(&selected, outlen, ours, sizeof ours - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
                return SSL_TLSEXT_ERR_NOACK;
            *out = selected;
            return SSL_TLSEXT_ERR_OK;
        },
        nullptr);
    return ctx;
}

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, std::vector<std::unique_ptr<asio::io_context>>& contexts)
{
    std::size_t next = 0;
    for (;;) {
        auto& ioc = *contexts[next++ % contexts.size()];
        auto [ec, socket] = co_await acceptor.async_accept(ioc, nothrow);
        if (ec) {
            if (!acceptor.is_open())
                co_return;
            continue;
        }
        error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        asio::co_spawn(ioc, session(tcp::socket(std::move(socket))), asio::detached);
    }
}

// What --help prints after the options: every query knob a request may use (the demo sends newcomers
// here, so the binary itself documents them).
constexpr const char* knobs_help = R"knobs(
Query knobs (per request; POST /__config?... sets the defaults for requests without them):
  status=N          response status (default 200)
  delay_ms=N        wait before answering (before the head, for the streamed answers too)
  bytes=N           body of N bytes ('x') instead of the JSON echo; above 1 MiB it is written in 64 KiB
                    pieces from one static buffer (never held in memory), so N may be many GiB
  chunked=1         send the body with chunked transfer-encoding
  content_type=T    Content-Type of a bytes=, stream=chunks or stream=length body (default
                    application/octet-stream)
  header=Name:Value extra response header (repeatable)
  close=1           answer with "Connection: close" and close
  fault=KIND        reset | close | hang | hang_after_headers | garbage | reset_mid_headers |
                    reset_mid_body | short_body | long_body | drip | huge_headers | close_after_response

Streamed answers, each piece written (flushed to the socket) as soon as it is made:
  stream=chunks     chunked body of chunks=N (default 5) chunks of chunk_bytes=B (default 16) bytes of
                    'x', interval_ms=M (default 100) before each chunk after the first
  stream=length     the same body with Content-Length N*B instead of chunked (a paced fixed-length body)
  stream=sse        Content-Type: text/event-stream, Cache-Control: no-cache, chunked; events=N (default 5;
                    0: forever, until the client goes away), interval_ms=M (default 100) between events;
                    event i (from 0), in its own chunk: id: i\ndata: {"seq":i,"sent_us":T}\n\n where T is
                    CLOCK_REALTIME in microseconds when it is sent
  die_after=K       with a stream=: reset the connection (SO_LINGER 0, close) right after the K-th
                    chunk/event is written, instead of finishing (0: right after the head; beyond the
                    count: no effect)
  An HTTP/1.0 request gets stream=chunks|sse without chunking, ended by closing the connection.

Request bodies of any size: `/__sink` (any method) reads the body (Content-Length or chunked) 64 KiB at a
time, counting it without keeping it, and answers {"server", "method", "target", "headers",
"body_bytes"}; read_delay_ms=M waits M ms after each 64 KiB read (a slow reader: 64 KiB per M ms).
status=, header=, close= and delay_ms= (after the body) apply. Elsewhere bodies are read whole, up to
64 MiB (a longer Content-Length closes the connection unanswered). A request with
"Expect: 100-continue" is answered "100 Continue" before its body is read.

WebSocket: a request with "Upgrade: websocket" (any path) is accepted, and every message it receives is
sent back unchanged (text as text, binary as binary) until the client closes. ws_status=N answers N
(with the JSON echo) instead of upgrading; ws_close_after_ms=M closes it (close frame, 1000 normal) after
M ms; delay_ms=N waits before the 101; with a fault= the request is not upgraded, the fault applies.

The JSON echo: {"server", "method", "target", "headers", "body_bytes"}.
/__stats: {"server", "connections", "open_connections", "requests", "in_flight", "max_in_flight",
"paths", "websockets" (accepted), "websockets_open", "last_sink_bytes" (body bytes of the last
completed /__sink request), "sink_bytes" (all bytes /__sink read, counted as they arrive), "tls"}.

)knobs";

} // namespace breakerbox_test_upstream

using namespace breakerbox_test_upstream;

int main(int argc, char** argv)
{
    CLI::App cli{"breakerbox-test-upstream: a controllable HTTP upstream for tests, the demo and benchmarks"};
    std::string listen = "127.0.0.1:0";
    std::string defaults;
    unsigned threads = 1;
    cli.add_option("--listen", listen, "address to listen on (port 0: ephemeral, printed on stdout)");
    cli.add_option("--name", g_name, "name reported in the JSON echo and /__stats");
    cli.add_option("--threads", threads, "threads serving connections");
    cli.add_option("--defaults", defaults, "default behaviour as a query string, e.g. status=500&delay_ms=10");
    std::string tls_cert, tls_key, client_ca, tls_max_version;
    cli.add_option("--tls-cert", tls_cert, "serve TLS with this certificate chain (PEM)");
    cli.add_option("--tls-key", tls_key, "the certificate's private key (PEM)");
    cli.add_option("--client-ca", client_ca, "require a client certificate signed by this CA (PEM)");
    cli.add_option("--tls-max-version", tls_max_version, "1.2 to refuse TLS 1.3");
    cli.add_option("--idle-timeout-ms", g_idle_timeout_ms, "close keep-alive connections idle this long");
    cli.footer(knobs_help);
    CLI11_PARSE(cli, argc, argv);
    if (!tls_cert.empty()) {
        try {
            g_tls_context = make_tls_context(tls_cert, tls_key, client_ca, tls_max_version);
        } catch (const std::exception& e) {
            std::cerr << "TLS: " << e.what() << "\n";
            return 1;
        }
    }
    if (!defaults.empty())
        for (auto& [k, v] : parse_query("?" + defaults))
            g_defaults[k] = v;

    auto colon = listen.rfind(':');
    std::vector<std::unique_ptr<asio::io_context>> contexts;
    for (unsigned i = 0; i < std::max(1u, threads); ++i)
        contexts.push_back(std::make_unique<asio::io_context>(1));
    tcp::acceptor acceptor(*contexts[0]);
    try {
        tcp::endpoint ep(asio::ip::make_address(listen.substr(0, colon)),
                         static_cast<unsigned short>(std::stoul(listen.substr(colon + 1))));
        acceptor.open(ep.protocol());
        acceptor.set_option(tcp::acceptor::reuse_address(true));
        acceptor.bind(ep);
        acceptor.listen(asio::socket_base::max_listen_connections);
    } catch (const std::exception& e) {
        std::cerr << "cannot listen on " << listen << ": " << e.what() << "\n";
        return 1;
    }
    std::cout << "listening " << acceptor.local_endpoint().port() << std::endl;

    asio::signal_set signals(*contexts[0], SIGTERM, SIGINT);
    signals.async_wait([&](const error_code&, int) {
        for (auto& c : contexts)
            c->stop();
    });
    asio::co_spawn(*contexts[0], accept_loop(acceptor, contexts), asio::detached);
    std::vector<std::thread> pool;
    for (std::size_t i = 1; i < contexts.size(); ++i)
        pool.emplace_back([&c = *contexts[i]] {
            auto guard = asio::make_work_guard(c);
            c.run();
        });
    contexts[0]->run();
    for (auto& c : contexts)
        c->stop();
    for (auto& t : pool)
        t.join();
    return 0;
}
