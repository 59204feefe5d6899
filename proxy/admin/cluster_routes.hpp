// Cluster-wide operator actions (circuit_breaker.scope: cluster; docs/cluster.md): the circuit actions of
// the admin API with `?scope=cluster`, applied in Redis for every replica, through any replica, with the
// admin token. An optional `for=30s` ends a forced state by itself (Redis's clock).
//
//   POST /admin/circuits/{upstream}/force-open?scope=cluster[&for=DURATION]
//   POST /admin/circuits/{upstream}/force-closed?scope=cluster[&for=DURATION]
//   POST /admin/circuits/{upstream}/reset?scope=cluster
//
// 404 for an upstream that is not clustered, 503 when Redis cannot be reached (nothing was changed).
#pragma once
#include "admin/admin_context.hpp"
#include "admin/admin_routes.hpp"
#include "core/asio.hpp"

namespace breakerbox::admin {

// `rest`: the path after /admin/circuits/. Its route (admin_routes.cpp) has checked the method (POST)
// and the token.
asio::awaitable<http::response> handle_cluster_action(const admin_context& ctx, const http::request& req,
                                                      const admin_request_info& info, std::string_view rest);

} // namespace breakerbox::admin
