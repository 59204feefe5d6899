// The test upstream's request handlers (test_upstream.cpp says what it does), shared by its three
// translation units: every handler is a template over the stream (plain TCP or TLS), and serve_plain.cpp
// and serve_tls.cpp each instantiate one, so the two compile in parallel (this one file took 159 s
// alone). Process-wide state is `inline`: one copy for the program.
#pragma once
#include <boost/asio.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <array>
#include <atomic>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

namespace breakerbox_test_upstream {

inline std::string g_name = "upstream";
inline std::atomic<std::uint64_t> g_connections{0}, g_open{0}, g_requests{0}, g_in_flight{0}, g_max_in_flight{0};
inline std::mutex g_defaults_mutex;
inline std::map<std::string, std::string> g_defaults; // from POST /__config
inline std::mutex g_paths_mutex;
inline std::map<std::string, std::uint64_t> g_paths; // requests per path, for /__stats
inline std::atomic<std::uint64_t> g_websockets{0}, g_websockets_open{0};
inline std::atomic<std::uint64_t> g_last_sink_bytes{0}, g_sink_bytes{0}; // what /__sink read

// TLS mode: what the handshakes of counted connections were (under g_paths_mutex).
struct tls_seen {
    std::uint64_t full = 0, resumed = 0, failed = 0;
    std::map<std::string, std::uint64_t> sni, protocols, client_subjects, alpn;
};
inline tls_seen g_tls;
inline long g_idle_timeout_ms = 0; // > 0: idle keep-alive connections are closed after this long

inline std::multimap<std::string, std::string> parse_query(std::string_view target)
{
    std::multimap<std::string, std::string> out;
    auto q = target.find('?');
    if (q == std::string_view::npos)
        return out;
    std::string_view rest = target.substr(q + 1);
    while (!rest.empty()) {
        auto amp = rest.find('&');
        std::string_view pair = rest.substr(0, amp);
        auto eq = pair.find('=');
        std::string key(pair.substr(0, eq));
        std::string value = eq == std::string_view::npos ? "" : std::string(pair.substr(eq + 1));
        for (std::size_t i = 0; i + 2 < value.size(); ++i)
            if (value[i] == '%' && std::isxdigit(value[i + 1]) && std::isxdigit(value[i + 2])) {
                value.replace(i, 3, 1, static_cast<char>(std::stoi(value.substr(i + 1, 2), nullptr, 16)));
            }
        out.emplace(std::move(key), std::move(value));
        if (amp == std::string_view::npos)
            break;
        rest.remove_prefix(amp + 1);
    }
    return out;
}

struct behaviour {
    unsigned status = 200;
    long delay_ms = 0;
    long bytes = -1;
    bool chunked = false;
    bool close = false;
    std::string fault;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string content_type;
    std::string stream; // chunks | length | sse
    long chunks = 5, chunk_bytes = 16, events = 5, interval_ms = 100;
    long die_after = -1;
    long read_delay_ms = 0; // /__sink
    unsigned ws_status = 0;
    long ws_close_after_ms = 0;
};

inline behaviour behaviour_for(std::string_view target)
{
    std::multimap<std::string, std::string> params;
    {
        std::lock_guard lock(g_defaults_mutex);
        for (auto& [k, v] : g_defaults)
            params.emplace(k, v);
    }
    auto own = parse_query(target);
    for (auto& [k, v] : own) {
        if (k != "header")
            params.erase(k);
    }
    params.merge(own);
    behaviour b;
    for (auto& [k, v] : params) {
        try {
            if (k == "status")
                b.status = static_cast<unsigned>(std::stoul(v));
            else if (k == "delay_ms")
                b.delay_ms = std::stol(v);
            else if (k == "bytes")
                b.bytes = std::stol(v);
            else if (k == "chunked")
                b.chunked = v == "1";
            else if (k == "close")
                b.close = v == "1";
            else if (k == "fault")
                b.fault = v;
            else if (k == "content_type")
                b.content_type = v;
            else if (k == "stream")
                b.stream = v;
            else if (k == "chunks")
                b.chunks = std::max(0L, std::stol(v));
            else if (k == "chunk_bytes")
                b.chunk_bytes = std::max(0L, std::stol(v));
            else if (k == "events")
                b.events = std::max(0L, std::stol(v));
            else if (k == "interval_ms")
                b.interval_ms = std::stol(v);
            else if (k == "die_after")
                b.die_after = std::stol(v);
            else if (k == "read_delay_ms")
                b.read_delay_ms = std::stol(v);
            else if (k == "ws_status")
                b.ws_status = static_cast<unsigned>(std::stoul(v));
            else if (k == "ws_close_after_ms")
                b.ws_close_after_ms = std::stol(v);
            else if (k == "header") {
                auto colon = v.find(':');
                if (colon != std::string::npos)
                    b.headers.emplace_back(v.substr(0, colon), v.substr(colon + 1));
            }
        } catch (...) {
        }
    }
    return b;
}

inline void reset_hard(tcp::socket& s)
{
    error_code ec;
    s.set_option(asio::socket_base::linger(true, 0), ec);
    s.close(ec);
}

inline std::string stats_json()
{
    std::lock_guard lock(g_paths_mutex);
    return nlohmann::json{{"server", g_name},
                          {"connections", g_connections.load()},
                          {"open_connections", g_open.load()},
                          {"requests", g_requests.load()},
                          {"in_flight", g_in_flight.load()},
                          {"max_in_flight", g_max_in_flight.load()},
                          {"paths", g_paths},
                          {"websockets", g_websockets.load()},
                          {"websockets_open", g_websockets_open.load()},
                          {"last_sink_bytes", g_last_sink_bytes.load()},
                          {"sink_bytes", g_sink_bytes.load()},
                          {"tls",
                           {{"full", g_tls.full},
                            {"resumed", g_tls.resumed},
                            {"failed", g_tls.failed},
                            {"sni", g_tls.sni},
                            {"protocols", g_tls.protocols},
                            {"client_subjects", g_tls.client_subjects},
                            {"alpn", g_tls.alpn}}}}
        .dump();
}

// What a TLS handshake was, counted with the connection's first real request (so the /__ requests a
// test makes do not disturb what it observes).
struct handshake_facts {
    bool tls = false, resumed = false;
    std::string sni, protocol, client_subject, alpn;
};

inline void count_handshake(const handshake_facts& h)
{
    if (!h.tls)
        return;
    std::lock_guard lock(g_paths_mutex);
    ++(h.resumed ? g_tls.resumed : g_tls.full);
    ++g_tls.sni[h.sni];
    ++g_tls.protocols[h.protocol];
    ++g_tls.alpn[h.alpn];
    if (!h.client_subject.empty())
        ++g_tls.client_subjects[h.client_subject];
}

inline tcp::socket& socket_of(beast::tcp_stream& s) { return s.socket(); }
inline tcp::socket& socket_of(beast::ssl_stream<beast::tcp_stream>& s) { return beast::get_lowest_layer(s).socket(); }

// Connections are counted when they carry a real request, so that the /__ endpoints a test uses to
// observe the upstream do not disturb what it observes.
inline void count_request(const std::string& path, bool& counted, const handshake_facts& handshake)
{
    if (!counted) {
        counted = true;
        g_connections.fetch_add(1);
        count_handshake(handshake);
    }
    g_requests.fetch_add(1);
    std::lock_guard lock(g_paths_mutex);
    ++g_paths[path];
}

// A request is in flight until its answer starts to go out (release()), not until the write
// completes: a client that sends its next request only after reading this answer must never be seen
// overlapping it, however late this thread resumes after the write.
struct in_flight_guard {
    bool held = true;
    in_flight_guard()
    {
        auto now_in_flight = g_in_flight.fetch_add(1) + 1;
        for (auto seen = g_max_in_flight.load();
             now_in_flight > seen && !g_max_in_flight.compare_exchange_weak(seen, now_in_flight);) { }
    }
    in_flight_guard(const in_flight_guard&) = delete;
    in_flight_guard& operator=(const in_flight_guard&) = delete;
    void release()
    {
        if (std::exchange(held, false))
            g_in_flight.fetch_sub(1);
    }
    ~in_flight_guard() { release(); }
};

inline asio::awaitable<void> sleep_ms(long ms)
{
    if (ms <= 0)
        co_return;
    asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(ms));
    co_await t.async_wait(nothrow);
}

