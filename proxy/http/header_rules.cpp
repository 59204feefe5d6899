#include "http/header_rules.hpp"

#include <boost/beast/http/rfc7230.hpp>

#include <string>
#include <vector>

namespace breakerbox::http {

void strip_hop_by_hop(fields& f)
{
    // Collect the names listed in every Connection field before erasing anything.
    std::vector<std::string> named;
    for (const auto& field : f)
        if (field.name() == bhttp::field::connection)
            for (auto token : bhttp::token_list{field.value()})
                named.emplace_back(token);
    for (const auto& name : named)
        f.erase(name);
    f.erase(bhttp::field::connection);
    f.erase(bhttp::field::keep_alive);
    f.erase(bhttp::field::proxy_connection);
    f.erase(bhttp::field::te);
    f.erase(bhttp::field::trailer);
    f.erase(bhttp::field::transfer_encoding);
    f.erase(bhttp::field::upgrade);
}

void add_forwarding_fields(fields& f, const config::forwarding_config& cfg, const forward_context& ctx)
{
    if (cfg.via) {
        auto existing = f[bhttp::field::via];
        std::string via = existing.empty() ? std::string() : std::string(existing) + ", ";
        via += "1.1 breakerbox";
        f.set(bhttp::field::via, via);
    }
    if (cfg.x_forwarded_for && !ctx.client_ip.empty()) {
        auto existing = f["X-Forwarded-For"];
        std::string xff = existing.empty() ? std::string() : std::string(existing) + ", ";
        xff += ctx.client_ip;
        f.set("X-Forwarded-For", xff);
    }
    if (cfg.x_forwarded_proto)
        f.set("X-Forwarded-Proto", "http");
    if (cfg.x_forwarded_host && !ctx.original_host.empty())
        f.set("X-Forwarded-Host", ctx.original_host);
}

} // namespace breakerbox::http
