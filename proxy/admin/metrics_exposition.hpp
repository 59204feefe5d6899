// GET /metrics: builds the Prometheus families from the breakers' snapshots and the workers'
// single-writer counters at scrape time, and renders them with prometheus-cpp's text serializer.
// Nothing here runs on the request path: workers only bump their own counters.
#pragma once
#include "admin/admin_context.hpp"

#include <string>

namespace breakerbox::admin {

std::string render_metrics(const admin_context& ctx);

} // namespace breakerbox::admin
