#include "http/header_rules.hpp"

#include "http/field_scan.hpp"

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

const field_name via_field = field_name::of("Via");
const field_name x_forwarded_for = field_name::of("X-Forwarded-For");
const field_name x_forwarded_proto = field_name::of("X-Forwarded-Proto");
const field_name x_forwarded_host = field_name::of("X-Forwarded-Host");

// Appends `value` to a comma-separated list field, creating it if absent. Several lines of the field
// become one list, in order (RFC 9110 §5.3: the same meaning; some applications read only one line).
void append_to_list(fields& f, field_name name, std::string_view value)
{
    auto first = find_first(f, name);
    if (first == f.end()) {
        insert_field(f, name, value); // the common case: no temporary string
        return;
    }
    std::string joined;
    for (auto it = first; it != f.end(); ++it)
        if (name.matches(*it))
            joined.append(it->value()).append(", ");
    joined.append(value);
    set_field(f, name, joined);
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
                if (!boost::beast::iequals(token, "keep-alive") && !boost::beast::iequals(token, "close") &&
                    !is_hop_by_hop(bhttp::string_to_field(token)))
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

void append_via(fields& f) { append_to_list(f, via_field, via_value); }

void add_forwarding_fields(fields& f, const config::forwarding_config& cfg, const forward_context& ctx)
{
    if (cfg.via)
        append_via(f);
    if (cfg.x_forwarded_for && !ctx.client_ip.empty())
        append_to_list(f, x_forwarded_for, ctx.client_ip);
    if (cfg.x_forwarded_proto)
        set_field(f, x_forwarded_proto, "http");
    if (cfg.x_forwarded_host && !ctx.original_host.empty())
        set_field(f, x_forwarded_host, ctx.original_host);
}

} // namespace breakerbox::http
