#include "http/message_rules.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/rfc7230.hpp>

#include <algorithm>
#include <cstring>
#include <utility>

namespace breakerbox::http {
namespace {

bool is_unreserved_or_sub_delim(char c) noexcept
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    switch (c) {
    case '-':
    case '.':
    case '_':
    case '~': // unreserved
    case '!':
    case '$':
    case '&':
    case '\'':
    case '(':
    case ')':
    case '*':
    case '+': // sub-delims
    case ',':
    case ';':
    case '=': return true;
    default: return false;
    }
}

bool is_hex(char c) noexcept { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// reg-name = *( unreserved / pct-encoded / sub-delims ) (RFC 3986 §3.2.2); IPv4 addresses are
// reg-names by their characters.
bool is_reg_name(std::string_view s) noexcept
{
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%') {
            if (i + 2 >= s.size() || !is_hex(s[i + 1]) || !is_hex(s[i + 2]))
                return false;
            i += 2;
        } else if (!is_unreserved_or_sub_delim(s[i])) {
            return false;
        }
    }
    return true;
}

// IP-literal = "[" ( IPv6address / IPvFuture ) "]": checked by its characters, which is what matters
// here (nothing outside the brackets' alphabet can smuggle a second authority or a path).
bool is_ip_literal(std::string_view s) noexcept
{
    if (s.size() < 3 || s.front() != '[' || s.back() != ']')
        return false;
    const std::string_view inner = s.substr(1, s.size() - 2);
    if (inner.front() == 'v' || inner.front() == 'V') // IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
        return std::all_of(inner.begin(), inner.end(), [](char c) { return is_unreserved_or_sub_delim(c) || c == ':'; });
    return std::all_of(inner.begin(), inner.end(), [](char c) { return is_hex(c) || c == ':' || c == '.'; });
}

bool is_port(std::string_view s) noexcept
{
    return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

} // namespace

bool is_valid_authority(std::string_view a) noexcept
{
    if (a.empty())
        return true;
    std::string_view host = a;
    if (a.front() == '[') {
        const auto close = a.find(']');
        if (close == std::string_view::npos)
            return false;
        host = a.substr(0, close + 1);
        const std::string_view rest = a.substr(close + 1);
        if (!rest.empty() && (rest.front() != ':' || !is_port(rest.substr(1))))
            return false;
        return is_ip_literal(host);
    }
    if (const auto colon = a.find(':'); colon != std::string_view::npos) {
        host = a.substr(0, colon);
        if (!is_port(a.substr(colon + 1)))
            return false; // also a second colon: an unbracketed IPv6 address is not a valid host
    }
    return is_reg_name(host);
}

transfer_coding transfer_coding_of(const fields& f, unsigned version)
{
    bool present = false;
    std::size_t codings = 0;
    std::size_t chunked_seen = 0;
    bool last_is_chunked = false;
    for (const auto& field : f) {
        if (field.name() != bhttp::field::transfer_encoding)
            continue;
        present = true;
        for (auto coding : bhttp::token_list{field.value()}) {
            ++codings;
            last_is_chunked = boost::beast::iequals(coding, "chunked");
            chunked_seen += last_is_chunked ? 1 : 0;
        }
    }
    if (!present)
        return transfer_coding::none;
    if (version < 11 || codings == 0 || !last_is_chunked || chunked_seen > 1)
        return transfer_coding::faulty;
    return codings == 1 ? transfer_coding::chunked : transfer_coding::unimplemented;
}

proxy_error request_head_refusal(const request& req)
{
    switch (transfer_coding_of(req, req.version())) {
    case transfer_coding::none:
    case transfer_coding::chunked: return check_host(req);
    case transfer_coding::unimplemented: return proxy_error::not_implemented;
    case transfer_coding::faulty: return proxy_error::bad_request;
    }
    return proxy_error::bad_request;
}

bool response_coding_supported(const response& res)
{
    const auto coding = transfer_coding_of(res, res.version());
    return coding == transfer_coding::none || coding == transfer_coding::chunked;
}

proxy_error check_host(const request& req)
{
    std::size_t hosts = 0;
    std::string_view value;
    for (const auto& field : req) {
        if (field.name() != bhttp::field::host)
            continue;
        if (++hosts > 1)
            return proxy_error::bad_request;
        value = field.value();
    }
    if (hosts == 0 && req.version() >= 11)
        return proxy_error::bad_request;
    if (!is_valid_authority(value))
        return proxy_error::bad_request;
    const std::string_view target = req.target();
    constexpr std::string_view http_scheme = "http://";
    if (target.size() >= http_scheme.size() && boost::beast::iequals(target.substr(0, http_scheme.size()), http_scheme)) {
        const std::string_view rest = target.substr(http_scheme.size());
        const std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
        // An http URI's authority must not be empty (RFC 9110 §4.2.1); userinfo is refused by the router.
        if (authority.empty() || (authority.find('@') == std::string_view::npos && !is_valid_authority(authority)))
            return proxy_error::bad_request;
    }
    return proxy_error::ok;
}

void trailer_fence::operator()(std::uint64_t size, std::string_view, boost::system::error_code& ec)
{
    if (size != 0 || blanked_)
        return;
    pending_ = true;
    ec = boost::system::errc::make_error_code(boost::system::errc::operation_in_progress); // stops this put()
}

bool trailer_fence::blank(boost::beast::flat_buffer& buffer) noexcept
{
    auto* data = static_cast<char*>(buffer.data().data());
    const std::string_view bytes(data, buffer.size());
    const std::size_t line = bytes.substr(0, 2) == "\r\n" ? 2 : 0; // the CRLF that ends the previous chunk's data
    const std::size_t line_end = bytes.find("\r\n", line);
    if (line_end == std::string_view::npos || bytes.substr(line, 1) != "0")
        return false;
    const std::size_t trailers = line_end + 2; // the trailer section: field lines, then CRLF
    if (bytes.substr(trailers, 2) != "\r\n") {
        const std::size_t blank_line = bytes.find("\r\n\r\n", trailers);
        if (blank_line == std::string_view::npos)
            return false;
        // The field lines [trailers, blank_line + 2) become "x:" + spaces + CRLF (at least "a:\r\n" was there).
        const std::size_t length = blank_line + 2 - trailers;
        if (length < 4)
            return false;
        data[trailers] = 'x';
        data[trailers + 1] = ':';
        std::memset(data + trailers + 2, ' ', length - 4);
        data[trailers + length - 2] = '\r';
        data[trailers + length - 1] = '\n';
        had_trailers_ = true;
    }
    pending_ = false;
    blanked_ = true;
    return true;
}

void trailer_fence::finish() noexcept
{
    // Once: a second call must not take a client's own last field for the placeholder.
    if (!had_trailers_ || std::exchange(finished_, true) || fields_.begin() == fields_.end())
        return;
    auto last = fields_.end();
    --last; // the placeholder: trailer fields are appended after every header field
    if (last->name_string() == "x" && last->value().empty())
        fields_.erase(last);
}

} // namespace breakerbox::http
