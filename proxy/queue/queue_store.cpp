#include "queue/queue_store.hpp"

#include "core/log.hpp"
#include "queue/queue_file.hpp"
#include "queue/sqlite_db.hpp"

#include <fcntl.h>
#include <openssl/rand.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace breakerbox::queue {
namespace {

// The columns an entry is read with, in this order (read_entry).
#define BREAKERBOX_ENTRY_COLUMNS                                                                                        \
    "seq, id, upstream, state, attempts, idempotency_key, enqueued_ms, updated_ms, method, target, fields, body_size, " \
    "response_status, response_headers, response_body, response_truncated, last_error, size"

std::string random_id()
{
    unsigned char bytes[16];
    if (RAND_bytes(bytes, sizeof bytes) != 1) { // the CSPRNG failed: fall back to /dev/urandom
        const int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        const bool ok = fd >= 0 && ::read(fd, bytes, sizeof bytes) == static_cast<ssize_t>(sizeof bytes);
        if (fd >= 0)
            ::close(fd);
        if (!ok)
            return {};
    }
    static constexpr char hex[] = "0123456789abcdef";
    std::string id(32, '0');
    for (std::size_t i = 0; i < sizeof bytes; ++i) {
        id[2 * i] = hex[bytes[i] >> 4];
        id[2 * i + 1] = hex[bytes[i] & 15];
    }
    return id;
}

// The key breakerbox sends for a request whose client gave none. Not stored: a minted key is random,
// and indexing it would cost every enqueue an insert at a random place in a second B-tree.
std::string minted_key(const std::string& id) { return "bbx-" + id; }

// The id in a key of the minted form ("bbx-" and 32 hex digits), or nullopt.
std::optional<std::string> minted_id(std::string_view key)
{
    if (key.size() != 36 || key.substr(0, 4) != "bbx-")
        return std::nullopt;
    const auto id = key.substr(4);
    if (!std::all_of(id.begin(), id.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }))
        return std::nullopt;
    return std::string(id);
}

// The entry an Idempotency-Key already names (`q`: a bound lookup returning id, fingerprint, state),
// answered as a duplicate (same payload) or a reused key (another payload); nullopt when there is none.
std::optional<enqueue_result> already_stored(sqlite_statement& q, const enqueue_request& req)
{
    std::optional<enqueue_result> r;
    if (q.step() == SQLITE_ROW)
        r = enqueue_result{q.text(1) == req.fingerprint ? enqueue_status::duplicate : enqueue_status::key_reused, q.text(0),
                           req.idempotency_key, parse_name<entry_state>(q.text(2)).value_or(entry_state::queued)};
    q.reset();
    return r;
}

std::int64_t system_wall_ms()
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string_view state_name(entry_state s) { return name_of(s); }

} // namespace

// The prepared statements, on the writer thread.
struct queue_store::statements {
    sqlite_statement begin, commit, rollback, savepoint, release, rollback_to;
    sqlite_statement find_key, find_minted, insert, find_id, select_queued, mark_in_flight, set_state_result, requeue_attempt;
    sqlite_statement expire_select, expire_one, delete_final, list_all, list_state, remove, purge, oldest_in_state;
};

queue_store::queue_store(std::unique_ptr<sqlite_db> db, std::function<std::int64_t()> wall_ms)
    : db_(std::move(db)), st_(std::make_unique<statements>()), wall_ms_(wall_ms ? std::move(wall_ms) : system_wall_ms)
{
}

std::unique_ptr<queue_store> queue_store::open(const config::queue_store_config& cfg, std::string& error,
                                               std::function<std::int64_t()> wall_ms)
{
    int lock_fd = -1;
    auto db = open_queue_file(cfg, lock_fd, error);
    if (!db)
        return nullptr;
    std::unique_ptr<queue_store> store(new queue_store(std::move(db), std::move(wall_ms)));
    store->lock_fd_ = lock_fd;
    if (!store->prepare_statements()) {
        error = cfg.path + ": " + store->db_->last_error();
        return nullptr;
    }
    // Crash recovery: what was in flight when the process died goes back to the queue. Its attempt was
    // counted when it was claimed, so the next delivery carries a higher attempt number (and one that
    // keeps killing the process is dead-lettered at max_attempts by the claim, not delivered forever).
    const std::string recover = "UPDATE queue_entries SET state='queued', updated_ms=" + std::to_string(store->wall_ms_()) +
                                ", last_error='in flight when breakerbox stopped' WHERE state='in_flight'";
    if (!store->db_->exec(recover.c_str())) {
        error = cfg.path + ": " + store->db_->last_error();
        return nullptr;
    }
    if (const auto recovered = store->db_->changes(); recovered > 0)
        log::warn("queued requests that were in flight at the last stop go back to the queue (delivered again)",
                  {{"entries", recovered}, {"database", cfg.path}});
    store->load_counters();
    store->writer_ = std::thread([s = store.get()] { s->writer_loop(); });
    return store;
}

