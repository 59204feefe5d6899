// The durable store of the queue fallback (docs/queue.md): one SQLite database in WAL mode, owned by
// one writer thread that commits in groups — every operation that arrives while a commit is under way
// goes into the next one, so durability costs one fsync per group, not per request.
//
// Callers on any io_context submit an operation and co_await its result; the result is posted back to
// the caller's executor after the group's COMMIT returned (a 202 is never sent before its commit). Each
// operation runs inside a SAVEPOINT, so one failing operation does not spoil its group.
//
// Ownership: the database connection and the prepared statements belong to the writer thread; the
// per-upstream gauges and counters (queue_counters) are atomics written there and read anywhere.
#pragma once
#include "config/config.hpp"
#include "core/asio.hpp"
#include "core/enum_names.hpp"
#include "core/thread_owner.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace breakerbox::queue {

class sqlite_db;

// An entry's life: queued → in_flight → delivered | failed (dead letter) | back to queued; queued →
// expired after max_age. The names are the status resource's and the admin API's.
enum class entry_state : std::uint8_t { queued, in_flight, delivered, failed, expired };
inline constexpr enum_name<entry_state> entry_state_names[]{{entry_state::queued, "queued"},
                                                            {entry_state::in_flight, "in_flight"},
                                                            {entry_state::delivered, "delivered"},
                                                            {entry_state::failed, "failed"},
                                                            {entry_state::expired, "expired"}};
constexpr std::span<const enum_name<entry_state>> names_of(entry_state) noexcept { return entry_state_names; }

// Why a request was not queued (label `reason` of breakerbox_queue_rejected_total).
// timeout: the store did not answer within queue_store.commit_timeout (the next fallback answered).
enum class rejection : std::uint8_t { full, body_too_large, store_error, timeout };
inline constexpr enum_name<rejection> rejection_names[]{{rejection::full, "full"},
                                                        {rejection::body_too_large, "body_too_large"},
                                                        {rejection::store_error, "store_error"},
                                                        {rejection::timeout, "timeout"}};
constexpr std::span<const enum_name<rejection>> names_of(rejection) noexcept { return rejection_names; }

// What a delivery attempt came to (label `result` of breakerbox_queue_delivery_attempts_total).
enum class delivery_result : std::uint8_t { delivered, retryable, terminal, not_sent };
inline constexpr enum_name<delivery_result> delivery_result_names[]{{delivery_result::delivered, "delivered"},
                                                                    {delivery_result::retryable, "retryable"},
                                                                    {delivery_result::terminal, "terminal"},
                                                                    {delivery_result::not_sent, "not_sent"}};
constexpr std::span<const enum_name<delivery_result>> names_of(delivery_result) noexcept { return delivery_result_names; }

// One upstream's queue, as /health/circuits and /metrics report it. Written by the writer thread only.
struct queue_counters {
    std::atomic<std::int64_t> depth{0};     // queued + in flight
    std::atomic<std::int64_t> in_flight{0}; // being delivered
    std::atomic<std::int64_t> bytes{0};     // stored request sizes of queued + in flight
    std::atomic<std::int64_t> dead_letters{0};
    std::atomic<std::int64_t> oldest_ms{0}; // enqueue time (Unix ms) of the oldest queued or in-flight entry; 0: none
    std::atomic<std::uint64_t> enqueued{0}, delivered{0}, dead_lettered{0}, expired{0};
    std::array<std::atomic<std::uint64_t>, std::size(rejection_names)> rejected{};
    std::array<std::atomic<std::uint64_t>, std::size(delivery_result_names)> attempts{};

    void count(rejection r) noexcept { rejected[static_cast<std::size_t>(r)].fetch_add(1, std::memory_order_relaxed); }
};

// A request as stored: as it would be sent upstream (already rewritten), with its head fields as
// "Name: value\r\n" lines, without Content-Length or Transfer-Encoding (delivery frames the body anew).
struct stored_request {
    std::string method;
    std::string target;
    std::string fields;
    std::string body;
};

