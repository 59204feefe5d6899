#include "server/downstream_session.hpp"

#include "core/log.hpp"
#include "core/write_all.hpp"
#include "forward/forwarder.hpp"
#include "forward/stream_types.hpp"
#include "forward/streamed_completion.hpp"
#include "http/error_response.hpp"
#include "http/field_scan.hpp"
#include "http/framing.hpp"
#include "http/header_rules.hpp"
#include "http/message_rules.hpp"
#include "http/parse_step.hpp"
#include "http/read_message.hpp"
#include "http/serialize.hpp"
#include "queue/queue_request.hpp"
#include "queue/queue_wait.hpp"

#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <nlohmann/json.hpp>

#include <optional>

namespace breakerbox::server {
namespace {

namespace bhttp = boost::beast::http;
using request_parser = bhttp::request_parser<bhttp::string_body>;

// Decrements the process-wide connection count however the session ends.
struct connection_count_guard {
    explicit connection_count_guard(runtime::proxy_state& s) : state(s) { }
    ~connection_count_guard() { state.active_connections.fetch_sub(1, std::memory_order_relaxed); }
    runtime::proxy_state& state;
};

// Maps a failure while reading the client's request to the status the client gets.
proxy_error request_read_error(const error_code& ec, bool timed_out)
{
    if (timed_out)
        return proxy_error::request_timeout;
    if (ec == bhttp::error::body_limit)
        return proxy_error::body_too_large;
    if (ec == bhttp::error::header_limit)
        return proxy_error::header_too_large;
    return proxy_error::bad_request;
}

std::string_view buffered(const beast::flat_buffer& buffer)
{
    return {static_cast<const char*>(buffer.data().data()), buffer.size()};
}

// Where the header block ends (just past its empty line), or npos while it is incomplete.
std::size_t header_end(std::string_view data)
{
    for (std::size_t i = data.find('\n'); i != std::string_view::npos; i = data.find('\n', i + 1)) {
        if (i + 1 < data.size() && data[i + 1] == '\n')
            return i + 2;
        if (i + 2 < data.size() && data[i + 1] == '\r' && data[i + 2] == '\n')
            return i + 3;
    }
    return std::string_view::npos;
}

// Obsolete line folding (a field line starting with whitespace) is a request-smuggling vector:
// RFC 9112 §5.2 lets a server reject it, and we do rather than guess how the upstream would read it.
bool has_obs_fold(std::string_view head)
{
    for (std::size_t i = head.find('\n'); i != std::string_view::npos && i + 1 < head.size(); i = head.find('\n', i + 1))
        if (head[i + 1] == ' ' || head[i + 1] == '\t')
            return true;
    return false;
}

bool expects_continue(const http::request& req)
{
    auto expect = http::value_of(req, {bhttp::field::expect});
    return expect.size() == 12 && beast::iequals(expect, "100-continue");
}

// What the access log line needs from the request as the client sent it (opt-in: copied only then).
struct access_record {
    explicit access_record(const http::request& req) : method(req.method_string()), target(req.target()) { }
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
    std::string method, target;
};

// Reads a request body into its parser until it is complete or `limit` bytes of it are held, whichever
// comes first (the replay buffer: docs/streaming.md). Errors as read_message's.
template <class Stream>
asio::awaitable<error_code> read_body_prefix(Stream& stream, beast::flat_buffer& buffer, request_parser& parser,
                                             http::trailer_fence& fence, std::uint64_t limit)
{
    parser.eager(true);
    for (;;) {
        const auto step = http::parse_buffered(parser, fence, buffer);
        if (step.next == http::parse_next::done)
            co_return error_code{};
        if (step.next == http::parse_next::failed)
            co_return step.error;
        if (parser.get().body().size() >= limit)
            co_return error_code{};
        if (step.next == http::parse_next::again)
            continue;
        if (stream.timed_out())
            co_return beast::error::timeout;
        auto [aec, n] = co_await stream.socket().async_read_some(buffer.prepare(8192), nothrow_awaitable);
        if (aec)
            co_return aec == asio::error::eof ? error_code(bhttp::error::partial_message) : stream.io_error(aec);
        buffer.commit(n);
    }
}

// The rest of a request body that does not fit the replay buffer, read from the client as the upstream
// takes it (forward::upload_source). A body of known length passes as bytes, `remaining` of them; a
// chunked one through its parser, which decodes it (and drops its trailer section) — the upstream gets
// it chunk-framed again. Each read waits at most `idle`.
class client_upload final : public forward::upload_source {
public:
    client_upload(deadline_stream& stream, beast::flat_buffer& buffer, request_parser* parser, http::trailer_fence* fence,
                  std::string prefix, std::uint64_t length, std::size_t piece_size, nanos idle)
        : stream_(stream), buffer_(buffer), parser_(parser), fence_(fence), prefix_(std::move(prefix)), remaining_(length),
          piece_size_(piece_size), idle_(idle)
    {
        chunked = parser != nullptr;
        content_length = length;
    }