queue_store::~queue_store()
{
    stop();
    if (lock_fd_ >= 0)
        ::close(lock_fd_);
}

void queue_store::stop()
{
    {
        std::lock_guard lock(mutex_);
        if (stopping_ && !writer_.joinable())
            return;
        stopping_ = true;
    }
    wake_.notify_all();
    if (writer_.joinable())
        writer_.join();
}

bool queue_store::prepare_statements()
{
    auto& s = *st_;
    auto& db = *db_;
    s.begin = db.prepare("BEGIN IMMEDIATE");
    s.commit = db.prepare("COMMIT");
    s.rollback = db.prepare("ROLLBACK");
    s.savepoint = db.prepare("SAVEPOINT op");
    s.release = db.prepare("RELEASE op");
    s.rollback_to = db.prepare("ROLLBACK TO op");
    s.find_key = db.prepare("SELECT id, fingerprint, state FROM queue_entries WHERE upstream=?1 AND idempotency_key=?2");
    s.insert = db.prepare(
        "INSERT INTO queue_entries(id, upstream, state, idempotency_key, key_from_client, fingerprint, method, target, fields, "
        "body, size, body_size, enqueued_ms, age_from_ms, updated_ms) "
        "VALUES(?1, ?2, 'queued', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?12)");
    s.find_minted = db.prepare("SELECT id, fingerprint, state FROM queue_entries WHERE id=?1 AND upstream=?2");
    s.find_id = db.prepare("SELECT " BREAKERBOX_ENTRY_COLUMNS ", body FROM queue_entries WHERE id=?1");
    s.select_queued = db.prepare("SELECT " BREAKERBOX_ENTRY_COLUMNS
                                 ", body FROM queue_entries WHERE upstream=?1 AND state='queued' ORDER BY seq LIMIT ?2");
    s.mark_in_flight = db.prepare("UPDATE queue_entries SET state='in_flight', attempts=attempts+1, updated_ms=?2 WHERE seq=?1");
    s.set_state_result =
        db.prepare("UPDATE queue_entries SET state=?2, updated_ms=?3, response_status=?4, response_headers=?5, response_body=?6, "
                   "response_truncated=?7, last_error=?8, body=CASE WHEN ?2='delivered' THEN NULL ELSE body END, "
                   "fields=CASE WHEN ?2='delivered' THEN '' ELSE fields END WHERE id=?1");
    s.requeue_attempt = db.prepare(
        "UPDATE queue_entries SET state='queued', attempts=MAX(attempts-?2, 0), updated_ms=?3, last_error=?4 WHERE id=?1");
    s.expire_select =
        db.prepare("SELECT seq, size FROM queue_entries WHERE upstream=?1 AND state='queued' AND age_from_ms<?2 ORDER BY seq");
    s.expire_one = db.prepare(
        "UPDATE queue_entries SET state='expired', updated_ms=?2, last_error='not delivered within max_age' WHERE seq=?1");
    // In batches: one pass of the maintenance never holds the writer (and every 202 behind it) for long.
    s.delete_final = db.prepare("DELETE FROM queue_entries WHERE seq IN (SELECT seq FROM queue_entries WHERE upstream=?1 AND "
                                "state=?2 AND updated_ms<?3 LIMIT 5000)");
    s.list_all = db.prepare("SELECT " BREAKERBOX_ENTRY_COLUMNS " FROM queue_entries WHERE upstream=?1 ORDER BY seq LIMIT ?2");
    s.list_state =
        db.prepare("SELECT " BREAKERBOX_ENTRY_COLUMNS " FROM queue_entries WHERE upstream=?1 AND state=?3 ORDER BY seq LIMIT ?2");
    s.remove = db.prepare("DELETE FROM queue_entries WHERE id=?1");
    s.purge = db.prepare("DELETE FROM queue_entries WHERE upstream=?1 AND state IN ('failed', 'expired')");
    s.oldest_in_state = db.prepare("SELECT enqueued_ms FROM queue_entries WHERE upstream=?1 AND state=?2 ORDER BY seq LIMIT 1");
    for (auto* stmt : {&s.begin,         &s.commit,         &s.rollback,         &s.savepoint,       &s.release,
                       &s.rollback_to,   &s.find_key,       &s.find_minted,      &s.insert,          &s.find_id,
                       &s.select_queued, &s.mark_in_flight, &s.set_state_result, &s.requeue_attempt, &s.expire_select,
                       &s.expire_one,    &s.delete_final,   &s.list_all,         &s.list_state,      &s.remove,
                       &s.purge,         &s.oldest_in_state})
        if (!*stmt)
            return false;
    return true;
}

