// The queue's durable store against a real SQLite file in a temporary folder: group commit, idempotency,
// limits, FIFO claims, every delivery outcome, crash recovery, expiry and retention (with an injected
// wall clock), the admin operations, the counters, and the files' permissions.
#include "queue/queue_store.hpp"
#include "queue/sqlite_db.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>

namespace breakerbox::queue {
namespace {

namespace fs = std::filesystem;

class queue_store_test : public ::testing::Test {
protected:
    void SetUp() override
    {
        dir_ = fs::temp_directory_path() / ("bbx-queue-" + std::to_string(::getpid()) + "-" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        cfg_.enabled = true;
        cfg_.path = (dir_ / "sub" / "queue.db").string();
        open();
    }
    void TearDown() override
    {
        store_.reset();
        fs::remove_all(dir_);
    }

    void open(config::queue_sync sync = config::queue_sync::normal)
    {
        cfg_.synchronous = sync;
        std::string error;
        store_ = queue_store::open(cfg_, error, [this] { return now_ms_.load(); });
        ASSERT_TRUE(store_) << error;
        store_->set_policies({{"orders", {seconds(60), seconds(600)}}});
    }

    // Runs one operation of the store to completion: its one result shape. Its handler has the system
    // executor: the result arrives on another thread, after the writer thread's commit.
    template <class R, class Start>
    queue_result<R> result(Start start)
    {
        std::atomic<bool> done{false};
        queue_result<R> out{queue_error::timeout, {}};
        start([&](queue_result<R> r) {
            out = std::move(r);
            done = true;
        });
        for (int i = 0; i < 5000 && !done; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(1)); // waits for the writer thread, not for time
        EXPECT_TRUE(done.load());
        return out;
    }
    // The same for an operation that must succeed: its value.
    template <class R, class Start>
    R await(Start start)
    {
        auto r = result<R>(std::move(start));
        EXPECT_TRUE(r.ok());
        return std::move(r.value);
    }

    enqueue_result enqueue(std::string body, std::string key = {}, queue_limits limits = {100, 1 << 20})
    {
        enqueue_request req{"orders", key, !key.empty(), "fp-" + body, {"POST", "/orders", "X-A: 1\r\n", body}, limits};
        return await<enqueue_result>([&](auto h) { store_->async_enqueue(req, h); });
    }
    std::vector<entry> claim(unsigned n)
    {
        return await<std::vector<entry>>([&](auto h) { store_->async_claim("orders", n, max_attempts_, h); });
    }
    finish_status finish(const std::string& id, delivery_result r, int status = 0, std::uint32_t max_attempts = 3)
    {
        delivery_outcome o;
        o.result = r;
        o.status = status;
        o.response_body = status ? "answer" : "";
        o.error = r == delivery_result::delivered ? "" : "why";
        o.max_attempts = max_attempts;
        return await<finish_status>([&](auto h) { store_->async_finish(id, o, h); });
    }
    std::optional<entry> find(const std::string& id)
    {
        return await<std::optional<entry>>([&](auto h) { store_->async_find(id, h); });
    }
    queue_counters& counters() { return store_->counters("orders"); }

    fs::path dir_;
    config::queue_store_config cfg_;
    std::atomic<std::int64_t> now_ms_{1'800'000'000'000};
    std::uint32_t max_attempts_ = 10;
    std::unique_ptr<queue_store> store_;
};

TEST_F(queue_store_test, an_enqueued_request_is_found_as_queued)
{
    const auto r = enqueue("a");
    ASSERT_EQ(r.status, enqueue_status::stored);
    EXPECT_EQ(r.id.size(), 32u);
    EXPECT_EQ(r.idempotency_key, "bbx-" + r.id); // minted
    const auto e = find(r.id);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->state, entry_state::queued);
    EXPECT_EQ(e->attempts, 0u);
    EXPECT_EQ(e->enqueued_ms, now_ms_.load());
    EXPECT_EQ(e->request.target, "/orders");
    EXPECT_EQ(counters().depth.load(), 1);
    EXPECT_EQ(counters().enqueued.load(), 1u);
    EXPECT_EQ(counters().oldest_ms.load(), now_ms_.load());
    EXPECT_FALSE(find("ffffffffffffffffffffffffffffffff"));
}

TEST_F(queue_store_test, concurrent_enqueues_share_commits)
{
    constexpr int n = 1000;
    std::atomic<int> stored{0};
    std::atomic<int> done{0};
    for (int i = 0; i < n; ++i) {
        enqueue_request req{"orders", {}, false, "fp", {"POST", "/o", "", std::to_string(i)}, {100000, 1 << 30}};
        store_->async_enqueue(req, [&](queue_result<enqueue_result> r) {
            stored += r.ok() && r.value.status == enqueue_status::stored;
            ++done;
        });
    }
    for (int i = 0; i < 20000 && done < n; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ASSERT_EQ(done.load(), n);
    EXPECT_EQ(stored.load(), n);
    const auto groups = store_->commit_latency().count;
    EXPECT_LT(groups, static_cast<std::uint64_t>(n / 10)) << "one commit per request: group commit is not working";
    EXPECT_EQ(counters().depth.load(), n);
}

TEST_F(queue_store_test, the_same_key_gives_the_same_id_and_another_payload_is_refused)
{
    const auto first = enqueue("a", "k1");
    ASSERT_EQ(first.status, enqueue_status::stored);
    EXPECT_EQ(first.idempotency_key, "k1");
    const auto again = enqueue("a", "k1");
    EXPECT_EQ(again.status, enqueue_status::duplicate);
    EXPECT_EQ(again.id, first.id);
    EXPECT_EQ(enqueue("b", "k1").status, enqueue_status::key_reused);
    EXPECT_EQ(counters().depth.load(), 1);
    EXPECT_EQ(enqueue("b", "k2").status, enqueue_status::stored);
}

TEST_F(queue_store_test, limits_refuse_what_does_not_fit)
{
    EXPECT_EQ(enqueue("a", {}, {2, 1 << 20}).status, enqueue_status::stored);
    EXPECT_EQ(enqueue("b", {}, {2, 1 << 20}).status, enqueue_status::stored);
    EXPECT_EQ(enqueue("c", {}, {2, 1 << 20}).status, enqueue_status::full);
    EXPECT_EQ(enqueue(std::string(2000, 'x'), {}, {100, 1024}).status, enqueue_status::full);
    EXPECT_EQ(counters().depth.load(), 2);
}

TEST_F(queue_store_test, claims_are_oldest_first_and_count_the_attempt)
{
    const auto a = enqueue("a"), b = enqueue("b"), c = enqueue("c");
    auto first = claim(2);
    ASSERT_EQ(first.size(), 2u);
    EXPECT_EQ(first[0].id, a.id);
    EXPECT_EQ(first[1].id, b.id);
    EXPECT_EQ(first[0].attempts, 1u);
    EXPECT_EQ(first[0].request.body, "a");
    EXPECT_EQ(find(a.id)->state, entry_state::in_flight);
    EXPECT_EQ(counters().in_flight.load(), 2);
    auto next = claim(5);
    ASSERT_EQ(next.size(), 1u);
    EXPECT_EQ(next[0].id, c.id);
    EXPECT_TRUE(claim(5).empty());
}

TEST_F(queue_store_test, every_delivery_outcome_moves_the_entry_as_documented)
{
    const auto a = enqueue("a"), b = enqueue("b"), c = enqueue("c"), d = enqueue("d");
    claim(4);
    ASSERT_EQ(finish(a.id, delivery_result::delivered, 201), finish_status::recorded);
    ASSERT_EQ(finish(b.id, delivery_result::terminal, 400), finish_status::recorded);
    ASSERT_EQ(finish(c.id, delivery_result::retryable, 503), finish_status::recorded);
    ASSERT_EQ(finish(d.id, delivery_result::not_sent), finish_status::recorded);
    const auto ea = find(a.id), eb = find(b.id), ec = find(c.id), ed = find(d.id);
    EXPECT_EQ(ea->state, entry_state::delivered);
    EXPECT_EQ(ea->response_status, 201);
    EXPECT_EQ(ea->response_body, "answer");
    EXPECT_EQ(eb->state, entry_state::failed);
    EXPECT_EQ(ec->state, entry_state::queued); // retryable: back at its place, the attempt counted
    EXPECT_EQ(ec->attempts, 1u);
    EXPECT_EQ(ed->state, entry_state::queued); // never sent: not counted
    EXPECT_EQ(ed->attempts, 0u);
    EXPECT_EQ(counters().depth.load(), 2);
    EXPECT_EQ(counters().in_flight.load(), 0);
    EXPECT_EQ(counters().dead_letters.load(), 1);
    EXPECT_EQ(counters().delivered.load(), 1u);
    EXPECT_EQ(counters().dead_lettered.load(), 1u);
    EXPECT_EQ(finish(a.id, delivery_result::delivered, 200), finish_status::not_in_flight)
        << "only an entry in flight can be finished";
    // The head is still c (FIFO keeps its place after a retryable failure).
    EXPECT_EQ(claim(1).at(0).id, c.id);
}

TEST_F(queue_store_test, a_retryable_failure_at_the_attempt_limit_dead_letters)
{
    const auto a = enqueue("a");
    for (int i = 0; i < 2; ++i) {
        claim(1);
        ASSERT_EQ(finish(a.id, delivery_result::retryable, 503, 3), finish_status::recorded);
        EXPECT_EQ(find(a.id)->state, entry_state::queued);
    }
    claim(1);
    ASSERT_EQ(finish(a.id, delivery_result::retryable, 503, 3), finish_status::recorded);
    const auto e = find(a.id);
    EXPECT_EQ(e->state, entry_state::failed);
    EXPECT_EQ(e->attempts, 3u);
    EXPECT_NE(e->last_error.find("max_attempts"), std::string::npos);
}

TEST_F(queue_store_test, entries_in_flight_at_a_crash_are_queued_again_with_the_attempt_counted)
{
    const auto a = enqueue("a");
    claim(1); // in flight; the process "dies" here
    store_.reset();
    open();
    const auto e = find(a.id);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->state, entry_state::queued);
    EXPECT_EQ(e->attempts, 1u);
    EXPECT_EQ(counters().depth.load(), 1);
    EXPECT_EQ(counters().in_flight.load(), 0);
    EXPECT_EQ(claim(1).at(0).attempts, 2u);
}

TEST_F(queue_store_test, an_entry_in_flight_at_every_stop_is_dead_lettered_at_max_attempts)
{
    max_attempts_ = 2;
    const auto poison = enqueue("kills the process");
    const auto next = enqueue("next");
    for (int stop = 0; stop < 2; ++stop) {
        ASSERT_EQ(claim(1).at(0).id, poison.id);
        store_.reset(); // the process dies while delivering it
        open();
    }
    const auto claimed = claim(1); // attempts 2 = max: dead-lettered, and the next one is claimed instead
    ASSERT_EQ(claimed.size(), 1u);
    EXPECT_EQ(claimed[0].id, next.id);
    const auto e = find(poison.id);
    EXPECT_EQ(e->state, entry_state::failed);
    EXPECT_NE(e->last_error.find("in flight when breakerbox stopped"), std::string::npos) << e->last_error;
    EXPECT_EQ(counters().dead_letters.load(), 1);
    EXPECT_EQ(counters().depth.load(), 1);
}

TEST_F(queue_store_test, a_minted_key_sent_back_finds_its_entry)
{
    const auto first = enqueue("a");
    const auto again = enqueue("a", first.idempotency_key); // the client retries with the key from the 202
    EXPECT_EQ(again.status, enqueue_status::duplicate);
    EXPECT_EQ(again.id, first.id);
    EXPECT_EQ(enqueue("b", first.idempotency_key).status, enqueue_status::key_reused);
    EXPECT_EQ(counters().depth.load(), 1);
}

TEST_F(queue_store_test, one_process_owns_a_queue)
{
    std::string error;
    EXPECT_FALSE(queue_store::open(cfg_, error));
    EXPECT_NE(error.find("another process holds"), std::string::npos) << error;
    store_.reset();
    EXPECT_TRUE(queue_store::open(cfg_, error)) << error; // released with its owner
}

TEST_F(queue_store_test, a_file_of_another_schema_version_is_refused)
{
    store_.reset();
    {
        std::string error;
        auto db = sqlite_db::open(cfg_.path, error);
        ASSERT_TRUE(db) << error;
        ASSERT_TRUE(db->exec("PRAGMA user_version=7"));
    }
    std::string error;
    EXPECT_FALSE(queue_store::open(cfg_, error));
    EXPECT_NE(error.find("schema version is 7"), std::string::npos) << error;
}

TEST_F(queue_store_test, counters_are_rebuilt_from_the_file_on_open)
{
    enqueue("a");
    const auto b = enqueue("b");
    claim(2);
    finish(b.id, delivery_result::terminal, 404);
    store_.reset();
    open(config::queue_sync::full);
    EXPECT_EQ(counters().depth.load(), 1);
    EXPECT_EQ(counters().dead_letters.load(), 1);
    EXPECT_GT(counters().bytes.load(), 0);
}

TEST_F(queue_store_test, expiry_and_retention_follow_the_injected_wall_clock)
{
    const auto a = enqueue("a");
    const auto b = enqueue("b");
    claim(1);
    finish(a.id, delivery_result::delivered, 200);
    EXPECT_EQ(await<std::int64_t>([&](auto h) { store_->async_maintain(h); }), 0);
    now_ms_ += 61'000; // b is older than max_age (60 s)
    EXPECT_EQ(await<std::int64_t>([&](auto h) { store_->async_maintain(h); }), 1);
    EXPECT_EQ(find(b.id)->state, entry_state::expired);
    EXPECT_EQ(counters().expired.load(), 1u);
    EXPECT_EQ(counters().depth.load(), 0);
    EXPECT_EQ(counters().oldest_ms.load(), 0);
    EXPECT_TRUE(find(a.id)); // delivered, kept for retention (600 s)
    now_ms_ += 601'000;      // past the retention of both (b's counts from its expiry)
    await<std::int64_t>([&](auto h) { store_->async_maintain(h); });
    EXPECT_FALSE(find(a.id));
    EXPECT_FALSE(find(b.id));
    EXPECT_EQ(counters().dead_letters.load(), 0);
}

TEST_F(queue_store_test, a_requeued_expired_entry_gets_a_new_max_age)
{
    const auto a = enqueue("a");
    now_ms_ += 61'000;
    EXPECT_EQ(await<std::int64_t>([&](auto h) { store_->async_maintain(h); }), 1);
    EXPECT_EQ(await<admin_status>([&](auto h) { store_->async_requeue("orders", a.id, h); }), admin_status::done);
    now_ms_ += 30'000; // older than max_age since its enqueue, not since its requeue
    EXPECT_EQ(await<std::int64_t>([&](auto h) { store_->async_maintain(h); }), 0);
    EXPECT_EQ(find(a.id)->state, entry_state::queued);
}

TEST_F(queue_store_test, operators_requeue_remove_and_purge)
{
    const auto a = enqueue("a"), b = enqueue("b"), c = enqueue("c");
    claim(2);
    finish(a.id, delivery_result::terminal, 400);
    auto requeue = [&](const std::string& id) {
        return await<admin_status>([&](auto h) { store_->async_requeue("orders", id, h); });
    };
    auto remove = [&](const std::string& id) {
        return await<admin_status>([&](auto h) { store_->async_remove("orders", id, h); });
    };
    EXPECT_EQ(requeue(c.id), admin_status::conflict); // queued already
    EXPECT_EQ(remove(b.id), admin_status::conflict);  // in flight
    EXPECT_EQ(requeue("ffffffffffffffffffffffffffffffff"), admin_status::not_found);
    EXPECT_EQ(await<admin_status>([&](auto h) { store_->async_requeue("other", a.id, h); }), admin_status::not_found);
    EXPECT_EQ(requeue(a.id), admin_status::done);
    EXPECT_EQ(find(a.id)->state, entry_state::queued);
    EXPECT_EQ(find(a.id)->attempts, 0u);
    EXPECT_EQ(find(a.id)->response_status, 0) << "a requeued entry's old answer is gone";
    EXPECT_EQ(counters().dead_letters.load(), 0);
    EXPECT_EQ(remove(c.id), admin_status::done);
    EXPECT_FALSE(find(c.id));
    EXPECT_EQ(counters().depth.load(), 2); // a queued again, b in flight
    finish(b.id, delivery_result::terminal, 400);
    const auto listed = await<std::vector<entry>>([&](auto h) { store_->async_list("orders", entry_state::failed, 10, h); });
    ASSERT_EQ(listed.size(), 1u);
    EXPECT_EQ(listed[0].id, b.id);
    EXPECT_EQ(await<std::int64_t>([&](auto h) { store_->async_purge("orders", h); }), 1);
    EXPECT_FALSE(find(b.id));
    EXPECT_EQ(counters().dead_letters.load(), 0);
}

TEST_F(queue_store_test, after_stop_every_operation_fails_at_once)
{
    store_->stop();
    enqueue_request req{"orders", {}, false, "fp", {"POST", "/orders", "", "a"}, {100, 1 << 20}};
    const auto r = result<enqueue_result>([&](auto h) { store_->async_enqueue(req, h); });
    EXPECT_EQ(r.error, queue_error::store_error);
}

TEST_F(queue_store_test, the_file_and_a_created_folder_are_private)
{
    enqueue("a");
    struct stat st { };
    ASSERT_EQ(::stat(cfg_.path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    ASSERT_EQ(::stat((dir_ / "sub").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    const auto wal = cfg_.path + "-wal";
    if (::stat(wal.c_str(), &st) == 0) {
        EXPECT_EQ(st.st_mode & 0077, 0u);
    }
}

TEST_F(queue_store_test, an_unusable_path_is_an_error_not_a_crash)
{
    config::queue_store_config bad = cfg_;
    bad.path = "/proc/breakerbox-cannot/queue.db";
    std::string error;
    EXPECT_FALSE(queue_store::open(bad, error));
    EXPECT_NE(error.find("/proc/breakerbox-cannot"), std::string::npos) << error;
}

} // namespace
} // namespace breakerbox::queue
