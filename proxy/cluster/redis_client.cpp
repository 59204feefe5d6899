#include "cluster/redis_client.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <charconv>

namespace breakerbox::cluster {

// The Asio side of one hiredis context. hiredis calls the hooks (add/del read/write) when it wants to
// know that its socket is readable or writable; a wait that completes calls back into hiredis, which
// may free the context (cleanup sets `ac` to null: nothing touches it afterwards).
struct redis_client::io : std::enable_shared_from_this<io> {
    explicit io(const asio::any_io_executor& ex) : socket(ex), wake(ex) { }

    redisAsyncContext* ac = nullptr;
    asio::posix::stream_descriptor socket; // hiredis's fd: released, never closed, by us
    asio::steady_timer wake;               // cancelled when the connection is made or lost
    bool want_read = false, want_write = false;
    bool reading = false, writing = false; // a wait is pending
    bool connected = false;

    void arm_read()
    {
        if (reading || !ac)
            return;
        reading = true;
        socket.async_wait(asio::posix::stream_descriptor::wait_read, [self = shared_from_this()](const error_code& ec) {
            self->reading = false;
            if (ec || !self->ac || !self->want_read)
                return;
            redisAsyncHandleRead(self->ac); // may free the context
            if (self->ac && self->want_read)
                self->arm_read();
        });
    }
    void arm_write()
    {
        if (writing || !ac)
            return;
        writing = true;
        socket.async_wait(asio::posix::stream_descriptor::wait_write, [self = shared_from_this()](const error_code& ec) {
            self->writing = false;
            if (ec || !self->ac || !self->want_write)
                return;
            redisAsyncHandleWrite(self->ac); // may free the context
            if (self->ac && self->want_write)
                self->arm_write();
        });
    }
    void cleanup()
    {
        ac = nullptr;
        want_read = want_write = connected = false;
        error_code ec;
        socket.cancel(ec);
        if (socket.is_open())
            socket.release(); // hiredis closes its own socket
        wake.cancel();
    }