namespace {

// Runs a statement that returns no rows; true when it completed.
bool run(sqlite_statement& s)
{
    const int rc = s.step();
    s.reset();
    return rc == SQLITE_DONE;
}

entry read_entry(const sqlite_statement& s, bool with_body)
{
    entry e;
    e.seq = s.int64(0);
    e.id = s.text(1);
    e.upstream = s.text(2);
    e.state = parse_name<entry_state>(s.text(3)).value_or(entry_state::queued);
    e.attempts = static_cast<std::uint32_t>(s.int64(4));
    e.idempotency_key = s.is_null(5) ? minted_key(e.id) : s.text(5);
    e.enqueued_ms = s.int64(6);
    e.updated_ms = s.int64(7);
    e.request.method = s.text(8);
    e.request.target = s.text(9);
    e.request.fields = s.text(10);
    e.body_size = static_cast<std::uint64_t>(s.int64(11));
    e.response_status = static_cast<int>(s.int64(12));
    e.response_headers = s.text(13);
    e.response_body = s.text(14);
    e.response_truncated = s.int64(15) != 0;
    e.last_error = s.text(16);
    e.size = s.int64(17);
    if (with_body)
        e.request.body = s.text(18);
    return e;
}

} // namespace

void queue_store::load_counters()
{
    std::lock_guard lock(mutex_);
    for (auto& [name, c] : counters_) {
        c->depth = 0;
        c->in_flight = 0;
        c->bytes = 0;
        c->dead_letters = 0;
        c->oldest_ms = 0;
    }
    auto s =
        db_->prepare("SELECT upstream, state, count(*), sum(size), min(enqueued_ms) FROM queue_entries GROUP BY upstream, state");
    while (s && s.step() == SQLITE_ROW) {
        auto& slot = counters_[s.text(0)];
        if (!slot)
            slot = std::make_unique<queue_counters>();
        auto& c = *slot;
        const auto state = parse_name<entry_state>(s.text(1));
        const auto n = s.int64(2);
        if (state == entry_state::queued || state == entry_state::in_flight) {
            c.depth += n;
            c.bytes += s.int64(3);
            const auto oldest = s.int64(4);
            if (c.oldest_ms == 0 || oldest < c.oldest_ms)
                c.oldest_ms = oldest;
            if (state == entry_state::in_flight)
                c.in_flight += n;
        } else if (state == entry_state::failed || state == entry_state::expired) {
            c.dead_letters += n;
        }
    }
}

queue_counters& queue_store::counters(const std::string& upstream) const
{
    std::lock_guard lock(mutex_);
    auto& slot = counters_[upstream];
    if (!slot)
        slot = std::make_unique<queue_counters>();
    return *slot;
}

std::vector<std::string> queue_store::upstreams() const
{
    std::lock_guard lock(mutex_);
    std::vector<std::string> names;
    for (const auto& [name, c] : counters_)
        names.push_back(name);
    return names;
}

bool queue_store::has_queue(const std::string& upstream) const
{
    std::lock_guard lock(mutex_);
    return counters_.contains(upstream);
}

