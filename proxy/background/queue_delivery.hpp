// Delivers an upstream's queued requests (the queue fallback, docs/queue.md) once its circuit is closed
// again: oldest first, through the upstream's bulkhead, breaker and retry policy like live traffic, at
// most `delivery.rate` started per second and `delivery.concurrency` at once.
//
// One coroutine per upstream name with a queue, on one worker's io_context (it uses that worker's
// pools and counters, and the worker's current generation, so a reload changes its settings without a
// restart). It keeps up to `concurrency` deliveries in flight, claiming the oldest entry only when one
// may start (the paced time has come, a slot is free), so an entry is in flight only while it is being
// delivered. It sleeps (200 ms at a time) only when there is nothing it may do: an empty queue, a
// circuit open or half-open, a back-off; it stops claiming once the process drains (SIGTERM), which
// waits for the deliveries in flight (bounded by drain_timeout). Rules:
// - the answer is classified by queue::classify_delivery_status: 2xx delivers the entry; 3xx and the
//   other 4xx dead-letter it at once (a terminal answer must not block the queue); 401, 403, 408, 409,
//   425, 429, 5xx or no answer are retryable: the entry keeps its place at the head (dead-lettered once
//   max_attempts is reached) and the drain pauses for backoff_base * 2^(failures-1), at most backoff_max;
// - a delivery the breaker or bulkhead turns away before any attempt was not sent: the entry goes back
//   uncounted, and the drain pauses for the same back-off;
// - with concurrency > 1, deliveries already started when the head fails still run (they may overtake it).
#pragma once
#include "core/asio.hpp"
#include "queue/queue_store.hpp"
#include "runtime/worker_context.hpp"

#include <string>

namespace breakerbox::background {

// Runs until the process drains. `worker`: the worker whose io_context runs it (asserted).
asio::awaitable<void> run_queue_delivery(runtime::worker_context& worker, queue::queue_store& store, std::string upstream);

// The pause after `failures` retryable failures in a row (failures >= 1), in nanoseconds.
// Whether a delivery that ended with `e` certainly did not reach the upstream: a local refusal (the
// outcome table's origin `local` — circuit, bulkhead, limits, no endpoint, none healthy), recorded as
// not sent, no attempt used.
bool not_sent(proxy_error e) noexcept;

nanos delivery_backoff(const config::queue_delivery_config& d, unsigned failures) noexcept;

} // namespace breakerbox::background
