// Taking a bulkhead slot from a coroutine: at once when one is free, otherwise an asynchronous wait in
// the bulkhead's FIFO queue (no thread blocks) bounded by the queue timeout. The slot is an RAII
// permit; a waiter whose coroutine is destroyed leaves the queue (or gives back a slot granted at that
// very moment). Used from worker threads; the bulkhead itself is shared.
#pragma once
#include "core/asio.hpp"
#include "core/clock.hpp"
#include "resilience/bulkhead.hpp"

#include <utility>

namespace breakerbox::forward {

using resilience::bulkhead_permit;
using resilience::try_take_slot;

enum class bulkhead_result { acquired, full, queue_timeout, client_gone };

// On `acquired`, `permit` holds the slot. While queued, the client's socket (if given) is watched: a
// client that closes its connection leaves the queue at once (client_gone).
asio::awaitable<bulkhead_result> acquire_bulkhead(resilience::bulkhead& b, nanos queue_timeout, bulkhead_permit& permit,
                                                  tcp::socket* client = nullptr);

} // namespace breakerbox::forward