inline std::string path_of(std::string_view target) { return std::string(target.substr(0, target.find('?'))); }

template <class Fields>
nlohmann::json headers_json(const Fields& fields)
{
    nlohmann::json headers = nlohmann::json::object();
    for (const auto& f : fields)
        headers[std::string(f.name_string())] = std::string(f.value());
    return headers;
}

// Large and streamed bodies are written from this one static buffer of 'x', a piece at a time.
constexpr std::size_t piece_size = 64 * 1024;
constexpr long large_body = 1024 * 1024; // bytes=N above this is written piece by piece

inline const char* filler()
{
    static const std::string bytes(piece_size, 'x');
    return bytes.data();
}

inline std::uint64_t realtime_us()
{
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000u + static_cast<std::uint64_t>(ts.tv_nsec) / 1000u;
}

// The head of a response whose body is written by hand afterwards.
template <class Stream>
asio::awaitable<bool> write_head(Stream& stream, http::response<http::empty_body>& head)
{
    http::response_serializer<http::empty_body> sr(head);
    auto [ec, n] = co_await http::async_write_header(stream, sr, nothrow);
    co_return !ec;
}

// Writes a body after its head, in chunks (each written to the socket at once) or as it is.
template <class Stream>
struct body_writer {
    Stream& stream;
    bool chunked;

