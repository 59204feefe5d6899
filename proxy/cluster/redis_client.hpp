// A Redis connection for the cluster sync (docs/cluster.md): Debian's hiredis 0.14 async API driven by
// an Asio io_context through an adapter of ours (hiredis ships none for Asio). One thread owns it — the
// main thread, which runs the sync; nothing on the request path ever uses it.
//
// hiredis 0.14 has no timeouts: every call here has its own deadline (connect_timeout, command_timeout),
// and a call that misses it frees the connection (a SIGSTOPped Redis accepts and never answers: only a
// client-side deadline notices). After any failure the client is disconnected; connect() again.
// Facts of 0.14 this relies on: hiredis owns the socket (our descriptor releases it, never closes it);
// the context is freed after its disconnect callback (never touched afterwards); a read can free it.
#pragma once
#include "core/asio.hpp"
#include "core/clock.hpp"
#include "core/enum_names.hpp"
#include "core/thread_owner.hpp"

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

struct redisAsyncContext;

namespace breakerbox::cluster {

// One reply, copied out of hiredis's: RESP2 types.
struct redis_value {
    enum class kind : std::uint8_t { nil, integer, string, status, error, array };
    kind type = kind::nil;
    std::int64_t integer = 0;
    std::string text; // string, status, error
    std::vector<redis_value> elements;

    bool is_error() const noexcept { return type == kind::error; }
};

// Why a call failed (label `reason` of breakerbox_cluster_sync_failures_total).
enum class redis_failure : std::uint8_t { none, connect, timeout, disconnected, auth, script, reply };
inline constexpr enum_name<redis_failure> redis_failure_names[]{
    {redis_failure::none, "none"},       {redis_failure::connect, "connect"},
    {redis_failure::timeout, "timeout"}, {redis_failure::disconnected, "disconnected"},
    {redis_failure::auth, "auth"},       {redis_failure::script, "script"},
    {redis_failure::reply, "reply"}};
constexpr std::span<const enum_name<redis_failure>> names_of(redis_failure) noexcept { return redis_failure_names; }

struct redis_result {
    redis_failure failure = redis_failure::none;
    std::string detail;
    std::vector<redis_value> replies; // one per command, in order (when failure == none)
    bool ok() const noexcept { return failure == redis_failure::none; }
};

class redis_client {
public:
    // `address`: "unix:/path" or "IP:port" (the loader checked it). `password`: "" for no AUTH.
    redis_client(asio::any_io_executor ex, std::string address, std::string password, nanos connect_timeout,
                 nanos command_timeout);
    ~redis_client();
    redis_client(const redis_client&) = delete;
    redis_client& operator=(const redis_client&) = delete;

    // Connects (and authenticates) within connect_timeout. On the owning thread only.
    asio::awaitable<redis_result> connect();
    bool connected() const noexcept;

    // Sends `commands` in one write (pipelined) and waits for every reply within command_timeout. A
    // missed deadline or a lost connection disconnects. At most one call at a time (the sync's loop).
    asio::awaitable<redis_result> pipeline(const std::vector<std::vector<std::string>>& commands);

    // Frees the connection now (pending calls complete as disconnected).
    void disconnect() noexcept;

private:
    struct io; // the Asio side of one hiredis context (descriptor, waits), shared with its handlers
    struct call_state;
    static void call_state_reply(redisAsyncContext* ac, void* reply, void* privdata);
    asio::awaitable<redisAsyncContext*> open_context(redis_result& failed);
    std::shared_ptr<io> attach(redisAsyncContext* ac);

    asio::any_io_executor ex_;
    const std::string address_, password_;
    const nanos connect_timeout_, command_timeout_;
    std::shared_ptr<io> io_; // null when disconnected
    thread_owner owner_;     // the thread of the sync's loop: claimed by the first connect
};

} // namespace breakerbox::cluster
