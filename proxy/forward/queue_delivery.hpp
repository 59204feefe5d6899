// Delivers an upstream's queued requests (the queue fallback, docs/queue.md) once its circuit is closed
// again: oldest first, through the upstream's bulkhead, breaker and retry policy like live traffic, at
// most `delivery.rate` started per second and `delivery.concurrency` at once.
//
// One coroutine per upstream name with a queue, on one worker's io_context (it uses that worker's
// pools and counters, and the worker's current generation, so a reload changes its settings without a
// restart). It keeps up to `concurrency` deliveries in flight, started at the paced times, and sleeps
// (200 ms at a time) only when there is nothing it may do: an empty queue, a circuit open or half-open,
// the back-off after a retryable failure; it stops claiming once the process drains (SIGTERM). Rules:
// - an answer below 400 delivers the entry; 408, 425, 429, 5xx or no answer is retryable: the entry
//   keeps its place at the head (dead-lettered once max_attempts is reached) and the drain pauses for
//   backoff_base * 2^(failures-1), at most backoff_max; any other 4xx dead-letters it at once;
// - a delivery the breaker or bulkhead turns away was not sent: the entry goes back uncounted.
#pragma once
#include "core/asio.hpp"
#include "queue/queue_store.hpp"
#include "runtime/worker_context.hpp"

#include <string>

namespace breakerbox::forward {

// Runs until the process drains. `worker`: the worker whose io_context runs it (asserted).
asio::awaitable<void> run_queue_delivery(runtime::worker_context& worker, queue::queue_store& store, std::string upstream);

// The pause after `failures` retryable failures in a row (failures >= 1), in nanoseconds.
nanos delivery_backoff(const config::queue_delivery_config& d, unsigned failures) noexcept;

} // namespace breakerbox::forward