    // One chunk holding data (nothing for no data: an empty chunk would end the body).
    asio::awaitable<bool> piece(asio::const_buffer data)
    {
        if (data.size() == 0)
            co_return true;
        if (!chunked) {
            auto [ec, n] = co_await asio::async_write(stream, data, nothrow);
            co_return !ec;
        }
        char size[24];
        int len = std::snprintf(size, sizeof size, "%zx\r\n", data.size());
        std::array<asio::const_buffer, 3> buffers{asio::buffer(size, static_cast<std::size_t>(len)), data,
                                                  asio::buffer("\r\n", 2)};
        auto [ec, n] = co_await asio::async_write(stream, buffers, nothrow);
        co_return !ec;
    }

    // One chunk of n bytes of 'x'.
    asio::awaitable<bool> filler_chunk(std::uint64_t n)
    {
        if (n <= piece_size)
            co_return co_await piece(asio::buffer(filler(), static_cast<std::size_t>(n)));
        if (chunked) {
            char size[24];
            int len = std::snprintf(size, sizeof size, "%llx\r\n", static_cast<unsigned long long>(n));
            auto [ec, w] = co_await asio::async_write(stream, asio::buffer(size, static_cast<std::size_t>(len)), nothrow);
            if (ec)
                co_return false;
        }
        body_writer raw{stream, false};
        for (; n > 0; n -= std::min<std::uint64_t>(n, piece_size))
            if (!co_await raw.piece(asio::buffer(filler(), static_cast<std::size_t>(std::min<std::uint64_t>(n, piece_size)))))
                co_return false;
        co_return !chunked || co_await raw.piece(asio::buffer("\r\n", 2));
    }

    asio::awaitable<bool> finish()
    {
        if (!chunked)
            co_return true;
        auto [ec, n] = co_await asio::async_write(stream, asio::buffer("0\r\n\r\n", 5), nothrow);
        co_return !ec;
    }
};

// The head of a bytes= or stream= answer: status, Server, Content-Type, the header= fields.
inline http::response<http::empty_body> head_for(const http::request<http::string_body>& req, const behaviour& b,
                                                 std::string_view content_type, bool close_after)
{
    http::response<http::empty_body> head{http::status::ok, req.version()};
    head.result(b.status);
    head.set(http::field::server, "breakerbox-test-upstream");
    head.set(http::field::content_type, content_type);
    for (auto& [k, v] : b.headers)
        head.set(k, v);
    head.keep_alive(req.keep_alive() && !close_after);
    return head;
}

// After a hand-written body: true to read the next request, or the connection is closed.
template <class Stream>
bool keep_or_close(Stream& stream, bool keep_alive)
{
    if (keep_alive)
        return true;
    error_code ignored;
    socket_of(stream).shutdown(tcp::socket::shutdown_both, ignored);
    socket_of(stream).close(ignored);
    return false;
}

