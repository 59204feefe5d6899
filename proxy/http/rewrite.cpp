#include "http/rewrite.hpp"

#include "http/field_scan.hpp"
#include "http/framing.hpp"

namespace breakerbox::http {

void rewrite_for_upstream(request& req, const config::forwarding_config& fwd, const forward_context& ctx,
                          std::string_view origin_target, std::string_view host, std::string_view host_if_missing)
{
    strip_hop_by_hop(req.base());
    erase_all(req, {bhttp::field::expect});
    add_forwarding_fields(req.base(), fwd, ctx);
    if (!host.empty())
        set_field(req, {bhttp::field::host}, host);
    else if (value_of(req, {bhttp::field::host}).empty())
        set_field(req, {bhttp::field::host}, host_if_missing);
    req.target(origin_target);
    req.version(11);
    frame_request(req);
}

void rewrite_for_client(response& res, bool head_request, bool via)
{
    strip_hop_by_hop(res.base());
    frame_response(res, head_request);
    if (via)
        append_via(res.base());
}

} // namespace breakerbox::http
