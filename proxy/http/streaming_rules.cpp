#include "http/streaming_rules.hpp"

#include "http/field_scan.hpp"

#include <boost/beast/http/rfc7230.hpp>

#include <algorithm>
#include <array>
#include <cctype>

namespace breakerbox::http {
namespace {

bool starts_with_nocase(std::string_view s, std::string_view prefix)
{
    return s.size() >= prefix.size() && boost::beast::iequals(s.substr(0, prefix.size()), prefix);
}

const field_name x_accel_buffering = field_name::of("X-Accel-Buffering");

} // namespace

bool streams_response(const fields& res)
{
    static constexpr std::array<std::string_view, 4> streaming_types{"text/event-stream", "application/x-ndjson",
                                                                     "multipart/x-mixed-replace", "application/grpc"};
    const auto type = value_of(res, {bhttp::field::content_type});
    for (auto t : streaming_types)
        if (starts_with_nocase(type, t)) {
            const auto rest = type.substr(t.size());
            // application/grpc, application/grpc+proto, application/grpc-web...; text/event-stream;charset=...
            if (rest.empty() || rest.front() == ';' || rest.front() == '+' || rest.front() == '-' || rest.front() == ' ')
                return true;
        }
    const auto buffering = value_of(res, x_accel_buffering);
    return buffering.size() == 2 && boost::beast::iequals(buffering, "no");
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
    for (auto protocol : bhttp::token_list{upgrade}) {
        const auto name = std::string_view(protocol).substr(0, std::string_view(protocol).find('/'));
        for (const auto& a : allowed)
            if (boost::beast::iequals(name, a))
                return std::string(upgrade);
        return {};
    }
    return {};
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
