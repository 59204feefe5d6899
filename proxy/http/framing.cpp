#include "http/framing.hpp"

#include <charconv>

namespace breakerbox::http {
namespace {

// Upstream responses nearly always carry the right Content-Length already: replacing the field would
// free and allocate it for nothing.
void set_content_length(fields& f, std::size_t size)
{
    char digits[24];
    const auto end = std::to_chars(digits, digits + sizeof digits, size).ptr;
    const std::string_view value(digits, static_cast<std::size_t>(end - digits));
    if (f[bhttp::field::content_length] != value)
        f.set(bhttp::field::content_length, value);
}

} // namespace

void frame_request(request& req)
{
    const auto method = req.method();
    const bool expects_body = method == bhttp::verb::post || method == bhttp::verb::put || method == bhttp::verb::patch;
    if (!req.body().empty() || expects_body)
        set_content_length(req, req.body().size());
    else
        req.erase(bhttp::field::content_length);
}

void frame_response(response& res, bool head_request)
{
    const unsigned status = res.result_int();
    if ((status >= 100 && status < 200) || status == 204) {
        res.erase(bhttp::field::content_length);
        res.body().clear();
        return;
    }
    if (head_request || status == 304) {
        res.body().clear();
        return;
    }
    set_content_length(res, res.body().size());
}

} // namespace breakerbox::http