void queue_store::set_policies(std::map<std::string, queue_policy> policies)
{
    for (const auto& [name, p] : policies)
        counters(name); // every queue is reported, even before its first request
    std::lock_guard lock(mutex_);
    policies_ = std::move(policies);
}

queue_store::commit_histogram queue_store::commit_latency() const
{
    std::lock_guard lock(histogram_mutex_);
    return histogram_;
}

void queue_store::push(std::unique_ptr<command> c)
{
    {
        std::lock_guard lock(mutex_);
        if (!writer_exited_) {
            pending_.push_back(std::move(c));
            c = nullptr;
        }
    }
    if (!c) {
        wake_.notify_one();
        return;
    }
    c->fail(); // stopped: nothing is stored any more, and the caller hears so at once
    c->complete();
}

void queue_store::writer_loop()
{
    writer_owner_.bind_to_this_thread();
    std::vector<std::unique_ptr<command>> group;
    auto last_maintenance = std::chrono::steady_clock::now();
    for (;;) {
        bool stopping = false;
        {
            std::unique_lock lock(mutex_);
            wake_.wait_for(lock, std::chrono::seconds(1), [this] { return !pending_.empty() || stopping_; });
            group.swap(pending_);
            stopping = stopping_;
        }
        if (!group.empty())
            commit_group(group);
        group.clear();
        if (stopping) {
            std::lock_guard lock(mutex_);
            if (pending_.empty()) {
                writer_exited_ = true;
                break;
            }
            continue;
        }
        const auto now = std::chrono::steady_clock::now();
        if (now - last_maintenance >= std::chrono::seconds(1)) {
            last_maintenance = now;
            maintain();
        }
    }
}

// One transaction for the whole group; each operation in its own savepoint. The results go out only
// after COMMIT returned: with synchronous=FULL, after the WAL was synced.
void queue_store::commit_group(std::vector<std::unique_ptr<command>>& group)
{
    auto& s = *st_;
    const auto started = std::chrono::steady_clock::now();
    bool ok = run(s.begin);
    if (!ok)
        log::error("queue transaction could not start", {{"error", db_->last_error()}});
    for (std::size_t i = 0; ok && i < group.size(); ++i)
        ok = run_in_savepoint(*group[i]);
    if (ok) {
        ok = run(s.commit);
        if (!ok)
            log::error("queue commit failed: the group's operations were not stored", {{"error", db_->last_error()}});
    }
    if (!ok) {
        if (db_->in_transaction())
            run(s.rollback);
        for (auto& c : group) // none of them happened, whatever each one returned
            c->fail();
        load_counters(); // the operations' counter changes did not happen either
    }
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    {
        std::lock_guard lock(histogram_mutex_);
        for (std::size_t b = 0; b < commit_buckets.size(); ++b)
            if (took <= commit_buckets[b])
                ++histogram_.cumulative[b];
        ++histogram_.count;
        histogram_.sum += took;
    }
    for (auto& c : group)
        c->complete();
}

// One operation inside the group's transaction: its writes undone alone when it fails. False when the
// group cannot go on — a savepoint statement failed, or SQLite rolled the whole transaction back (after
// SQLITE_FULL, IOERR, NOMEM): then nothing of the group may be reported as stored.
bool queue_store::run_in_savepoint(command& c)
{
    auto& s = *st_;
    if (!run(s.savepoint))
        return false;
    op_failed_ = false;
    try {
        c.run();
    } catch (const std::exception& e) { // bad_alloc loading a body, say: this operation fails, not the process
        log::error("queue operation failed", {{"error", e.what()}});
        op_failed_ = true;
        c.fail();
    }
    if (op_failed_)
        c.fail(); // its result is discarded: the caller gets queue_error::store_error
    if (!db_->in_transaction())
        return false;
    if (op_failed_ && !run(s.rollback_to))
        return false;
    return run(s.release);
}

void queue_store::refresh_oldest(const std::string& upstream)
{
    auto& c = counters(upstream);
    std::int64_t oldest = 0;
    for (auto state : {"queued", "in_flight"}) {
        auto& q = st_->oldest_in_state;
        q.bind(1, upstream).bind(2, std::string_view(state));
        if (q.step() == SQLITE_ROW) {
            const auto t = q.int64(0);
            if (oldest == 0 || t < oldest)
                oldest = t;
        }
        q.reset();
    }
    c.oldest_ms = oldest;
}

