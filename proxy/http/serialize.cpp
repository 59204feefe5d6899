#include "http/serialize.hpp"

#include <cstring>

namespace breakerbox::http {
namespace {

// Sized once, then copied: four appends per field each checked the capacity and the length again.
void append_fields(const fields& f, std::string& out)
{
    std::size_t size = 2;
    for (const auto& field : f)
        size += field.name_string().size() + field.value().size() + 4;
    const std::size_t start = out.size();
    out.resize(start + size);
    char* p = out.data() + start;
    auto put = [&p](const char* data, std::size_t n) {
        std::memcpy(p, data, n);
        p += n;
    };
    for (const auto& field : f) {
        put(field.name_string().data(), field.name_string().size());
        put(": ", 2);
        put(field.value().data(), field.value().size());
        put("\r\n", 2);
    }
    put("\r\n", 2);
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
