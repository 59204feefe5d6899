#include "admin/queue_routes.hpp"

#include "admin/event_hub.hpp"
#include "core/log.hpp"
#include "queue/queue_request.hpp"
#include "queue/queue_wait.hpp"

#include <charconv>

namespace breakerbox::admin {
namespace {

namespace bhttp = boost::beast::http;

std::int64_t wall_ms_now()
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

nlohmann::json entry_json(const queue::entry& e, bool detail)
{
    auto j = nlohmann::json::parse(queue::status_json(e));
    j["seq"] = e.seq;
    if (detail) {
        nlohmann::json fields = nlohmann::json::array();
        std::string_view lines = e.request.fields;
        while (!lines.empty()) {
            const auto end = lines.find("\r\n");
            fields.push_back(std::string(lines.substr(0, end)));
            if (end == std::string_view::npos)
                break;
            lines.remove_prefix(end + 2);
        }
        j["request_fields"] = fields;
    }
    return j;
}

// The path after /admin/queues/, split: {upstream}, {upstream}/{id}, {upstream}/{id}/requeue, {upstream}/purge.
struct queue_path {
    std::string upstream;
    std::string id;
    std::string action; // "", "requeue", "purge"
};

std::optional<queue_path> parse_path(std::string_view rest)
{
    queue_path p;
    if (rest.empty())
        return p;
    std::vector<std::string_view> parts;
    while (!rest.empty()) {
        const auto slash = rest.find('/');
        parts.push_back(rest.substr(0, slash));
        if (slash == std::string_view::npos)
            break;
        rest.remove_prefix(slash + 1);
    }
    if (parts.empty() || parts.size() > 3 || parts[0].empty())
        return std::nullopt;
    p.upstream = std::string(parts[0]);
    if (parts.size() == 2 && parts[1] == "purge") {
        p.action = "purge";
        return p;
    }
    if (parts.size() >= 2)
        p.id = std::string(parts[1]);
    if (parts.size() == 3) {
        if (parts[2] != "requeue")
            return std::nullopt;
        p.action = "requeue";
    }
    return p;
}

http::response admin_status_answer(queue::admin_status s, std::string_view what)
{
    switch (s) {
    case queue::admin_status::done: return json_response(200, {{"result", "done"}, {"action", what}});
    case queue::admin_status::not_found: return json_error_response(404, "not_found", "no such entry in this queue");
    case queue::admin_status::conflict:
        return json_error_response(409, "conflict",
                                   what == "requeue" ? "only failed or expired entries can be requeued"
                                                     : "the entry is being delivered; try again when it is not");
    }
    return json_error_response(500, "internal", "unknown result");
}

// The store could not answer: it failed (503 store_error), or not within commit_timeout (503 queue_timeout).
http::response store_failure(queue::queue_error e)
{
    if (e == queue::queue_error::timeout)
        return json_error_response(503, "queue_timeout", "the queue's store did not answer within queue_store.commit_timeout");
    return json_error_response(503, "store_error", "the queue's database refused the operation (see the log)");
}

void publish(const admin_context& ctx, const admin_request_info& info, std::string_view action, const queue_path& p)
{
    const std::string by(info.remote_ip);
    log::warn("queue operator action", {{"action", action}, {"upstream", p.upstream}, {"id", p.id}, {"who", by}});
    if (ctx.events)
        ctx.events->publish("operator",
                            {{"action", "queue-" + std::string(action)}, {"upstream", p.upstream}, {"id", p.id}, {"who", by}});
}

// GET /admin/queues: every queue the store knows.
http::response all_queues(const queue::queue_store& store)
{
    nlohmann::json queues = nlohmann::json::object();
    for (const auto& name : store.upstreams())
        queues[name] = queue_summary(store.counters(name));
    return json_response(200, {{"queues", queues}});
}

// The store's answer within queue_store.commit_timeout.
template <class R, class Start>
asio::awaitable<queue::queue_result<R>> ask(const admin_context& ctx, Start start)
{
    co_return co_await queue::within<R>(ctx.state.current()->cfg.queue_store.commit_timeout, std::move(start));
}

// POST /admin/queues/{upstream}/purge and /admin/queues/{upstream}/{id}/requeue.
asio::awaitable<http::response> queue_action(const admin_context& ctx, const http::request& req, const admin_request_info& info,
                                             queue::queue_store& store, const queue_path& p)
{
    if (req.method() != bhttp::verb::post)
        co_return json_error_response(405, "method_not_allowed", "POST only");
    publish(ctx, info, p.action, p);
    if (p.action == "purge") {
        const auto n = co_await ask<std::int64_t>(ctx, [&](auto h) { store.async_purge(p.upstream, std::move(h)); });
        if (!n.ok())
            co_return store_failure(n.error);
        co_return json_response(200, {{"result", "done"}, {"action", "purge"}, {"purged", n.value}});
    }
    const auto done =
        co_await ask<queue::admin_status>(ctx, [&](auto h) { store.async_requeue(p.upstream, p.id, std::move(h)); });
    if (!done.ok())
        co_return store_failure(done.error);
    co_return admin_status_answer(done.value, "requeue");
}

// GET /admin/queues/{upstream}?state=S&limit=N: the entries, oldest first, without bodies.
asio::awaitable<http::response> entries(const admin_context& ctx, queue::queue_store& store, const std::string& upstream,
                                        std::string_view target)
{
    std::optional<queue::entry_state> state;
    if (auto s = query_value(target, "state"); !s.empty()) {
        state = parse_name<queue::entry_state>(s);
        if (!state)
            co_return json_error_response(400, "bad_state", "state is one of " + names_list<queue::entry_state>());
    }
    unsigned limit = 100;
    if (auto l = query_value(target, "limit"); !l.empty()) {
        auto [ptr, ec] = std::from_chars(l.data(), l.data() + l.size(), limit);
        if (ec != std::errc{} || ptr != l.data() + l.size() || limit == 0 || limit > 1000)
            co_return json_error_response(400, "bad_limit", "limit is an integer in [1, 1000]");
    }
    const auto found =
        co_await ask<std::vector<queue::entry>>(ctx, [&](auto h) { store.async_list(upstream, state, limit, std::move(h)); });
    if (!found.ok())
        co_return store_failure(found.error);
    nlohmann::json list = nlohmann::json::array();
    for (const auto& e : found.value)
        list.push_back(entry_json(e, false));
    co_return json_response(200, {{"upstream", upstream}, {"queue", queue_summary(store.counters(upstream))}, {"entries", list}});
}

// GET or DELETE /admin/queues/{upstream}/{id}.
asio::awaitable<http::response> one_entry(const admin_context& ctx, const http::request& req, const admin_request_info& info,
                                          queue::queue_store& store, const queue_path& p)
{
    const auto method = req.method();
    if (method == bhttp::verb::delete_) {
        publish(ctx, info, "delete", p);
        const auto done =
            co_await ask<queue::admin_status>(ctx, [&](auto h) { store.async_remove(p.upstream, p.id, std::move(h)); });
        if (!done.ok())
            co_return store_failure(done.error);
        co_return admin_status_answer(done.value, "delete");
    }
    if (method != bhttp::verb::get && method != bhttp::verb::head)
        co_return json_error_response(405, "method_not_allowed", "GET or DELETE");
    const auto found =
        co_await ask<std::optional<queue::entry>>(ctx, [&](auto h) { store.async_inspect(p.upstream, p.id, std::move(h)); });
    if (!found.ok())
        co_return store_failure(found.error);
    const auto& e = found.value;
    if (!e)
        co_return json_error_response(404, "not_found", "no such entry in this queue");
    co_return json_response(200, entry_json(*e, true));
}

} // namespace

nlohmann::json queue_summary(const queue::queue_counters& c, std::int64_t now_ms)
{
    const auto oldest = c.oldest_ms.load();
    return {{"depth", c.depth.load()},
            {"in_flight", c.in_flight.load()},
            {"bytes", c.bytes.load()},
            {"oldest_age_seconds", oldest ? static_cast<double>(std::max<std::int64_t>(0, now_ms - oldest)) / 1000.0 : 0.0},
            {"dead_letters", c.dead_letters.load()},
            {"enqueued", c.enqueued.load()},
            {"delivered", c.delivered.load()},
            {"dead_lettered", c.dead_lettered.load()},
            {"expired", c.expired.load()}};
}

asio::awaitable<http::response> handle_queue_admin(const admin_context& ctx, const http::request& req,
                                                   const admin_request_info& info, std::string_view rest)
{
    auto* store = ctx.state.queue;
    if (!store)
        co_return json_error_response(404, "no_queue", "no queue_store is configured");
    const auto p = parse_path(rest);
    if (!p)
        co_return json_error_response(404, "not_found", "see docs/queue.md for the queue admin API");
    const bool get = req.method() == bhttp::verb::get || req.method() == bhttp::verb::head;
    if (p->upstream.empty()) // GET /admin/queues
        co_return get ? all_queues(*store) : json_error_response(405, "method_not_allowed", "GET only");
    if (!store->has_queue(p->upstream))
        co_return json_error_response(404, "not_found", "no queue for upstream \"" + p->upstream + "\"");
    if (p->action == "purge" || p->action == "requeue")
        co_return co_await queue_action(ctx, req, info, *store, *p);
    if (p->id.empty() && !get) // GET /admin/queues/{upstream}
        co_return json_error_response(405, "method_not_allowed", "GET only");
    if (p->id.empty()) // not as ?: with co_await in it: built by GCC 12, that closed the connection unanswered
        co_return co_await entries(ctx, *store, p->upstream, req.target());
    co_return co_await one_entry(ctx, req, info, *store, *p);
}

nlohmann::json queue_summary(const queue::queue_counters& c) { return queue_summary(c, wall_ms_now()); }

} // namespace breakerbox::admin