// bytes=N above 1 MiB: Content-Length N (or chunked), written from the static buffer.
template <class Stream>
asio::awaitable<bool> answer_large(Stream& stream, const http::request<http::string_body>& req, const behaviour& b,
                                   bool close_after, in_flight_guard& guard)
{
    auto head = head_for(req, b, b.content_type.empty() ? "application/octet-stream" : b.content_type, close_after);
    const auto total = static_cast<std::uint64_t>(b.bytes);
    const bool chunked = b.chunked && req.version() == 11 && req.method() != http::verb::head;
    if (chunked)
        head.chunked(true);
    else
        head.content_length(total);
    guard.release();
    if (!co_await write_head(stream, head))
        co_return false;
    if (req.method() == http::verb::head)
        co_return keep_or_close(stream, head.keep_alive());
    body_writer<Stream> out{stream, chunked};
    for (std::uint64_t left = total; left > 0;) {
        auto n = std::min<std::uint64_t>(left, piece_size);
        if (!co_await out.piece(asio::buffer(filler(), static_cast<std::size_t>(n))))
            co_return false;
        left -= n;
    }
    if (!co_await out.finish())
        co_return false;
    co_return keep_or_close(stream, head.keep_alive());
}

// stream=chunks | length | sse: a paced body, each chunk or event written as soon as it is made.
template <class Stream>
asio::awaitable<bool> answer_stream(Stream& stream, const http::request<http::string_body>& req, const behaviour& b,
                                    bool close_after, in_flight_guard& guard)
{
    const bool sse = b.stream == "sse", fixed_length = b.stream == "length";
    std::string_view type =
        sse ? "text/event-stream" : (b.content_type.empty() ? std::string_view("application/octet-stream") : b.content_type);
    auto head = head_for(req, b, type, close_after);
    if (sse)
        head.set(http::field::cache_control, "no-cache");
    bool chunked = false;
    if (fixed_length)
        head.content_length(static_cast<std::uint64_t>(b.chunks) * static_cast<std::uint64_t>(b.chunk_bytes));
    else if (req.version() == 11)
        chunked = true, head.chunked(true);
    else
        head.keep_alive(false); // HTTP/1.0: the body ends with the connection
    guard.release();
    if (!co_await write_head(stream, head))
        co_return false;
    if (req.method() == http::verb::head)
        co_return keep_or_close(stream, head.keep_alive());
    auto& socket = socket_of(stream);
    if (b.die_after == 0) {
        reset_hard(socket);
        co_return false;
    }
    body_writer<Stream> out{stream, chunked};
    const bool forever = sse && b.events == 0;
    const auto count = static_cast<std::uint64_t>(sse ? b.events : b.chunks);
    for (std::uint64_t i = 0; forever || i < count; ++i) {
        if (i > 0)
            co_await sleep_ms(b.interval_ms);
        bool written;
        if (sse) {
            std::string event = "id: " + std::to_string(i) + "\ndata: {\"seq\":" + std::to_string(i) +
                                ",\"sent_us\":" + std::to_string(realtime_us()) + "}\n\n";
            written = co_await out.piece(asio::buffer(event));
        } else {
            written = co_await out.filler_chunk(static_cast<std::uint64_t>(b.chunk_bytes));
        }
        if (!written)
            co_return false; // the client went away
        if (b.die_after > 0 && i + 1 == static_cast<std::uint64_t>(b.die_after)) {
            reset_hard(socket);
            co_return false;
        }
    }
    if (!co_await out.finish())
        co_return false;
    co_return keep_or_close(stream, head.keep_alive());
}