enqueue_result queue_store::do_enqueue(enqueue_request& req)
{
    writer_owner_.assert_owned("queue_store::do_enqueue");
    if (req.abandoned && req.abandoned->load(std::memory_order_acquire))
        return failed<enqueue_result>(); // the caller stopped waiting: not stored (and nobody reads the answer)
    auto& s = *st_;
    auto& c = counters(req.upstream);
    if (auto minted = minted_id(req.idempotency_key)) { // a key from one of our 202s: found by its id
        s.find_minted.bind(1, *minted).bind(2, req.upstream);
        if (auto r = already_stored(s.find_minted, req))
            return *r;
    } else if (!req.idempotency_key.empty()) {
        s.find_key.bind(1, req.upstream).bind(2, req.idempotency_key);
        if (auto r = already_stored(s.find_key, req))
            return *r;
    }
    const auto& rq = req.request;
    const std::int64_t size = static_cast<std::int64_t>(rq.method.size() + rq.target.size() + rq.fields.size() + rq.body.size());
    if (static_cast<std::uint64_t>(c.depth.load() + 1) > req.limits.max_entries ||
        static_cast<std::uint64_t>(c.bytes.load() + size) > req.limits.max_bytes)
        return {enqueue_status::full, {}, {}, entry_state::queued};
    std::string id = random_id();
    if (id.empty()) {
        return failed<enqueue_result>();
    }
    const auto now = wall_ms_();
    s.insert.bind(1, id).bind(2, req.upstream).bind(4, std::int64_t{req.key_from_client});
    if (req.idempotency_key.empty()) // minted from the id: delivery forwards it so the upstream can de-duplicate
        s.insert.bind_null(3);
    else
        s.insert.bind(3, req.idempotency_key);
    s.insert.bind(5, req.fingerprint).bind(6, rq.method).bind(7, rq.target).bind_blob(8, rq.fields).bind_blob(9, rq.body);
    s.insert.bind(10, size).bind(11, static_cast<std::int64_t>(rq.body.size())).bind(12, now);
    if (!run(s.insert)) {
        return failed<enqueue_result>();
    }
    c.depth += 1;
    c.bytes += size;
    if (c.oldest_ms.load() == 0)
        c.oldest_ms = now;
    c.enqueued.fetch_add(1, std::memory_order_relaxed);
    std::string key = req.idempotency_key.empty() ? minted_key(id) : req.idempotency_key;
    return {enqueue_status::stored, std::move(id), std::move(key), entry_state::queued};
}

std::optional<entry> queue_store::do_find(const std::string& id, bool with_body)
{
    writer_owner_.assert_owned("queue_store::do_find");
    auto& q = st_->find_id;
    q.bind(1, id);
    std::optional<entry> e;
    const int rc = q.step();
    if (rc == SQLITE_ROW)
        e = read_entry(q, with_body);
    q.reset();
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return failed<std::optional<entry>>(); // an error, not "unknown id"
    return e;
}

std::vector<entry> queue_store::do_claim(const std::string& upstream, unsigned n, std::uint32_t max_attempts)
{
    writer_owner_.assert_owned("queue_store::do_claim");
    auto& s = *st_;
    std::vector<entry> claimed;
    const auto now = wall_ms_();
    for (int round = 0; round < 4 && claimed.size() < n; ++round) { // a few rounds: poison entries are rare
        std::vector<entry> head;
        s.select_queued.bind(1, upstream).bind(2, static_cast<std::int64_t>(n - claimed.size()));
        while (s.select_queued.step() == SQLITE_ROW)
            head.push_back(read_entry(s.select_queued, true));
        s.select_queued.reset();
        if (head.empty())
            break;
        for (auto& e : head) {
            if (e.attempts >= max_attempts) {
                dead_letter_poison(e, max_attempts);
                continue;
            }
            s.mark_in_flight.bind(1, e.seq).bind(2, now);
            if (!run(s.mark_in_flight)) {
                return failed<std::vector<entry>>();
            }
            ++e.attempts;
            e.state = entry_state::in_flight;
            e.updated_ms = now;
            claimed.push_back(std::move(e));
        }
    }
    counters(upstream).in_flight += static_cast<std::int64_t>(claimed.size());
    return claimed;
}