struct queue_limits {
    std::uint64_t max_entries = 0;
    std::uint64_t max_bytes = 0;
};

struct enqueue_request {
    std::string upstream;
    std::string idempotency_key; // the client's, or minted by the caller
    bool key_from_client = false;
    std::string fingerprint; // of method, target and body: the same key with another payload is refused
    stored_request request;
    queue_limits limits;
    // Set by the caller when it stopped waiting (commit_timeout): an enqueue the writer has not started
    // yet is dropped then, so that a request answered by another fallback is not stored after all.
    std::shared_ptr<std::atomic<bool>> abandoned;
};

enum class enqueue_status : std::uint8_t { stored, duplicate, key_reused, full };

struct enqueue_result {
    enqueue_status status = enqueue_status::stored;
    std::string id;              // 32 hex digits (stored, duplicate)
    std::string idempotency_key; // as stored
    entry_state state = entry_state::queued;
};

// One entry, as the status resource and the admin API show it.
struct entry {
    std::int64_t seq = 0; // commit order (FIFO)
    std::string id;
    std::string upstream;
    entry_state state = entry_state::queued;
    std::uint32_t attempts = 0;
    std::string idempotency_key;
    std::int64_t enqueued_ms = 0, updated_ms = 0; // Unix milliseconds
    stored_request request;                       // body only when loaded for delivery or inspection
    std::uint64_t body_size = 0;
    std::int64_t size = 0;        // what it counts against max_bytes
    int response_status = 0;      // 0: none yet
    std::string response_headers; // JSON object text
    std::string response_body;    // at most response_body_limit bytes
    bool response_truncated = false;
    std::string last_error;
};

// How a delivery ended, for finish().
struct delivery_outcome {
    delivery_result result = delivery_result::not_sent;
    int status = 0;               // the upstream's status, when it answered
    std::string response_headers; // JSON object text
    std::string response_body;    // already cut to the limit
    bool response_truncated = false;
    std::string error; // why, when not delivered
    std::uint32_t max_attempts = 0;
};

// Per-upstream settings the writer thread applies by itself (expiry, retention): set by the main thread.
struct queue_policy {
    nanos max_age = 0;
    nanos retention = 0;
};

enum class admin_status : std::uint8_t { done, not_found, conflict };

// What finish() did: recorded the outcome, or found the entry no longer in flight (nothing changed).
// Not recorded at all (the commit failed, the store stopped) is queue_error::store_error: the caller
// tries again.
enum class finish_status : std::uint8_t { recorded, not_in_flight };

// What every operation of the store answers, one shape for all: its value, or why there is none —
// the store could not do it (a failed statement or commit: nothing of it happened), or the caller
// stopped waiting (queue_wait.hpp's `within`, past queue_store.commit_timeout).
enum class queue_error : std::uint8_t { none, store_error, timeout };

template <class T>
struct queue_result {
    queue_error error = queue_error::store_error;
    T value{}; // meaningful only when ok()
    bool ok() const noexcept { return error == queue_error::none; }
};

class queue_store {
public:
    // Opens (creating) the database of `cfg`: the folder 0700 when created, the file 0600, WAL mode,
    // the schema, and crash recovery — entries left in flight go back to queued, their attempt counted.
    // nullptr with `error` (file, SQLite's message) when it cannot. `wall_ms`: Unix milliseconds (tests
    // inject their own).
    static std::unique_ptr<queue_store> open(const config::queue_store_config& cfg, std::string& error,
                                             std::function<std::int64_t()> wall_ms = {});
    ~queue_store(); // stops the writer after finishing what was submitted
    queue_store(const queue_store&) = delete;
    queue_store& operator=(const queue_store&) = delete;

    // Commits everything submitted so far, completes it, and ends the writer thread. Idempotent.
    void stop();

    // Set from the main thread at start-up and on every reload: the upstreams with a queue and their
    // expiry and retention.
    void set_policies(std::map<std::string, queue_policy> policies);

