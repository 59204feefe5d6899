#include "upstream/endpoint_health.hpp"

namespace breakerbox::upstream {

std::string endpoint_health::label_of(const tcp::endpoint& a)
{
    std::string out = a.address().to_string();
    if (a.address().is_v6())
        out = "[" + out + "]";
    out += ':';
    out += std::to_string(a.port());
    return out;
}

} // namespace breakerbox::upstream
