#include "routing/router.hpp"

#include <algorithm>

namespace breakerbox::routing {
namespace {

// ASCII only, as host names and schemes are compared (RFC 9110 §4.2.3); std::tolower would consult the
// locale for every character of every request's Host.
std::string lowercase(std::string_view s)
{
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c - 'A' + 'a');
    return out;
}

std::string_view strip_port(std::string_view authority)
{
    if (!authority.empty() && authority.front() == '[') {
        auto close = authority.find(']');
        return close == std::string_view::npos ? authority : authority.substr(0, close + 1);
    }
    auto colon = authority.rfind(':');
    return colon == std::string_view::npos ? authority : authority.substr(0, colon);
}

bool prefix_matches(std::string_view path, std::string_view prefix)
{
    if (path.substr(0, prefix.size()) != prefix)
        return false;
    if (path.size() == prefix.size() || prefix.back() == '/')
        return true;
    char next = path[prefix.size()];
    return next == '/' || next == '?';
}

} // namespace

bool split_absolute_form(std::string_view target, std::string& authority, std::string& origin)
{
    constexpr std::string_view scheme = "http://";
    if (target.size() < scheme.size() || lowercase(target.substr(0, scheme.size())) != scheme)
        return false;
    std::string_view rest = target.substr(scheme.size());
    auto end = rest.find_first_of("/?#");
    std::string_view auth = rest.substr(0, end);
    if (auth.empty() || auth.find('@') != std::string_view::npos) // userinfo is not forwarded, refuse it
        return false;
    authority = lowercase(auth);
    if (end == std::string_view::npos)
        origin = "/";
    else if (rest[end] == '/')
        origin = std::string(rest.substr(end));
    else {
        origin.assign(1, '/');
        origin.append(rest.substr(end));
    }
    if (auto hash = origin.find('#'); hash != std::string::npos)
        origin.resize(hash);
    return true;
}

router::router(const config::config& cfg)
{
    for (const auto& l : cfg.listeners) {
        std::optional<std::size_t> index;
        for (std::size_t i = 0; i < cfg.upstreams.size(); ++i)
            if (!l.upstream.empty() && cfg.upstreams[i].name == l.upstream)
                index = i;
        dedicated_.push_back(index);
    }
    for (std::size_t i = 0; i < cfg.upstreams.size(); ++i) {
        const auto& r = cfg.upstreams[i].routes;
        for (const auto& h : r.hosts)
            hosts_.push_back({lowercase(h), i});
        if (!r.path_prefix.empty())
            prefixes_.push_back({r.path_prefix, r.strip_prefix, i});
    }
    std::stable_sort(prefixes_.begin(), prefixes_.end(),
                     [](const prefix_route& a, const prefix_route& b) { return a.prefix.size() > b.prefix.size(); });
}

std::optional<std::size_t> router::match_host(std::string_view auth) const
{
    if (auth.empty())
        return std::nullopt;
    std::string_view bare = strip_port(auth);
    for (const auto& h : hosts_) // exact "host:port" or a bare host that matches any port
        if (h.host == auth || h.host == bare)
            return h.upstream;
    return std::nullopt;
}

std::optional<route_match> router::match(std::size_t listener_index, std::string_view target,
                                         std::string_view host_header) const
{
    route_match m;
    bool absolute = false;
    if (!target.empty() && target.front() != '/') {
        if (!split_absolute_form(target, m.authority, m.origin_target))
            return std::nullopt; // "*", authority-form or another scheme: never forwarded
        absolute = true;
    } else {
        m.origin_target = std::string(target);
        m.authority = lowercase(host_header);
    }

    if (listener_index < dedicated_.size() && dedicated_[listener_index]) {
        m.upstream = *dedicated_[listener_index];
        return m;
    }
    if (auto u = match_host(m.authority)) {
        m.upstream = *u;
        return m;
    }
    if (absolute)
        return std::nullopt; // a proxy-style request for a host we do not serve
    for (const auto& p : prefixes_) {
        if (!prefix_matches(m.origin_target, p.prefix))
            continue;
        m.upstream = p.upstream;
        if (p.strip) {
            std::string_view rest = std::string_view(m.origin_target).substr(p.prefix.size());
            std::string stripped;
            stripped.reserve(rest.size() + 1);
            if (rest.empty() || rest.front() != '/')
                stripped.push_back('/');
            stripped.append(rest);
            m.origin_target = std::move(stripped);
        }
        return m;
    }
    return std::nullopt;
}

} // namespace breakerbox::routing
