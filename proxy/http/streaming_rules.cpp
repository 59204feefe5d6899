#include "http/streaming_rules.hpp"

#include "http/field_scan.hpp"

#include <boost/beast/http/rfc7230.hpp>

#include <algorithm>
#include <cctype>

namespace breakerbox::http {
namespace {

// `prefix` in lower case. The exact spelling (what servers send) is one memcmp; only a different case
// pays for the case-insensitive comparison.
bool starts_with_nocase(std::string_view s, std::string_view prefix)
{
    return s.size() >= prefix.size() &&
           (s.compare(0, prefix.size(), prefix) == 0 || boost::beast::iequals(s.substr(0, prefix.size()), prefix));
}

const field_name x_accel_buffering = field_name::of("X-Accel-Buffering");

// The first element of a comma-separated list, without its surrounding whitespace (RFC 9110 §5.6.1).
// (Beast's token_list does not do for Upgrade: a protocol is name/version, and '/' is no token char.)
std::string_view first_element(std::string_view list)
{
    const auto not_ows = [](char c) { return c != ' ' && c != '\t'; };
    auto begin = std::find_if(list.begin(), list.end(), [&](char c) { return not_ows(c) && c != ','; });
    auto end = std::find(begin, list.end(), ',');
    while (end != begin && !not_ows(*(end - 1)))
        --end;
    return {begin, end};
}

} // namespace

// Whether a Content-Type value names a streaming media type. Dispatches on the first letter and shares
// the "application/" prefix, so that the usual application/json costs one short comparison.
bool streaming_type(std::string_view type)
{
    const auto type_is = [](std::string_view rest, std::string_view name) {
        if (!starts_with_nocase(rest, name))
            return false;
        const auto after = rest.substr(name.size()); // application/grpc+proto, text/event-stream; charset=...
        return after.empty() || after.front() == ';' || after.front() == '+' || after.front() == '-' || after.front() == ' ';
    };
    if (type.empty())
        return false;
    switch (type.front() | 0x20) {
    case 't': return type_is(type, "text/event-stream");
    case 'm': return type_is(type, "multipart/x-mixed-replace");
    case 'a': {
        constexpr std::string_view application = "application/";
        if (type.size() <= application.size() || !starts_with_nocase(type, application))
            return false;
        const auto rest = type.substr(application.size());
        switch (rest.front() | 0x20) {
        case 'x': return type_is(rest, "x-ndjson");
        case 'g': return type_is(rest, "grpc");
        default: return false;
        }
    }
    default: return false;
    }
}

bool streams_response(const fields& res)
{
    // One pass over the fields, comparing enums (on every answer whose length fits the buffer).
    for (const auto& f : res) {
        if (f.name() == bhttp::field::content_type) {
            if (streaming_type(f.value()))
                return true;
        } else if (f.name() == bhttp::field::unknown && f.name_string().size() == x_accel_buffering.text.size() &&
                   x_accel_buffering.matches(f)) {
            const std::string_view v = f.value();
            if (v.size() == 2 && boost::beast::iequals(v, "no"))
                return true;
        }
    }
    return false;
}

std::string requested_upgrade(const request& req, const std::vector<std::string>& allowed)
{
    if (allowed.empty() || req.version() != 11)
        return {};
    const auto upgrade = value_of(req, {bhttp::field::upgrade});
    if (upgrade.empty())
        return {};
    bool listed = false;
    for (const auto& f : req)
        if (f.name() == bhttp::field::connection)
            for (auto token : bhttp::token_list{f.value()})
                listed = listed || boost::beast::iequals(token, "upgrade");
    if (!listed)
        return {};
    // The first protocol the client offers decides (a proxy forwarding several would have to know which
    // the upstream chose: it does, from the 101, but one keeps it simple and is what clients send).
    const auto first = first_element(upgrade);
    const auto name = first.substr(0, first.find('/'));
    for (const auto& a : allowed)
        if (!name.empty() && boost::beast::iequals(name, a))
            return std::string(first);
    return {};
}

bool same_protocol(std::string_view switched_to, std::string_view asked)
{
    const auto to = first_element(switched_to);
    const auto to_name = to.substr(0, to.find('/'));
    const auto asked_name = asked.substr(0, asked.find('/'));
    if (to_name.empty() || !boost::beast::iequals(to_name, asked_name))
        return false;
    const bool both_versioned = to.find('/') != std::string_view::npos && asked.find('/') != std::string_view::npos;
    return !both_versioned || boost::beast::iequals(to, asked);
}

void restore_upgrade(fields& f, std::string_view protocols)
{
    set_field(f, {bhttp::field::connection}, "upgrade");
    set_field(f, {bhttp::field::upgrade}, protocols);
}

void frame_streamed_response(response& res, bool known_length)
{
    if (!known_length)
        erase_all(res, {bhttp::field::content_length});
}

void frame_streamed_request(request& req, bool chunked, std::uint64_t length)
{
    if (chunked) {
        erase_all(req, {bhttp::field::content_length});
        set_field(req, {bhttp::field::transfer_encoding}, "chunked");
    } else {
        set_field(req, {bhttp::field::content_length}, std::to_string(length));
    }
}

} // namespace breakerbox::http