    asio::awaitable<error_code> next(std::string_view& piece) override
    {
        buffer_.consume(std::exchange(handed_out_, 0));
        if (!prefix_sent_) {
            prefix_sent_ = true;
            if (!prefix_.empty()) {
                piece = prefix_;
                co_return error_code{};
            }
        }
        committed_ = true;
        std::string().swap(prefix_);
        // (if/else, not a conditional expression: GCC 12 miscompiles co_await inside one)
        if (parser_)
            co_return co_await next_decoded(piece);
        co_return co_await next_bytes(piece);
    }

    bool rewind() override
    {
        if (committed_)
            return false;
        prefix_sent_ = false;
        return true;
    }

    // The whole body was read from the client and taken by the upstream (the connection may carry
    // another request). A last piece handed out but not taken (its write failed) is still in the buffer:
    // not finished — else those bytes would be read as the next request.
    bool finished() const noexcept
    {
        return parser_ ? parser_->is_done() && handed_out_ == 0 : remaining_ == 0 && handed_out_ == 0;
    }

private:
    asio::awaitable<error_code> read_more(std::size_t room)
    {
        stream_.expires_after(as_duration(idle_));
        auto [ec, n] = co_await stream_.read_some(buffer_.prepare(room));
        if (!ec)
            buffer_.commit(n);
        co_return ec;
    }

    asio::awaitable<error_code> next_bytes(std::string_view& piece)
    {
        if (remaining_ == 0) {
            piece = {};
            co_return error_code{};
        }
        if (buffer_.size() == 0)
            if (auto ec = co_await read_more(static_cast<std::size_t>(std::min<std::uint64_t>(piece_size_, remaining_))))
                co_return ec;
        handed_out_ = static_cast<std::size_t>(std::min<std::uint64_t>(buffer_.size(), remaining_));
        remaining_ -= handed_out_;
        piece = {static_cast<const char*>(buffer_.data().data()), handed_out_};
        co_return error_code{};
    }

    asio::awaitable<error_code> next_decoded(std::string_view& piece)
    {
        auto& body = parser_->get().body();
        body.clear();
        for (;;) {
            const auto step = http::parse_buffered(*parser_, *fence_, buffer_);
            if (step.next == http::parse_next::failed)
                co_return step.error;
            if (!body.empty() || parser_->is_done()) {
                piece = body; // empty at the end
                co_return error_code{};
            }
            if (step.next == http::parse_next::again)
                continue;
            if (auto ec = co_await read_more(piece_size_))
                co_return ec;
        }
    }

    deadline_stream& stream_;
    beast::flat_buffer& buffer_;
    request_parser* parser_;
    http::trailer_fence* fence_;
    std::string prefix_;
    std::uint64_t remaining_;
    std::size_t piece_size_;
    nanos idle_;
    std::size_t handed_out_ = 0; // bytes of buffer_ the last piece was (consumed at the next call)
    bool prefix_sent_ = false;
};

class downstream_session final : public forward::interim_sink {
public:
    downstream_session(tcp::socket socket, worker& w, std::size_t listener_index)
        : stream_(std::move(socket)), watch_(stream_.socket(), w.context.watches), worker_(w), state_(w.context.state),
          gen_(w.context.current), listener_index_(listener_index)
    {
        error_code ec;
        auto remote = stream_.socket().remote_endpoint(ec);
        if (!ec)
            client_ip_ = remote.address().to_string();
        stream_.socket().set_option(tcp::no_delay(true), ec);
    }