// Returns false when the connection must end.
template <class Stream>
asio::awaitable<bool> answer(Stream& stream, http::request<http::string_body>& req, bool& counted,
                             const handshake_facts& handshake)
{
    std::string_view target = req.target();
    std::string path = path_of(target);
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.set(http::field::server, "breakerbox-test-upstream");
    res.set(http::field::content_type, "application/json");
    res.keep_alive(req.keep_alive());

    if (path == "/__stats" || path == "/__reset" || path == "/__config") {
        if (path == "/__reset") {
            g_connections = 0;
            g_requests = 0;
            g_max_in_flight = g_in_flight.load();
            g_websockets = 0;
            g_last_sink_bytes = 0;
            g_sink_bytes = 0;
            {
                std::lock_guard paths_lock(g_paths_mutex);
                g_paths.clear();
                g_tls = {};
            }
            std::lock_guard lock(g_defaults_mutex);
            g_defaults.clear();
        } else if (path == "/__config") {
            std::lock_guard lock(g_defaults_mutex);
            g_defaults.clear();
            for (auto& [k, v] : parse_query(target))
                g_defaults[k] = v;
        }
        res.body() = stats_json();
        res.prepare_payload();
        auto [ec, n] = co_await http::async_write(stream, res, nothrow);
        co_return !ec && res.keep_alive();
    }

    count_request(path, counted, handshake);
    in_flight_guard guard;

    behaviour b = behaviour_for(target);
    if (b.ws_status > 0 && websocket::is_upgrade(req))
        b.status = b.ws_status; // a refused upgrade
    auto& socket = socket_of(stream);
    if (b.delay_ms > 0) {
        asio::steady_timer t(stream.get_executor(), std::chrono::milliseconds(b.delay_ms));
        co_await t.async_wait(nothrow);
    }

    if (b.fault == "reset") {
        reset_hard(socket);
        co_return false;
    }
    if (b.fault == "close") {
        error_code ec;
        socket.shutdown(tcp::socket::shutdown_both, ec);
        socket.close(ec);
        co_return false;
    }
    if (b.fault == "hang") {
        asio::steady_timer t(stream.get_executor(), std::chrono::minutes(10));
        co_await t.async_wait(nothrow);
        co_return false;
    }
    auto raw = [&](std::string bytes) -> asio::awaitable<bool> {
        auto [ec, n] = co_await asio::async_write(stream, asio::buffer(bytes), nothrow);
        co_return !ec;
    };
    if (b.fault == "garbage") {
        co_await raw("this is not HTTP at all\r\n\r\n");
        reset_hard(socket);
        co_return false;
    }
    if (b.fault == "reset_mid_headers") {
        co_await raw("HTTP/1.1 200 OK\r\nContent-Type: text/pl");
        reset_hard(socket);
        co_return false;
    }
    if (b.fault == "reset_mid_body") {
        co_await raw("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789");
        reset_hard(socket);
        co_return false;
    }
    if (b.fault == "short_body") {
        co_await raw("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789");
        error_code ec;
        socket.shutdown(tcp::socket::shutdown_both, ec);
        socket.close(ec);
        co_return false;
    }
    if (b.fault == "long_body") {
        co_await raw("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n0123456789");
        co_return false;
    }
    if (b.fault == "hang_after_headers") {
        co_await raw("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
        asio::steady_timer t(stream.get_executor(), std::chrono::minutes(10));
        co_await t.async_wait(nothrow);
        co_return false;
    }
    if (b.fault == "huge_headers") {
        std::string big = "HTTP/1.1 200 OK\r\nX-Big: " + std::string(200 * 1024, 'a') + "\r\nContent-Length: 0\r\n\r\n";
        co_await raw(big);
        co_return false;
    }
    if (b.fault == "drip") {
        std::string response = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789";
        for (char c : response) {
            if (!co_await raw(std::string(1, c)))
                co_return false;
            asio::steady_timer t(stream.get_executor(), std::chrono::milliseconds(200));
            co_await t.async_wait(nothrow);
        }
        co_return false;
    }

    bool close_after = b.fault == "close_after_response" || b.close;
    if (b.stream == "chunks" || b.stream == "length" || b.stream == "sse")
        co_return co_await answer_stream(stream, req, b, close_after, guard);
    if (b.bytes > large_body)
        co_return co_await answer_large(stream, req, b, close_after, guard);

    res.result(b.status);
    for (auto& [k, v] : b.headers)
        res.set(k, v);
    if (b.bytes >= 0) {
        res.set(http::field::content_type, b.content_type.empty() ? "application/octet-stream" : b.content_type);
        res.body().assign(static_cast<std::size_t>(b.bytes), 'x');
    } else {
        res.body() = nlohmann::json{{"server", g_name},
                                    {"method", std::string(req.method_string())},
                                    {"target", std::string(target)},
                                    {"headers", headers_json(req)},
                                    {"body_bytes", req.body().size()}}
                         .dump();
    }
    if (b.close)
        res.keep_alive(false);
    if (req.method() == http::verb::head) {
        res.content_length(res.body().size());
        res.body().clear();
        http::response<http::empty_body> head;
        head.base() = res.base();
        guard.release();
        auto [ec, n] = co_await http::async_write(stream, head, nothrow);
        co_return !ec && !close_after && res.keep_alive();
    }
    if (b.chunked && req.version() == 11)
        res.chunked(true);
    else
        res.prepare_payload();
    guard.release();
    auto [ec, n] = co_await http::async_write(stream, res, nothrow);
    if (close_after) {
        error_code ignored;
        socket.shutdown(tcp::socket::shutdown_both, ignored);
        socket.close(ignored);
        co_return false;
    }
    co_return !ec && res.keep_alive();
}

// /__sink: the body is read 64 KiB at a time and only counted, however large it is (Content-Length or
// chunked). Returns false when the connection must end.
template <class Stream>
asio::awaitable<bool> answer_sink(Stream& stream, beast::flat_buffer& buffer, http::request_parser<http::empty_body>& head_parser,
                                  bool& counted, const handshake_facts& handshake)
{
    http::request_parser<http::buffer_body> parser(std::move(head_parser));
    const std::string target(parser.get().target());
    count_request(path_of(target), counted, handshake);
    in_flight_guard guard;
    behaviour b = behaviour_for(target);
    auto piece = std::make_unique<char[]>(piece_size);
    // Beast reads only as much as the buffer's free capacity (at least 512 bytes): without room for a
    // whole piece, each read (and each read_delay_ms) would be for a few hundred bytes.
    buffer.reserve(piece_size);
    std::uint64_t body_bytes = 0, unpaced = 0;
    while (!parser.is_done()) {
        parser.get().body().data = piece.get();
        parser.get().body().size = piece_size;
        auto [ec, n] = co_await http::async_read_some(stream, buffer, parser, nothrow);
        if (ec == http::error::need_buffer)
            ec = {};
        if (ec)
            co_return false;
        const auto got = piece_size - parser.get().body().size;
        body_bytes += got;
        g_sink_bytes.fetch_add(got);
        for (unpaced += got; unpaced >= piece_size && !parser.is_done(); unpaced -= piece_size)
            co_await sleep_ms(b.read_delay_ms); // read_delay_ms per 64 KiB, however the reads fall
    }
    g_last_sink_bytes = body_bytes;
    co_await sleep_ms(b.delay_ms);

    auto& req = parser.get();
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.result(b.status);
    res.set(http::field::server, "breakerbox-test-upstream");
    res.set(http::field::content_type, "application/json");
    for (auto& [k, v] : b.headers)
        res.set(k, v);
    res.keep_alive(req.keep_alive() && !b.close);
    res.body() = nlohmann::json{
        {"server", g_name},
        {"method", std::string(req.method_string())},
        {"target", target},
        {"headers", headers_json(req)},
        {"body_bytes",
         body_bytes}}.dump();
    res.prepare_payload();
    guard.release();
    auto [ec, n] = co_await http::async_write(stream, res, nothrow);
    if (ec)
        co_return false;
    co_return keep_or_close(stream, res.keep_alive());
}

// An upgrade to WebSocket: every message is sent back as it came (text or binary) until the client
// closes; ws_close_after_ms=M closes it from this side after M ms.
template <class Stream>
asio::awaitable<void> websocket_echo(Stream& stream, http::request<http::empty_body> req, bool& counted,
                                     const handshake_facts& handshake)
{
    const std::string target(req.target());
    count_request(path_of(target), counted, handshake);
    const behaviour b = behaviour_for(target);
    websocket::stream<Stream&> ws(stream);
    ws.read_message_max(64 * 1024 * 1024);
    ws.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "breakerbox-test-upstream"); }));
    {
        in_flight_guard guard;
        co_await sleep_ms(b.delay_ms);
        guard.release();
        auto [ec] = co_await ws.async_accept(req, nothrow);
        if (ec)
            co_return;
    }
    g_websockets.fetch_add(1);
    g_websockets_open.fetch_add(1);
    struct open_guard {
        ~open_guard() { g_websockets_open.fetch_sub(1); }
    } open;

    // The closer runs beside the echo loop, on the same (single-threaded) executor; the loop waits for it
    // before the stream goes away.
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer close_timer(executor, std::chrono::milliseconds(std::max(0L, b.ws_close_after_ms)));
    asio::steady_timer closer_done(executor, asio::steady_timer::time_point::max());
    bool closer_running = b.ws_close_after_ms > 0;
    if (closer_running)
        asio::co_spawn(
            executor,
            [&]() -> asio::awaitable<void> {
                auto [tec] = co_await close_timer.async_wait(nothrow);
                if (!tec && ws.is_open())
                    co_await ws.async_close(websocket::close_code::normal, nothrow);
                closer_running = false;
                closer_done.cancel();
            },
            asio::detached);

    beast::flat_buffer message;
    for (;;) {
        auto [rec, n] = co_await ws.async_read(message, nothrow);
        if (rec)
            break;
        ws.text(ws.got_text());
        auto [wec, w] = co_await ws.async_write(message.data(), nothrow);
        if (wec)
            break;
        message.consume(message.size());
    }
    close_timer.cancel();
    while (closer_running)
        co_await closer_done.async_wait(nothrow);
}