// An entry that reached max_attempts without an outcome (in flight at that many stops).
void queue_store::dead_letter_poison(const entry& e, std::uint32_t max_attempts)
{
    auto& s = *st_;
    const std::string why = "max_attempts (" + std::to_string(max_attempts) + ") reached: in flight when breakerbox stopped, " +
                            std::to_string(e.attempts) + " times";
    s.set_state_result.bind(1, e.id).bind(2, state_name(entry_state::failed)).bind(3, wall_ms_());
    s.set_state_result.bind(4, std::int64_t{0}).bind(5, "{}").bind_blob(6, "").bind(7, std::int64_t{0}).bind(8, why);
    if (!run(s.set_state_result)) {
        op_failed_ = true;
        return;
    }
    log::error("queued request dead-lettered: it was in flight whenever breakerbox stopped",
               {{"upstream", e.upstream}, {"id", e.id}, {"attempts", e.attempts}});
    auto& c = counters(e.upstream);
    c.depth -= 1;
    c.bytes -= e.size;
    c.dead_letters += 1;
    c.dead_lettered.fetch_add(1, std::memory_order_relaxed);
    refresh_oldest(e.upstream);
}

finish_status queue_store::do_finish(const std::string& id, const delivery_outcome& o)
{
    writer_owner_.assert_owned("queue_store::do_finish");
    auto& s = *st_;
    auto found = do_find(id, false);
    if (!found || found->state != entry_state::in_flight)
        return finish_status::not_in_flight;
    auto& c = counters(found->upstream);
    const auto now = wall_ms_();
    if (o.result == delivery_result::not_sent || (o.result == delivery_result::retryable && found->attempts < o.max_attempts)) {
        // Back at its place in the queue; an attempt that was never sent is not counted.
        s.requeue_attempt.bind(1, id).bind(2, std::int64_t{o.result == delivery_result::not_sent ? 1 : 0}).bind(3, now);
        s.requeue_attempt.bind(4, o.error);
        if (!run(s.requeue_attempt)) {
            return failed<finish_status>();
        }
        c.in_flight -= 1;
        c.attempts[static_cast<std::size_t>(o.result)].fetch_add(1, std::memory_order_relaxed);
        return finish_status::recorded;
    }
    const bool delivered = o.result == delivery_result::delivered;
    std::string error = o.error;
    if (o.result == delivery_result::retryable)
        error = "max_attempts (" + std::to_string(o.max_attempts) + ") reached: " + o.error;
    s.set_state_result.bind(1, id).bind(2, state_name(delivered ? entry_state::delivered : entry_state::failed)).bind(3, now);
    s.set_state_result.bind(4, std::int64_t{o.status}).bind(5, o.response_headers.empty() ? "{}" : o.response_headers);
    s.set_state_result.bind_blob(6, o.response_body).bind(7, std::int64_t{o.response_truncated}).bind(8, error);
    if (!run(s.set_state_result)) {
        return failed<finish_status>();
    }
    c.depth -= 1;
    c.in_flight -= 1;
    c.bytes -= found->size;
    c.attempts[static_cast<std::size_t>(o.result)].fetch_add(1, std::memory_order_relaxed);
    if (delivered) {
        c.delivered.fetch_add(1, std::memory_order_relaxed);
    } else {
        c.dead_letters += 1;
        c.dead_lettered.fetch_add(1, std::memory_order_relaxed);
    }
    refresh_oldest(found->upstream);
    return finish_status::recorded;
}

std::vector<entry> queue_store::do_list(const std::string& upstream, std::optional<entry_state> state, unsigned limit)
{
    writer_owner_.assert_owned("queue_store::do_list");
    auto& q = state ? st_->list_state : st_->list_all;
    q.bind(1, upstream).bind(2, static_cast<std::int64_t>(limit));
    if (state)
        q.bind(3, state_name(*state));
    std::vector<entry> out;
    int rc = SQLITE_DONE;
    while ((rc = q.step()) == SQLITE_ROW)
        out.push_back(read_entry(q, false));
    q.reset();
    if (rc != SQLITE_DONE)
        return failed<std::vector<entry>>();
    return out;
}