    asio::awaitable<void> run()
    {
        bool first = true;
        for (;;) {
            if (buffer_.size() == 0) {
                // Waits for the first byte of the next request: the header timeout for a new
                // connection, the idle timeout between keep-alive requests. (In this loop, not a
                // coroutine of its own: that would cost a frame per request.)
                if (!may_wait_for_request(first))
                    break;
                std::optional<idle_mark> mark;
                if (!first)
                    mark.emplace(worker_.idle, stream_);
                stream_.expires_after(as_duration(first ? limits().header_timeout : limits().idle_timeout));
                // 2 KiB holds a typical service-to-service request in one read (longer heads grow it in
                // read_rest_of_head); a connection idle for a second parks and gives it back.
                auto [ec, n] = co_await stream_.socket().async_read_some(buffer_.prepare(2048), nothrow_awaitable);
                if (ec == asio::error::operation_aborted && mark && mark->park_requested() && !stream_.timed_out() &&
                    !worker_.idle.closing) {
                    // Idle for a second: give the buffers back and wait for the next request without
                    // them (server/idle_registry.hpp); then read it as usual.
                    buffer_.shrink_to_fit();
                    std::string().swap(head_);
                    auto [wec] = co_await stream_.socket().async_wait(tcp::socket::wait_read, nothrow_awaitable);
                    if (wec)
                        break;
                    continue;
                }
                if (ec)
                    break; // idle timeout, client closed, or drain: nothing is owed to anyone
                commit_read(n, 2048);
            }
            first = false;
            bool keep_alive = co_await serve_one();
            if (!keep_alive)
                break;
        }
        error_code ignored;
        if (stream_.socket().is_open()) { // an aborted connection is closed already
            stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
            if (refused_unread_)
                co_await discard_unread_input();
            stream_.socket().close(ignored);
        }
    }

private:
    // What one request needs while it is served: members, not locals of serve_one, because Asio
    // recycles coroutine frames only up to about 1 KiB and these made serve_one's frame larger (a fresh
    // allocation per request). Released when the request is over: an idle connection holds none of it.
    struct request_state {
        request_state() : fence(parser) { } // (a default member initializer would not do for clang here)
        request_parser parser;
        http::trailer_fence fence; // after the parser: it registers with it
        http::request req;
        forward::forward_result result;
        std::optional<client_upload> upload; // the body streams (longer than limits.request_buffer)
    };
    struct request_state_release {
        std::optional<request_state>& state;
        ~request_state_release() { state.reset(); }
    };
    // False when the connection should close instead of waiting for another request. Refreshes the
    // configuration generation the next request is served with.
    bool may_wait_for_request(bool first)
    {
        gen_ = worker_.context.current;
        return first || !(state_.draining.load(std::memory_order_relaxed) || worker_.idle.closing);
    }

    // The header block is checked before it is parsed: a request line longer than the header limit is a
    // 414, a longer header a 431, obs-fold a 400. nullopt: incomplete, read more.
    std::optional<proxy_error> check_buffered_head() const
    {
        std::string_view data = buffered(buffer_);
        const std::size_t end = header_end(data);
        if (end != std::string_view::npos && end <= limits().max_header_bytes)
            return has_obs_fold(data.substr(0, end)) ? proxy_error::bad_request : proxy_error::ok;
        if (data.size() >= limits().max_header_bytes)
            return data.substr(0, limits().max_header_bytes).find('\n') == std::string_view::npos ? proxy_error::uri_too_long
                                                                                                  : proxy_error::header_too_large;
        return std::nullopt;
    }

    // Reads until check_buffered_head() has a verdict, under the header timeout. client_closed: the
    // client went away mid-header (nobody to answer). Only for heads that did not arrive with the first
    // read: serve_one checks what is buffered first.
    asio::awaitable<proxy_error> read_rest_of_head()
    {
        stream_.expires_after(as_duration(limits().header_timeout));
        for (;;) {
            auto [ec, n] = co_await stream_.read_some(buffer_.prepare(4096));
            if (ec)
                co_return ec == beast::error::timeout ? proxy_error::request_timeout : proxy_error::client_closed;
            commit_read(n, 4096);
            if (auto verdict = check_buffered_head())
                co_return *verdict;
        }
    }

    // Takes `n` bytes read into buffer_.prepare(asked) and remembers whether the read drained the
    // socket. (Not a coroutine wrapping the read: each coroutine layer costs a frame per request.)
    void commit_read(std::size_t n, std::size_t asked)
    {
        buffer_.commit(n);
        last_read_short_ = n < asked;
    }