    // The counters of `upstream`'s queue (created on first use; stable for the store's life). The
    // counters are atomics: readable anywhere; the writer thread and the request path update them.
    queue_counters& counters(const std::string& upstream) const;
    std::vector<std::string> upstreams() const; // every upstream with counters, sorted
    // Whether `upstream` has a queue: configured (set_policies) or with entries in the file.
    bool has_queue(const std::string& upstream) const;

    // Commit latency, seconds: cumulative bucket counts for commit_buckets, the count and the sum.
    static constexpr std::array<double, 10> commit_buckets{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0};
    struct commit_histogram {
        std::array<std::uint64_t, commit_buckets.size()> cumulative{};
        std::uint64_t count = 0;
        double sum = 0;
    };
    commit_histogram commit_latency() const;

    // Operations. Each completes on the caller's executor after its group committed; a failed commit
    // completes it as a store error. Usable with any completion token whose signature is void(R).
    template <class Token>
    auto async_enqueue(enqueue_request req, Token&& token)
    {
        return submit<enqueue_result>([this, req = std::move(req)]() mutable { return do_enqueue(req); },
                                      std::forward<Token>(token));
    }
    template <class Token>
    auto async_find(std::string id, Token&& token)
    {
        return submit<std::optional<entry>>([this, id = std::move(id)] { return do_find(id, false); },
                                            std::forward<Token>(token));
    }
    // Up to `n` of `upstream`'s oldest queued entries, with their bodies, marked in flight with their
    // attempt counted (in the same commit, so a crash after it counts the attempt). An entry whose
    // attempts already reached `max_attempts` (it was in flight at that many stops: a request that
    // kills the process, say) is dead-lettered instead of claimed.
    template <class Token>
    auto async_claim(std::string upstream, unsigned n, std::uint32_t max_attempts, Token&& token)
    {
        return submit<std::vector<entry>>(
            [this, u = std::move(upstream), n, max_attempts] { return do_claim(u, n, max_attempts); },
            std::forward<Token>(token));
    }
    template <class Token>
    auto async_finish(std::string id, delivery_outcome outcome, Token&& token)
    {
        return submit<finish_status>([this, id = std::move(id), o = std::move(outcome)] { return do_finish(id, o); },
                                     std::forward<Token>(token));
    }
    // Admin: entries of one upstream (oldest first, without bodies), optionally in one state.
    template <class Token>
    auto async_list(std::string upstream, std::optional<entry_state> state, unsigned limit, Token&& token)
    {
        return submit<std::vector<entry>>([this, u = std::move(upstream), state, limit] { return do_list(u, state, limit); },
                                          std::forward<Token>(token));
    }
    template <class Token>
    auto async_inspect(std::string upstream, std::string id, Token&& token)
    {
        return submit<std::optional<entry>>(
            [this, u = std::move(upstream), id = std::move(id)] {
                auto e = do_find(id, false);
                return e && e->upstream == u ? e : std::nullopt;
            },
            std::forward<Token>(token));
    }
    template <class Token>
    auto async_requeue(std::string upstream, std::string id, Token&& token)
    {
        return submit<admin_status>([this, u = std::move(upstream), id = std::move(id)] { return do_requeue(u, id); },
                                    std::forward<Token>(token));
    }
    template <class Token>
    auto async_remove(std::string upstream, std::string id, Token&& token)
    {
        return submit<admin_status>([this, u = std::move(upstream), id = std::move(id)] { return do_remove(u, id); },
                                    std::forward<Token>(token));
    }
    // Removes `upstream`'s dead letters (failed and expired); the count removed.
    template <class Token>
    auto async_purge(std::string upstream, Token&& token)
    {
        return submit<std::int64_t>([this, u = std::move(upstream)] { return do_purge(u); }, std::forward<Token>(token));
    }

    // Expiry and retention now (the writer also runs them about once a second); the count expired.
    template <class Token>
    auto async_maintain(Token&& token)
    {
        return submit<std::int64_t>([this] { return do_maintain(); }, std::forward<Token>(token));
    }

private:
    struct command {
        virtual ~command() = default;
        virtual void run() = 0;      // on the writer thread, inside the group's transaction
        virtual void complete() = 0; // after the commit: posts the result to the caller
        virtual void fail() = 0;     // the commit failed: the result becomes a store error
    };
    template <class R, class Handler>
    struct typed_command;

