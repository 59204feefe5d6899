// The admin API of the queue fallback (docs/queue.md, docs/admin-api.md). Every call needs the admin
// token, reads included: queued requests are the callers' data. Answered as a coroutine, since each call
// waits for the queue's writer thread. Its routes (admin_routes.cpp) leave the method to this handler,
// after the token: each resource below answers its own.
//
//   GET    /admin/queues                              each queue's figures
//   GET    /admin/queues/{upstream}?state=S&limit=N   entries, oldest first, without bodies (N <= 1000)
//   GET    /admin/queues/{upstream}/{id}              one entry: stored fields, body size, the answer
//   POST   /admin/queues/{upstream}/{id}/requeue      failed or expired → queued (attempts from 0); 409 otherwise
//   DELETE /admin/queues/{upstream}/{id}              removes one entry; 409 while in flight
//   POST   /admin/queues/{upstream}/purge             removes the dead letters (failed, expired)
#pragma once
#include "admin/admin_context.hpp"
#include "admin/admin_routes.hpp"
#include "core/asio.hpp"
#include "queue/queue_store.hpp"

#include <nlohmann/json.hpp>

namespace breakerbox::admin {

// `rest`: the path after /admin/queues/ ("" for /admin/queues itself).
asio::awaitable<http::response> handle_queue_admin(const admin_context& ctx, const http::request& req,
                                                   const admin_request_info& info, std::string_view rest);

// One queue's figures, as /health/circuits, /admin/queues and the dashboard show them. `now_ms`: Unix ms.
nlohmann::json queue_summary(const queue::queue_counters& c, std::int64_t now_ms);
// The same as of now.
nlohmann::json queue_summary(const queue::queue_counters& c);

} // namespace breakerbox::admin