    // Reads, handles and answers one request: the head (usually buffered already), its checks, the
    // route — before the body is read: a request nobody will take is answered at once, without a 100
    // Continue and without waiting for its body (as a 413 is) —, the body if any, the forwarder, the
    // answer. Returns whether the connection stays open. Only the waits are coroutine code here; each
    // step that does not wait is a plain function (a coroutine per step would cost a frame per request).
    // A body that fits the replay buffer is read whole; a longer one streams (take_streamed_request): by
    // its Content-Length from its first byte, a chunked one after the buffer's worth.
    asio::awaitable<bool> serve_one()
    {
        auto& state = begin_request();
        const request_state_release release_at_end{current_};
        auto checked = check_buffered_head(); // the usual case: the whole head came with the first read
        auto head = checked ? parsed_head{*checked} : parsed_head{co_await read_rest_of_head()};
        stream_.expires_never(); // the exchange runs under its own deadlines
        if (head.error == proxy_error::ok)
            head = parse_head(state.parser);
        if (head.error != proxy_error::ok) {
            if (head.error != proxy_error::client_closed)
                co_await send_and_close(head.error, head.version, head.head_request);
            co_return false;
        }
        auto& result = state.result;
        const auto route = route_request(state.parser.get(), result);
        if (!state.parser.is_done()) { // the body: under its own timeout, after a 100 Continue if asked for
            if (expects_continue(state.parser.get()) && !co_await answer_expect_continue(state, route.has_value(), head))
                co_return false;
            if (!route && !fits_request_buffer(state.parser)) { // nobody takes it: not worth reading
                co_await send_refusal_and_close(state.result, head.version, head.head_request);
                co_return false;
            }
            stream_.expires_after(as_duration(limits().body_timeout));
            error_code bec; // (inline, not a coroutine of its own: a frame per request)
            if (!route || fits_request_buffer(state.parser))
                bec = co_await http::read_message(stream_, buffer_, state.parser, state.fence, 8192);
            else if (!state.parser.content_length())
                bec = co_await read_body_prefix(stream_, buffer_, state.parser, state.fence, limits().request_buffer);
            stream_.expires_never();
            if (bec) {
                co_await answer_unreadable_body(bec, head);
                co_return false;
            }
        }

        bool keep_alive = state.parser.keep_alive(); // the parser read Connection already
        auto& req = state.parser.is_done() ? take_request(state) : take_streamed_request(state, *route);
        std::optional<access_record> record;
        if (gen_->config->cfg.logging.access_log)
            record.emplace(req); // before forwarding rewrites the request
        if (is_queue_status_request(req)) [[unlikely]]
            co_await answer_queue_status(req, result);
        else if (route)
            co_await forward::forward_request(worker_.context, *gen_, req, *route, client_of(state, req), result);
        if (result.error == proxy_error::client_closed)
            co_return false; // nobody left to answer
        keep_alive = keeps_alive_after(state, keep_alive);
        count_response(result.status(), result.error != proxy_error::ok);
        if (result.body) [[unlikely]]
            co_return co_await answer_streamed(req, result, head.version, keep_alive, record);
        const auto message = serialize_response(result, head.version, keep_alive, head.head_request);
        auto sent = message.try_write(stream_);
        if (!sent.finished) // the socket is full: only now a coroutine and the write deadline
            sent = co_await message.write_rest(stream_, sent, limits().write_timeout);
        if (record)
            log_access(*record, result);
        co_return !sent.ec && keep_alive;
    }

    // A request's state, fresh, on the worker's current generation, its parser under the limits.
    request_state& begin_request()
    {
        gen_ = worker_.context.current;
        auto& state = current_.emplace();
        state.parser.header_limit(static_cast<std::uint32_t>(limits().max_header_bytes));
        state.parser.body_limit(limits().max_request_body);
        return state;
    }

    // What the forwarder knows of the client: its address, its socket and watch, its streamed upload,
    // and (HTTP/1.1 only: never to HTTP/1.0) where the upstream's interim 1xx go.
    forward::client_info client_of(request_state& state, const http::request& req)
    {
        return {client_ip_, &stream_.socket(), &watch_, state.upload ? &*state.upload : nullptr,
                req.version() >= 11 ? this : nullptr};
    }

