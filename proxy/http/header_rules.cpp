#include "http/header_rules.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/rfc7230.hpp>

#include <algorithm>
#include <string>
#include <vector>

namespace breakerbox::http {
namespace {

constexpr std::string_view via_value = "1.1 breakerbox";

bool is_hop_by_hop(bhttp::field name)
{
    switch (name) {
    case bhttp::field::connection:
    case bhttp::field::keep_alive:
    case bhttp::field::proxy_connection:
    case bhttp::field::te:
    case bhttp::field::trailer:
    case bhttp::field::transfer_encoding:
    case bhttp::field::upgrade: return true;
    default: return false;
    }
}

// Appends `value` to a comma-separated list field, creating it if absent.
template <class Name>
void append_to_list(fields& f, Name name, std::string_view value)
{
    auto existing = f[name];
    if (existing.empty()) {
        f.insert(name, value); // the common case: no temporary string
        return;
    }
    std::string joined(existing);
    joined.append(", ").append(value);
    f.set(name, joined);
}

} // namespace

void strip_hop_by_hop(fields& f)
{
    // Names listed in a Connection field are hop-by-hop too. The usual tokens ("keep-alive", "close")
    // name fields removed anyway or none at all, so typically nothing is collected and this is one pass
    // over the fields comparing enums (erasing by name would search the set once per name).
    std::vector<std::string> named; // copies: the Connection field itself is erased below
    for (const auto& field : f)
        if (field.name() == bhttp::field::connection)
            for (auto token : bhttp::token_list{field.value()})
                if (!is_hop_by_hop(bhttp::string_to_field(token)) && !boost::beast::iequals(token, "close"))
                    named.emplace_back(token);
    auto listed = [&](std::string_view name) {
        return std::any_of(named.begin(), named.end(), [&](const std::string& n) { return boost::beast::iequals(n, name); });
    };
    for (auto it = f.begin(); it != f.end();) {
        if (is_hop_by_hop(it->name()) || (!named.empty() && listed(it->name_string())))
            it = f.erase(it);
        else
            ++it;
    }
}

void append_via(fields& f) { append_to_list(f, bhttp::field::via, via_value); }

void add_forwarding_fields(fields& f, const config::forwarding_config& cfg, const forward_context& ctx)
{
    if (cfg.via)
        append_via(f);
    if (cfg.x_forwarded_for && !ctx.client_ip.empty())
        append_to_list(f, "X-Forwarded-For", ctx.client_ip);
    if (cfg.x_forwarded_proto)
        f.set("X-Forwarded-Proto", "http");
    if (cfg.x_forwarded_host && !ctx.original_host.empty())
        f.set("X-Forwarded-Host", ctx.original_host);
}

} // namespace breakerbox::http
