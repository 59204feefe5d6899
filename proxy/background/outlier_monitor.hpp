// The main thread's side of one upstream's outlier detection: once a second it ends ejections whose
// time is over (so /health/circuits and /metrics are right without traffic); every
// outlier_detection.interval it applies the rate rules; with outlier_detection.probe it sends each
// ejected endpoint a health request every probe.interval and returns it early on a success. A verdict
// that too few endpoints are healthy opens the upstream's breaker.
//
// One coroutine per upstream with outlier detection and per configuration generation, on the main
// io_context; it stops once `active()` turns false (the next generation starts its own, on the same
// detector when the policy was kept).
#pragma once
#include "core/asio.hpp"
#include "resilience/upstream_resilience.hpp"

#include <functional>
#include <memory>
#include <string>

namespace breakerbox::background {

asio::awaitable<void> run_outlier_monitor(std::shared_ptr<resilience::upstream_resilience> shared, std::string probe_host,
                                          std::function<bool()> active);

} // namespace breakerbox::background