    // Whether the connection may carry another request after this answer: not when the answer came
    // before the whole upload was read (the rest is refused unread), nor while draining or closing.
    bool keeps_alive_after(const request_state& state, bool keep_alive)
    {
        if (state.upload && !state.upload->finished()) {
            keep_alive = false;
            refused_unread_ = true;
        }
        return keep_alive && !state_.draining.load(std::memory_order_relaxed) && !worker_.idle.closing;
    }

    // Whether a request's body is read whole before the upstream is called: its Content-Length fits the
    // replay buffer (limits.request_buffer). A longer one, or a chunked one, streams (docs/streaming.md).
    bool fits_request_buffer(const request_parser& parser) const
    {
        const auto length = parser.content_length();
        return length && *length <= limits().request_buffer;
    }

    // The request whose body streams: its head copied out of the parser (which goes on reading the body
    // for the upload), its replay prefix as the upload's first piece.
    http::request& take_streamed_request(request_state& state, const routing::route_match& route)
    {
        gen_->stats.worker->requests.add();
        auto& parsed = state.parser.get();
        state.req.base() = parsed.base();
        const auto length = state.parser.content_length();
        const auto& up = gen_->config->cfg.upstreams[route.upstream];
        if (length)
            state.upload.emplace(stream_, buffer_, nullptr, nullptr, std::string(), *length, limits().stream_buffer,
                                 up.streaming.idle_timeout);
        else
            state.upload.emplace(stream_, buffer_, &state.parser, &state.fence, std::move(parsed.body()), 0,
                                 limits().stream_buffer, up.streaming.idle_timeout);
        return state.req;
    }

    // A streamed answer (docs/streaming.md): its head — chunk-framed for an HTTP/1.1 client when its length
    // is unknown, delimited by the close for HTTP/1.0 —, then its body relayed piece by piece, or after a
    // 101 the tunnel. A relay that fails aborts the connection: the client sees the message cut.
    asio::awaitable<bool> answer_streamed(const http::request& req, forward::forward_result& result, unsigned version,
                                          bool keep_alive, const std::optional<access_record>& record)
    {
        auto& res = result.response;
        res.version(version);
        const bool tunnel = result.body.upgraded;
        const bool chunked = !tunnel && !result.body.known_length && version == 11;
        if (chunked)
            res.set(bhttp::field::transfer_encoding, "chunked");
        if (tunnel || (!result.body.known_length && version != 11))
            keep_alive = false;
        if (!tunnel)
            http::set_keep_alive(res, keep_alive);
        http::serialize_head(res, head_);
        const auto sent = co_await write_all(stream_, asio::buffer(head_), limits().write_timeout);
        if (sent.ec) {
            result.body.reset();
            co_return false;
        }
        const auto end =
            co_await forward::finish_streamed(worker_.context, limits(), req, result, stream_, buffer_, chunked, &watch_);
        if (record)
            log_access(*record, result);
        if (!end.completed && !tunnel)
            abort_connection();
        co_return keep_alive&& end.completed;
    }

    // Resets the client's connection (RST): a streamed answer broke after its head, and a plain close
    // could look like a complete message to a client reading to the close.
    void abort_connection()
    {
        error_code ignored;
        stream_.socket().set_option(asio::socket_base::linger(true, 0), ignored);
        stream_.socket().close(ignored);
        refused_unread_ = false;
    }

    // GET <queue_store.status_path><id> (docs/queue.md): answered by this sidecar from the queue's store,
    // whatever the routes say. One flag test when no queue is configured.
    bool is_queue_status_request(const http::request& req) const
    {
        const auto& qs = gen_->config->cfg.queue_store;
        return qs.enabled && state_.queue && req.target().substr(0, qs.status_path.size()) == qs.status_path;
    }

    asio::awaitable<void> answer_queue_status(const http::request& req, forward::forward_result& out)
    {
        const unsigned version = req.version() == 10 ? 10u : 11u;
        if (req.method() != bhttp::verb::get && req.method() != bhttp::verb::head) {
            out = {queue::status_method_not_allowed(version), proxy_error::ok};
            co_return;
        }
        queue::queue_result<std::optional<queue::entry>> found{queue::queue_error::none, {}}; // a malformed id: unknown
        const auto& qs = gen_->config->cfg.queue_store;
        if (auto id = queue::status_id(req.target(), qs.status_path))
            found = co_await queue::within<std::optional<queue::entry>>(
                qs.commit_timeout, [&](auto handler) { state_.queue->async_find(std::move(*id), std::move(handler)); });
        out = {queue::status_response(found, version), proxy_error::ok};
    }

