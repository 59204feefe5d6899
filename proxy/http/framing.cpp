#include "http/framing.hpp"

#include "http/field_scan.hpp"

#include <charconv>
#include <cstdio>

namespace breakerbox::http {

// Upstream responses nearly always carry the right Content-Length already: set_field keeps it then.
void set_content_length(fields& f, std::size_t size)
{
    char digits[24];
    const auto end = std::to_chars(digits, digits + sizeof digits, size).ptr;
    const std::string_view value(digits, static_cast<std::size_t>(end - digits));
    set_field(f, {bhttp::field::content_length}, value);
}

void frame_request(request& req)
{
    const auto method = req.method();
    const bool expects_body = method == bhttp::verb::post || method == bhttp::verb::put || method == bhttp::verb::patch;
    if (!req.body().empty() || expects_body)
        set_content_length(req, req.body().size());
    else
        erase_all(req, {bhttp::field::content_length});
}

void frame_response(response& res, bool head_request)
{
    const unsigned status = res.result_int();
    if ((status >= 100 && status < 200) || status == 204) {
        erase_all(res, {bhttp::field::content_length});
        res.body().clear();
        return;
    }
    if (head_request || status == 304) {
        res.body().clear();
        return;
    }
    set_content_length(res, res.body().size());
}

void set_keep_alive(response& res, bool keep_alive)
{
    if (has_field(res, {bhttp::field::connection})) {
        res.keep_alive(keep_alive); // other tokens in it are kept
        return;
    }
    if (const auto token = connection_token(res.version(), keep_alive); !token.empty())
        res.insert(bhttp::field::connection, token);
}

std::string_view connection_token(unsigned version, bool keep_alive) noexcept
{
    if (version >= 11 ? keep_alive : !keep_alive)
        return {};
    return keep_alive ? "keep-alive" : "close";
}

std::array<asio::const_buffer, 3> chunk_frame::frame(std::string_view piece) noexcept
{
    static constexpr std::string_view crlf = "\r\n";
    const int n = std::snprintf(size_line_, sizeof size_line_, "%zx\r\n", piece.size());
    return {asio::buffer(size_line_, static_cast<std::size_t>(n)), asio::buffer(piece.data(), piece.size()), asio::buffer(crlf)};
}

} // namespace breakerbox::http
