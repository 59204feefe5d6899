// Internal to the loader (proxy/config/*.cpp): the YAML reading primitives every section reader uses.
// A `reader` walks one load's tree and collects errors located by file, line, column and key path
// instead of stopping at the first; check_map refuses the keys a mapping does not know, suggesting the
// nearest known one. Start-up only; one reader per load, on the loading thread.
#pragma once
#include "config/loader.hpp"

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace breakerbox::config {

inline constexpr nanos hour = seconds(3600);

class reader {
public:
    reader(std::string file, const env_lookup& env) : file_(std::move(file)), env_(env) { }

    std::vector<config_error> errors;

    void fail(const YAML::Node& at, const std::string& path, const std::string& message);

    // A required key that is absent: reported at the mapping that should hold it, by name.
    bool require(const YAML::Node& map, std::string_view key, const std::string& path);

    // Reports keys of `map` that are not in `allowed`. Returns false if `map` is not a mapping. The
    // defaults are the caller's file and line (gcc and clang; std::source_location is not in clang 14):
    // checked_keys() names each check by both, so that checks in different files never share a name.
    bool check_map(const YAML::Node& map, const std::string& path, std::initializer_list<std::string_view> allowed,
                   int line = __builtin_LINE(), const char* file = __builtin_FILE());

    static std::string join(const std::string& path, std::string_view key)
    {
        return path.empty() ? std::string(key) : path + "." + std::string(key);
    }

    // A scalar with ${VAR} substitution applied; nullopt (and an error) otherwise.
    std::optional<std::string> scalar(const YAML::Node& node, const std::string& path);

    // A present scalar field: its node, its dotted path (for errors) and its text. nullopt when the key
    // is absent (the default stays) or is not a scalar (reported). Every read_* starts with it.
    struct scalar_field {
        YAML::Node node;
        std::string path;
        std::string text;
    };
    std::optional<scalar_field> field(const YAML::Node& map, std::string_view key, const std::string& path);

    void read_bool(const YAML::Node& map, std::string_view key, const std::string& path, bool& out);

    template <class Int>
    void read_uint(const YAML::Node& map, std::string_view key, const std::string& path, Int& out, std::uint64_t min,
                   std::uint64_t max)
    {
        if (auto v = uint_value(map, key, path, min, max))
            out = static_cast<Int>(*v);
    }

    // A percentage, 0–100. A bare number strictly between 0 and 1 is refused as ambiguous: it is almost
    // always a ratio written where a percentage is meant (0.5 for 50 %), which would otherwise be taken
    // silently as half a percent. "0.5%" (with the sign) says half a percent on purpose.
    void read_percent(const YAML::Node& map, std::string_view key, const std::string& path, double& out,
                      bool zero_allowed = false);

    void read_double(const YAML::Node& map, std::string_view key, const std::string& path, double& out, double min, double max,
                     const std::string& expected, bool exclusive_min = false);

    void read_duration(const YAML::Node& map, std::string_view key, const std::string& path, nanos& out, nanos min, nanos max);

    void read_size(const YAML::Node& map, std::string_view key, const std::string& path, std::uint64_t& out, std::uint64_t min,
                   std::uint64_t max);

    // A size, or `unlimited` (config::unlimited_size).
    void read_size_or_unlimited(const YAML::Node& map, std::string_view key, const std::string& path, std::uint64_t& out,
                                std::uint64_t min);

    // A value named in E's table (core/enum_names.hpp): the one spelling the docs, /health/circuits and
    // /metrics use too.
    template <class E>
    void read_enum(const YAML::Node& map, std::string_view key, const std::string& path, E& out)
    {
        if (auto f = field(map, key, path))
            if (auto v = enum_value<E>(f->node, f->path, f->text))
                out = *v;
    }
    template <class E>
    std::optional<E> enum_value(const YAML::Node& node, const std::string& path, const std::string& text)
    {
        auto v = parse_name<E>(text);
        if (!v)
            fail(node, path, "expected " + names_list<E>() + ", got \"" + text + "\"");
        return v;
    }

    void read_string(const YAML::Node& map, std::string_view key, const std::string& path, std::string& out);

    // Listening addresses may use port 0 (an ephemeral port, reported in the "listening" log line).
    bool read_host_port(const YAML::Node& node, const std::string& path, host_port& out, bool allow_port_zero = false);

    std::vector<std::string> read_string_list(const YAML::Node& map, std::string_view key, const std::string& path);

    std::optional<std::vector<unsigned>> read_status_list(const YAML::Node& map, std::string_view key, const std::string& path);

    std::optional<std::string> env(const std::string& name) const { return env_(name); }

private:
    // read_uint's work, in one place for every integer type: the value, or nullopt (reported) when the
    // key is present but not an integer in [min, max].
    std::optional<std::uint64_t> uint_value(const YAML::Node& map, std::string_view key, const std::string& path,
                                            std::uint64_t min, std::uint64_t max);

    std::string file_;
    const env_lookup& env_;
};

// While one lives, every reader's check_map on this thread records the keys it accepts into `out`
// (checked_keys()). One at a time per thread.
class key_recording {
public:
    explicit key_recording(std::vector<checked_key>& out);
    ~key_recording();
    key_recording(const key_recording&) = delete;
    key_recording& operator=(const key_recording&) = delete;
};

// A file named in the configuration, as opened: relative names are relative to the configuration
// file's folder.
std::string config_path(const std::string& name, const std::string& config_dir);

// The text of a file named in the configuration (config_path); nullopt with the reason in `error` when
// it cannot be read.
std::optional<std::string> read_text_file(const std::string& name, const std::string& config_dir, std::string& error);

std::string lower(std::string s);

} // namespace breakerbox::config