    // The verdict on a request's head, with what answering it needs.
    struct parsed_head {
        proxy_error error = proxy_error::ok;
        unsigned version = 11;     // the request's HTTP version: 10 or 11
        bool head_request = false; // a HEAD request: its answer goes without a body
    };

    // Parses the buffered, checked header block in place and applies the rules every request must meet
    // (http/message_rules.hpp).
    parsed_head parse_head(request_parser& parser)
    {
        error_code ec;
        buffer_.consume(parser.put(buffer_.data(), ec));
        if (!ec && !parser.is_header_done())
            ec = bhttp::error::partial_message;
        if (ec)
            return {request_read_error(ec, false)};
        const parsed_head head{http::request_head_refusal(parser.get()), parser.get().version() == 10 ? 10u : 11u,
                               parser.get().method() == bhttp::verb::head};
        if (head.error == proxy_error::ok && parser.is_done() && buffer_.size() == 0 && last_read_short_)
            stream_.mark_drained(); // the request ended with the data queued: the next one is not there yet
        return head;
    }

    // The client waits for our go-ahead before it sends the body (RFC 9110 §10.1.1). A request nobody
    // will take is answered now, and the connection closes, since the unread body would otherwise be
    // taken for the next request. False: the connection is over.
    // forward::interim_sink: the upstream's 1xx (103 Early Hints, …) to this HTTP/1.1 client as it came,
    // without its hop-by-hop fields, under the write timeout. A failed write is left to the client watch.
    asio::awaitable<void> forward_interim(const http::response& res) override
    {
        http::response interim;
        interim.version(11);
        interim.result(res.result_int()); // by number: Beast 1.81 has no name for 103
        interim.reason(res.reason());
        for (const auto& f : res)
            interim.insert(f.name_string(), f.value());
        http::strip_hop_by_hop(interim);
        std::string head;
        http::serialize_head(interim, head);
        co_await write_all(stream_, asio::buffer(head), limits().write_timeout);
    }

    asio::awaitable<bool> answer_expect_continue(request_state& state, bool routed, const parsed_head& head)
    {
        if (!routed) {
            co_await send_refusal_and_close(state.result, head.version, head.head_request);
            co_return false;
        }
        static constexpr std::string_view go_on = "HTTP/1.1 100 Continue\r\n\r\n";
        co_return head.version != 11 || !(co_await write_all(stream_, asio::buffer(go_on), limits().write_timeout)).ec;
    }

    // The body could not be read: answered and closing, unless the client went away mid-body.
    asio::awaitable<void> answer_unreadable_body(error_code ec, const parsed_head& head)
    {
        const bool timed_out = ec == beast::error::timeout;
        if (!timed_out && (ec == asio::error::connection_reset || ec == bhttp::error::partial_message))
            co_return; // nobody to answer
        co_await send_and_close(request_read_error(ec, timed_out), head.version, head.head_request);
    }

    // The complete request, out of its parser, counted; a buffer a body made grow is given back.
    http::request& take_request(request_state& state)
    {
        if (buffer_.size() == 0 && buffer_.capacity() > 4096)
            buffer_.shrink_to_fit(); // idle keep-alive connections keep only a small buffer
        gen_->stats.worker->requests.add();
        return state.req = state.parser.release();
    }

    void log_access(const access_record& r, const forward::forward_result& result) const
    {
        log::info("access", {{"client", client_ip_},
                             {"method", r.method},
                             {"target", r.target},
                             {"status", result.status()},
                             {"error", result.error == proxy_error::ok ? "" : token(result.error)},
                             {"upstream", result.upstream},
                             {"duration_ms",
                              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - r.started).count()}});
    }

    void count_response(unsigned status, bool generated_by_proxy)
    {
        auto& stats = *gen_->stats.worker;
        stats.responses_by_class[std::min<unsigned>(status / 100, 5)].add();
        if (generated_by_proxy)
            stats.proxy_errors.add();
    }

