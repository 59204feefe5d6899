#include "http/serialize.hpp"

namespace breakerbox::http {
namespace {

void append_fields(const fields& f, std::string& out)
{
    for (const auto& field : f) {
        out.append(field.name_string());
        out.append(": ", 2);
        out.append(field.value());
        out.append("\r\n", 2);
    }
    out.append("\r\n", 2);
}

void append_version(unsigned version, std::string& out)
{
    out.append(version == 10 ? "HTTP/1.0" : "HTTP/1.1", 8);
}

} // namespace

void serialize_head(const response& res, std::string& out)
{
    out.clear();
    append_version(res.version(), out);
    out.push_back(' ');
    const unsigned status = res.result_int();
    const char digits[3] = {static_cast<char>('0' + status / 100 % 10), static_cast<char>('0' + status / 10 % 10),
                            static_cast<char>('0' + status % 10)};
    out.append(digits, 3);
    out.push_back(' ');
    auto reason = res.reason();
    out.append(reason.empty() ? bhttp::obsolete_reason(res.result()) : reason);
    out.append("\r\n", 2);
    append_fields(res.base(), out);
}

void serialize_head(const request& req, std::string& out)
{
    out.clear();
    out.append(req.method_string());
    out.push_back(' ');
    out.append(req.target());
    out.push_back(' ');
    append_version(req.version(), out);
    out.append("\r\n", 2);
    append_fields(req.base(), out);
}

} // namespace breakerbox::http
