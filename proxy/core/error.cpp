#include "core/error.hpp"

#include <string>

namespace breakerbox {
namespace {

struct reason_info {
    std::string_view token;
    unsigned status;
    std::string_view message;
};

constexpr reason_info info_of(proxy_error e) noexcept
{
    switch (e) {
#define BREAKERBOX_PROXY_ERROR_INFO(name, status, message) \
    case proxy_error::name: return {#name, status, message};
        BREAKERBOX_PROXY_ERRORS(BREAKERBOX_PROXY_ERROR_INFO)
#undef BREAKERBOX_PROXY_ERROR_INFO
    }
    return {"unknown", 500, "unknown proxy error"};
}

class proxy_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "breakerbox.proxy"; }
    std::string message(int ev) const override
    {
        return std::string(info_of(static_cast<proxy_error>(ev)).message);
    }
};

} // namespace

const std::error_category& proxy_category() noexcept
{
    static const proxy_category_impl category;
    return category;
}

std::string_view token(proxy_error e) noexcept { return info_of(e).token; }
unsigned http_status(proxy_error e) noexcept { return info_of(e).status; }

} // namespace breakerbox