    // The route a request is forwarded on; nullopt with the answer in `refused` when there is none.
    std::optional<routing::route_match> route_request(const http::request& req, forward::forward_result& refused)
    {
        if (req.method() == bhttp::verb::connect) {
            refused = {http::make_error_response(proxy_error::method_not_allowed, {},
                                                 "CONNECT is not supported: breakerbox is not a tunnel"),
                       proxy_error::method_not_allowed};
            return std::nullopt;
        }
        auto route = gen_->config->router.match(listener_index_, req.target(), http::value_of(req, {bhttp::field::host}));
        if (!route)
            refused = {http::make_error_response(proxy_error::no_route, {}, "no configured upstream matches this request"),
                       proxy_error::no_route};
        return route;
    }

    // After an answer to a request whose body (or the rest of whose bytes) was not read: a close with
    // unread data makes the kernel send a reset, which can destroy the answer before the client has read
    // it. So the input is read and thrown away for a bounded time and amount first (a lingering close,
    // as nginx's lingering_close), after our side of the connection was shut down.
    asio::awaitable<void> discard_unread_input()
    {
        constexpr std::size_t linger_bytes = 256 * 1024;
        stream_.expires_after(std::chrono::seconds(1));
        buffer_.clear();
        for (std::size_t discarded = 0; discarded < linger_bytes;) {
            auto [ec, n] = co_await stream_.read_some(buffer_.prepare(4096));
            if (ec)
                break; // the client closed (what we wait for), or a second passed
            discarded += n;
        }
        buffer_.clear();
    }

    // Answers a request refused before its body was read, and closes.
    asio::awaitable<void> send_refusal_and_close(forward::forward_result& refused, unsigned version, bool head_request)
    {
        refused_unread_ = true;
        gen_->stats.worker->requests.add();
        count_response(refused.status(), true);
        refused.response.version(version);
        refused.response.keep_alive(false);
        const auto message = serialize_response(refused.response, head_request);
        co_await message.write_all(stream_, limits().write_timeout);
    }

    // Answers a request that could not be read and closes: after a framing error the rest of the
    // byte stream cannot be trusted.
    asio::awaitable<void> send_and_close(proxy_error reason, unsigned version, bool head_request = false)
    {
        refused_unread_ = true;
        gen_->stats.worker->requests.add();
        count_response(http_status(reason), true);
        auto res = http::make_error_response(reason, {}, {}, version);
        res.keep_alive(false);
        const auto message = serialize_response(res, head_request);
        co_await message.write_all(stream_, limits().write_timeout);
    }

    // Head and body ready to go in one system call; head_ keeps its capacity from request to request.
    // An answer to HEAD goes without its body, whoever made it (the upstream, a fallback, an error);
    // its Content-Length stays: it says what a GET would have got.
    head_and_body serialize_response(const http::response& res, bool head_request)
    {
        http::serialize_head(res, head_);
        return head_and_body(head_, head_request ? std::string_view{} : std::string_view(res.body()));
    }
    // The forwarder's answer in the request's HTTP version, with Connection as `keep_alive` says.
    head_and_body serialize_response(forward::forward_result& result, unsigned version, bool keep_alive, bool head_request)
    {
        if (const auto* ready = result.prerendered) {
            ready->write_head(head_, version, keep_alive, result.retry_after_seconds);
            return head_and_body(head_, head_request ? std::string_view{} : std::string_view(ready->body));
        }
        result.response.version(version);
        http::set_keep_alive(result.response, keep_alive);
        return serialize_response(result.response, head_request);
    }

    std::optional<request_state> current_;

    deadline_stream stream_;
    beast::flat_buffer buffer_;
    bool last_read_short_ = false; // the last read got less than it asked for: the queue was empty then
    bool refused_unread_ = false;  // answered and closing with the request's bytes possibly unread
    std::string head_;
    resilience::client_watch watch_;
    worker& worker_;
    runtime::proxy_state& state_;
    // The configuration generation this connection serves with; refreshed before each request, so a
    // reload applies from the next request on while the current one finishes on its own.
    std::shared_ptr<runtime::worker_generation> gen_;
    const config::limits_config& limits() const { return gen_->config->cfg.limits; }
    std::size_t listener_index_;
    std::string client_ip_;
};

} // namespace

asio::awaitable<void> run_downstream_session(tcp::socket socket, worker& w, std::size_t listener_index)
{
    w.context.owner.assert_owned("run_downstream_session");
    connection_count_guard counted(w.context.state);
    w.context.current->stats.worker->connections_accepted.add();
    downstream_session session(std::move(socket), w, listener_index);
    co_await session.run();
}

} // namespace breakerbox::server