    static io& of(void* p) { return *static_cast<io*>(p); }
    static void add_read(void* p)
    {
        of(p).want_read = true;
        of(p).arm_read();
    }
    static void del_read(void* p) { of(p).want_read = false; }
    static void add_write(void* p)
    {
        of(p).want_write = true;
        of(p).arm_write();
    }
    static void del_write(void* p) { of(p).want_write = false; }
    static void on_cleanup(void* p) { of(p).cleanup(); }
    static void on_connect(const redisAsyncContext* ac, int status)
    {
        auto& self = of(ac->data);
        self.connected = status == REDIS_OK;
        self.wake.cancel();
    }
    static void on_disconnect(const redisAsyncContext* ac, int)
    {
        auto& self = of(ac->data);
        self.connected = false;
        self.wake.cancel();
    }
};

// One pipeline call: a slot per command (hiredis's privdata), the replies, the wake-up.
struct redis_client::call_state {
    struct slot {
        call_state* call;
        std::size_t index;
    };
    call_state(const asio::any_io_executor& ex, std::size_t n) : wake(ex), replies(n), slots(n)
    {
        for (std::size_t i = 0; i < n; ++i)
            slots[i] = {this, i};
    }
    asio::steady_timer wake;
    std::vector<redis_value> replies;
    std::vector<slot> slots;
    std::size_t received = 0;
    bool lost = false; // a reply came back null: the connection is going away
};

namespace {

redis_value copy_reply(const redisReply* r)
{
    redis_value v;
    switch (r->type) {
    case REDIS_REPLY_INTEGER:
        v.type = redis_value::kind::integer;
        v.integer = r->integer;
        break;
    case REDIS_REPLY_STRING:
        v.type = redis_value::kind::string;
        v.text.assign(r->str, r->len);
        break;
    case REDIS_REPLY_STATUS:
        v.type = redis_value::kind::status;
        v.text.assign(r->str, r->len);
        break;
    case REDIS_REPLY_ERROR:
        v.type = redis_value::kind::error;
        v.text.assign(r->str, r->len);
        break;
    case REDIS_REPLY_ARRAY:
        v.type = redis_value::kind::array;
        for (std::size_t i = 0; i < r->elements; ++i)
            v.elements.push_back(copy_reply(r->element[i]));
        break;
    default: break; // nil
    }
    return v;
}

} // namespace

// hiredis calls it once per command: with the reply, or with null when the context goes away.
void redis_client::call_state_reply(redisAsyncContext*, void* reply, void* privdata)
{
    auto& slot = *static_cast<call_state::slot*>(privdata);
    auto& call = *slot.call;
    if (!reply)
        call.lost = true;
    else
        call.replies[slot.index] = copy_reply(static_cast<const redisReply*>(reply));
    if (++call.received == call.replies.size() || call.lost)
        call.wake.cancel();
}

redis_client::redis_client(asio::any_io_executor ex, std::string address, std::string password, nanos connect_timeout,
                           nanos command_timeout)
    : ex_(std::move(ex)), address_(std::move(address)), password_(std::move(password)), connect_timeout_(connect_timeout),
      command_timeout_(command_timeout)
{
}

redis_client::~redis_client() { disconnect(); }

bool redis_client::connected() const noexcept { return io_ && io_->ac && io_->connected; }

void redis_client::disconnect() noexcept
{
    if (!io_)
        return;
    auto keep = io_; // the hooks run during the free
    io_.reset();
    if (keep->ac)
        redisAsyncFree(keep->ac); // completes pending commands with null replies, then cleanup
}

namespace {

struct tcp_target {
    std::string host;
    std::string port;
};

tcp_target split_address(const std::string& address)
{
    const auto colon = address.rfind(':');
    std::string host = address.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    return {host, address.substr(colon + 1)};
}

} // namespace

// A connection context for the configured address. hiredis 0.14 would resolve a name with a blocking
// getaddrinfo on this thread: Asio resolves it instead (on its own thread), under the connect deadline,
// and hiredis gets the address. nullptr with `failed` set when the name does not resolve.
asio::awaitable<redisAsyncContext*> redis_client::open_context(redis_result& failed)
{
    if (address_.rfind("unix:", 0) == 0)
        co_return redisAsyncConnectUnix(address_.substr(5).c_str());
    const auto target = split_address(address_);
    error_code ec;
    auto ip = asio::ip::make_address(target.host, ec);
    if (ec) {
        auto resolver = std::make_shared<tcp::resolver>(ex_); // shared with the deadline's handler
        asio::steady_timer deadline(ex_, as_duration(connect_timeout_));
        deadline.async_wait([resolver](const error_code& e) {
            if (!e)
                resolver->cancel();
        });
        auto [rec, found] = co_await resolver->async_resolve(target.host, target.port, nothrow_awaitable);
        deadline.cancel();
        if (rec || found.empty()) {
            failed = redis_result{redis_failure::connect, "cannot resolve " + target.host + ": " + rec.message()};
            co_return nullptr;
        }
        ip = found.begin()->endpoint().address();
    }
    int port = 0;
    std::from_chars(target.port.data(), target.port.data() + target.port.size(), port);
    co_return redisAsyncConnect(ip.to_string().c_str(), port);
}

// Our I/O hooks on the context: hiredis asks for reads and writes, Asio waits for them.
std::shared_ptr<redis_client::io> redis_client::attach(redisAsyncContext* ac)
{
    auto conn = std::make_shared<io>(ex_);
    conn->ac = ac;
    ac->data = conn.get();
    ac->ev.data = conn.get();
    ac->ev.addRead = io::add_read;
    ac->ev.delRead = io::del_read;
    ac->ev.addWrite = io::add_write;
    ac->ev.delWrite = io::del_write;
    ac->ev.cleanup = io::on_cleanup;
    conn->socket.assign(ac->c.fd);
    redisAsyncSetDisconnectCallback(ac, io::on_disconnect);
    redisAsyncSetConnectCallback(ac, io::on_connect); // waits for the first write event: the connection made
    return conn;
}

asio::awaitable<redis_result> redis_client::connect()
{
    owner_.claim("redis_client::connect");
    disconnect();
    redis_result failed;
    redisAsyncContext* ac = co_await open_context(failed);
    if (!failed.ok())
        co_return failed;
    if (!ac || ac->err) {
        failed = redis_result{redis_failure::connect, ac ? ac->errstr : "out of memory"};
        if (ac)
            redisAsyncFree(ac);
        co_return failed;
    }
    auto conn = attach(ac);
    io_ = conn;
    conn->wake.expires_after(as_duration(connect_timeout_));
    co_await conn->wake.async_wait(nothrow_awaitable);
    if (!conn->ac || !conn->connected) {
        const bool timed_out = conn->ac != nullptr;
        disconnect();
        co_return redis_result{timed_out ? redis_failure::timeout : redis_failure::connect,
                               timed_out ? "no connection within connect_timeout" : "connection refused or failed"};
    }
    if (password_.empty())
        co_return redis_result{};
    const std::vector<std::vector<std::string>> auth_command{{"AUTH", password_}}; // named: see cluster_sync.cpp
    auto auth = co_await pipeline(auth_command);
    if (auth.ok() && auth.replies.at(0).is_error()) {
        disconnect();
        co_return redis_result{redis_failure::auth, auth.replies[0].text};
    }
    co_return auth;
}

asio::awaitable<redis_result> redis_client::pipeline(const std::vector<std::vector<std::string>>& commands)
{
    owner_.assert_owned("redis_client::pipeline");
    if (!connected())
        co_return redis_result{redis_failure::disconnected, "not connected"};
    auto conn = io_;
    auto call = std::make_shared<call_state>(ex_, commands.size());
    std::vector<const char*> argv;
    std::vector<std::size_t> lengths;
    for (std::size_t i = 0; i < commands.size(); ++i) {
        argv.clear();
        lengths.clear();
        for (const auto& a : commands[i]) {
            argv.push_back(a.data());
            lengths.push_back(a.size());
        }
        if (redisAsyncCommandArgv(conn->ac, call_state_reply, &call->slots[i], static_cast<int>(argv.size()), argv.data(),
                                  lengths.data()) != REDIS_OK) {
            disconnect();
            co_return redis_result{redis_failure::disconnected, "the connection refused the command"};
        }
    }
    call->wake.expires_after(as_duration(command_timeout_));
    co_await call->wake.async_wait(nothrow_awaitable);
    if (call->received == commands.size() && !call->lost)
        co_return redis_result{redis_failure::none, {}, std::move(call->replies)};
    const bool timed_out = !call->lost;
    disconnect(); // a late reply must never meet the next call: the connection goes
    co_return redis_result{timed_out ? redis_failure::timeout : redis_failure::disconnected,
                           timed_out ? "no reply within command_timeout" : "the connection was lost"};
}

} // namespace breakerbox::cluster