admin_status queue_store::do_requeue(const std::string& upstream, const std::string& id)
{
    writer_owner_.assert_owned("queue_store::do_requeue");
    auto e = do_find(id, false);
    if (!e || e->upstream != upstream)
        return admin_status::not_found;
    if (e->state != entry_state::failed && e->state != entry_state::expired)
        return admin_status::conflict;
    // Its age (max_age) counts from now, and its old answer is gone: it is a new chance, not a replay.
    auto q = db_->prepare("UPDATE queue_entries SET state='queued', attempts=0, updated_ms=?2, age_from_ms=?2, "
                          "response_status=0, response_headers='{}', response_body=NULL, response_truncated=0, "
                          "last_error='requeued by an operator' WHERE id=?1 RETURNING size");
    if (!q) {
        return failed<admin_status>();
    }
    q.bind(1, id).bind(2, wall_ms_());
    std::int64_t size = 0;
    if (q.step() == SQLITE_ROW)
        size = q.int64(0);
    if (q.step() != SQLITE_DONE) {
        return failed<admin_status>();
    }
    auto& c = counters(upstream);
    c.depth += 1;
    c.bytes += size;
    c.dead_letters -= 1;
    refresh_oldest(upstream);
    return admin_status::done;
}

admin_status queue_store::do_remove(const std::string& upstream, const std::string& id)
{
    writer_owner_.assert_owned("queue_store::do_remove");
    auto e = do_find(id, false);
    if (!e || e->upstream != upstream)
        return admin_status::not_found;
    if (e->state == entry_state::in_flight)
        return admin_status::conflict;
    const auto size = e->size;
    st_->remove.bind(1, id);
    if (!run(st_->remove)) {
        return failed<admin_status>();
    }
    auto& c = counters(upstream);
    if (e->state == entry_state::queued) {
        c.depth -= 1;
        c.bytes -= size;
        refresh_oldest(upstream);
    } else if (e->state == entry_state::failed || e->state == entry_state::expired) {
        c.dead_letters -= 1;
    }
    return admin_status::done;
}

std::int64_t queue_store::do_purge(const std::string& upstream)
{
    writer_owner_.assert_owned("queue_store::do_purge");
    st_->purge.bind(1, upstream);
    if (!run(st_->purge))
        return failed<std::int64_t>();
    const auto n = db_->changes();
    counters(upstream).dead_letters -= n;
    return n;
}

// Expiry (queued longer than max_age) and retention (final records older than retention), per upstream
// with a policy, in one transaction of its own.
void queue_store::maintain()
{
    {
        std::lock_guard lock(mutex_);
        if (policies_.empty())
            return;
    }
    auto& s = *st_;
    if (!run(s.begin))
        return;
    do_maintain();
    if (!run(s.commit)) {
        run(s.rollback);
        load_counters();
    }
}

std::int64_t queue_store::do_maintain()
{
    writer_owner_.assert_owned("queue_store::do_maintain");
    std::map<std::string, queue_policy> policies;
    {
        std::lock_guard lock(mutex_);
        policies = policies_;
    }
    auto& s = *st_;
    const auto now = wall_ms_();
    std::int64_t expired_total = 0;
    for (const auto& [upstream, p] : policies) {
        auto& c = counters(upstream);
        std::vector<std::pair<std::int64_t, std::int64_t>> expired; // seq, size
        s.expire_select.bind(1, upstream).bind(2, now - p.max_age / millis(1));
        while (s.expire_select.step() == SQLITE_ROW)
            expired.emplace_back(s.expire_select.int64(0), s.expire_select.int64(1));
        s.expire_select.reset();
        for (const auto& [seq, size] : expired) {
            s.expire_one.bind(1, seq).bind(2, now);
            if (!run(s.expire_one))
                continue;
            c.depth -= 1;
            c.bytes -= size;
            c.dead_letters += 1;
            c.expired.fetch_add(1, std::memory_order_relaxed);
            ++expired_total;
        }
        if (!expired.empty())
            refresh_oldest(upstream);
        for (auto state : {entry_state::delivered, entry_state::failed, entry_state::expired}) {
            s.delete_final.bind(1, upstream).bind(2, state_name(state)).bind(3, now - p.retention / millis(1));
            if (run(s.delete_final) && state != entry_state::delivered)
                c.dead_letters -= db_->changes();
        }
    }
    return expired_total;
}

} // namespace breakerbox::queue