    queue_store(std::unique_ptr<sqlite_db> db, std::function<std::int64_t()> wall_ms);

    template <class R, class Op, class Token>
    auto submit(Op op, Token&& token);
    void push(std::unique_ptr<command> c);
    void writer_loop();
    void commit_group(std::vector<std::unique_ptr<command>>& group);
    bool run_in_savepoint(command& c);
    void maintain(); // expiry and retention in a transaction of their own, about once a second
    std::int64_t do_maintain();
    bool prepare_statements();
    void load_counters();
    void refresh_oldest(const std::string& upstream);

    enqueue_result do_enqueue(enqueue_request& req);
    std::optional<entry> do_find(const std::string& id, bool with_body);
    std::vector<entry> do_claim(const std::string& upstream, unsigned n, std::uint32_t max_attempts);
    finish_status do_finish(const std::string& id, const delivery_outcome& o);
    void dead_letter_poison(const entry& e, std::uint32_t max_attempts);
    std::vector<entry> do_list(const std::string& upstream, std::optional<entry_state> state, unsigned limit);
    admin_status do_requeue(const std::string& upstream, const std::string& id);
    admin_status do_remove(const std::string& upstream, const std::string& id);
    std::int64_t do_purge(const std::string& upstream);
    // An operation that failed: its writes are rolled back with its savepoint and its caller gets
    // queue_error::store_error (the value returned here is never read).
    template <class R>
    R failed()
    {
        op_failed_ = true;
        return R{};
    }

    std::unique_ptr<sqlite_db> db_;
    int lock_fd_ = -1;       // the flock that makes this process the queue's only owner
    bool op_failed_ = false; // set by an operation whose writes must be rolled back to its savepoint
    struct statements;
    std::unique_ptr<statements> st_;
    std::function<std::int64_t()> wall_ms_;

    mutable std::mutex mutex_; // pending_, stopping_, policies_, counters_ (the map, not the counters)
    std::condition_variable wake_;
    std::vector<std::unique_ptr<command>> pending_;
    bool stopping_ = false;
    bool writer_exited_ = false; // later submissions complete at once, as store errors
    std::map<std::string, queue_policy> policies_;
    mutable std::map<std::string, std::unique_ptr<queue_counters>> counters_;

    mutable std::mutex histogram_mutex_; // taken once per commit and per scrape
    commit_histogram histogram_;
    std::thread writer_;
    thread_owner writer_owner_; // the writer thread: every do_* (the database) runs there only
};

// --- implementation of the template parts ---

template <class R, class Handler>
struct queue_store::typed_command final : command {
    typed_command(std::function<R()> op, Handler h)
        : op_(std::move(op)), handler_(std::move(h)), work_(asio::make_work_guard(asio::get_associated_executor(handler_)))
    {
    }
    void run() override { result_ = op_(); }
    void fail() override { result_.reset(); } // nothing of it happened: the caller gets store_error
    void complete() override
    {
        auto ex = asio::get_associated_executor(handler_);
        queue_result<R> r;
        if (result_) {
            r.error = queue_error::none;
            r.value = std::move(*result_);
        }
        asio::post(ex, [h = std::move(handler_), r = std::move(r)]() mutable { std::move(h)(std::move(r)); });
        work_.reset();
    }

    std::function<R()> op_;
    Handler handler_;
    asio::executor_work_guard<asio::associated_executor_t<Handler>> work_;
    std::optional<R> result_;
};

template <class R, class Op, class Token>
auto queue_store::submit(Op op, Token&& token)
{
    return asio::async_initiate<Token, void(queue_result<R>)>(
        [this](auto handler, Op op) {
            using handler_type = decltype(handler);
            push(std::make_unique<typed_command<R, handler_type>>(std::function<R()>(std::move(op)), std::move(handler)));
        },
        token, std::move(op));
}

} // namespace breakerbox::queue