inline std::shared_ptr<asio::ssl::context> g_tls_context; // TLS mode when set

// Reads requests and answers them until the connection ends (with --idle-timeout-ms, also when it was
// idle that long). The head is read first: /__sink reads its body piece by piece, an upgrade becomes a
// WebSocket, and any other request is read whole.
template <class Stream>
asio::awaitable<void> serve(Stream& stream, const handshake_facts& handshake)
{
    bool counted = false;
    beast::flat_buffer buffer;
    for (;;) {
        http::request_parser<http::empty_body> head_parser;
        head_parser.body_limit(boost::none); // each path sets its own once it knows the path
        if (g_idle_timeout_ms > 0)
            beast::get_lowest_layer(stream).expires_after(std::chrono::milliseconds(g_idle_timeout_ms));
        else
            beast::get_lowest_layer(stream).expires_never();
        auto [ec, n] = co_await http::async_read_header(stream, buffer, head_parser, nothrow);
        if (ec)
            break;
        beast::get_lowest_layer(stream).expires_never();
        const auto& head = head_parser.get();
        const std::string path = path_of(head.target());
        if (websocket::is_upgrade(head) && behaviour_for(head.target()).ws_status == 0 &&
            behaviour_for(head.target()).fault.empty()) {
            co_await websocket_echo(stream, head_parser.release(), counted, handshake);
            break;
        }
        constexpr std::uint64_t body_limit = 64 * 1024 * 1024; // of bodies read whole (all but /__sink)
        if (path != "/__sink" && head_parser.content_length_remaining().value_or(0) > body_limit)
            break; // as Beast ends it: its limit applies to a Content-Length only while the head is parsed
        if (!head_parser.is_done() && head.version() == 11 && beast::iequals(head[http::field::expect], "100-continue")) {
            auto [cec, cn] = co_await asio::async_write(stream, asio::buffer("HTTP/1.1 100 Continue\r\n\r\n", 25), nothrow);
            if (cec)
                break;
        }
        if (path == "/__sink") {
            if (!co_await answer_sink(stream, buffer, head_parser, counted, handshake))
                break;
            continue;
        }
        http::request_parser<http::string_body> parser(std::move(head_parser));
        parser.body_limit(body_limit); // a chunked body
        if (!parser.is_done()) {
            buffer.reserve(piece_size); // reads of up to 64 KiB, not of the few hundred bytes left after the head
            auto [bec, bn] = co_await http::async_read(stream, buffer, parser, nothrow);
            if (bec)
                break;
        }
        auto req = parser.release();
        if (!co_await answer(stream, req, counted, handshake))
            break;
    }
}

} // namespace breakerbox_test_upstream
