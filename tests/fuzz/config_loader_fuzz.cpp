// libFuzzer: any bytes as a configuration file. The loader must never crash or throw; it either
// returns a configuration or located errors.
#include "config/loader.hpp"

#include <cstddef>
#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const breakerbox::config::env_lookup env = [](const std::string& name) -> std::optional<std::string> {
        if (name == "SET")
            return std::string("127.0.0.1:9");
        return std::nullopt;
    };
    auto result = breakerbox::config::load_string(std::string(reinterpret_cast<const char*>(data), size), "fuzz.yaml", env);
    if (!result.cfg && result.errors.empty())
        __builtin_trap(); // a rejected file must say why
    for (const auto& e : result.errors)
        (void)e.text();
    return 0;
}
