#include "http/framing.hpp"

namespace breakerbox::http {

void frame_request(request& req)
{
    const auto method = req.method();
    const bool expects_body = method == bhttp::verb::post || method == bhttp::verb::put || method == bhttp::verb::patch;
    if (!req.body().empty() || expects_body)
        req.content_length(req.body().size());
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
    res.content_length(res.body().size());
}

} // namespace breakerbox::http
