// Request → response for the admin API, independent of the socket (so it can be unit-tested).
#pragma once
#include "admin/admin_context.hpp"
#include "http/message.hpp"

#include <string>
#include <string_view>

namespace breakerbox::admin {

struct admin_request_info {
    std::string_view remote_ip;
    std::string_view token; // the configured token ("" = mutations refused)
};

http::response handle_admin_request(const admin_context& ctx, const http::request& req, const admin_request_info& info);

} // namespace breakerbox::admin
