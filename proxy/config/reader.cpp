#include "config/reader.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace breakerbox::config {

namespace {

// Levenshtein distance (insertions, deletions, substitutions), for "did you mean".
std::size_t edit_distance(std::string_view a, std::string_view b)
{
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j)
        row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diagonal = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t above = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diagonal = above;
        }
    }
    return row[b.size()];
}

// The allowed key closest to a misspelt one, when it is close enough to be a typo (at most a third of
// its length, and at least 2, edits away); "" otherwise.
std::string nearest_key(std::string_view key, std::initializer_list<std::string_view> allowed)
{
    std::string best;
    std::size_t best_distance = std::max<std::size_t>(2, key.size() / 3) + 1;
    for (auto k : allowed)
        if (const auto d = edit_distance(key, k); d < best_distance) {
            best_distance = d;
            best = std::string(k);
        }
    return best;
}

std::string unknown_key_message(const std::string& key, std::initializer_list<std::string_view> allowed)
{
    std::string known;
    for (auto k : allowed)
        known += (known.empty() ? "" : ", ") + std::string(k);
    const auto nearest = nearest_key(key, allowed);
    return "unknown key \"" + key + "\"" + (nearest.empty() ? "" : " (did you mean \"" + nearest + "\"?)") +
           " (known keys: " + known + ")";
}

// checked_keys(): where the keys the loader accepts are recorded while it runs (null: not recorded).
// One load at a time per thread.
thread_local std::vector<checked_key>* t_checked_keys = nullptr;

// The check's file as checked_keys() names it: its name in proxy/config/, without the folders the
// compiler was given (they differ between checkouts and build directories).
std::string file_name(const char* path)
{
    const std::string_view p(path);
    return std::string(p.substr(p.rfind('/') + 1));
}

std::string number_text(double v)
{
    std::ostringstream os;
    os << v;
    return os.str();
}

std::string describe(nanos d)
{
    if (d % seconds(1) == 0)
        return std::to_string(d / seconds(1)) + "s";
    return std::to_string(d / millis(1)) + "ms";
}

} // namespace

void reader::fail(const YAML::Node& at, const std::string& path, const std::string& message)
{
    config_error e;
    e.file = file_;
    if (at.IsDefined()) {
        auto mark = at.Mark();
        e.line = mark.line >= 0 ? mark.line + 1 : 0;
        e.column = mark.column >= 0 ? mark.column + 1 : 0;
    }
    e.path = path;
    e.message = message;
    for (const auto& seen : errors) // an inherited setting is checked once per upstream: say it once
        if (seen.line == e.line && seen.column == e.column && seen.path == e.path && seen.message == e.message)
            return;
    errors.push_back(std::move(e));
}

bool reader::require(const YAML::Node& map, std::string_view key, const std::string& path)
{
    if (map.IsMap() && map[std::string(key)])
        return true;
    fail(map, join(path, key), "missing required key \"" + std::string(key) + "\"");
    return false;
}

bool reader::check_map(const YAML::Node& map, const std::string& path, std::initializer_list<std::string_view> allowed, int line,
                       const char* file)
{
    if (t_checked_keys)
        for (auto k : allowed)
            t_checked_keys->push_back({file_name(file), line, path, std::string(k)});
    if (!map.IsMap()) {
        fail(map, path, "expected a mapping");
        return false;
    }
    for (auto it = map.begin(); it != map.end(); ++it) {
        std::string key = it->first.Scalar();
        if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
            fail(it->first, join(path, key), unknown_key_message(key, allowed));
    }
    return true;
}

std::optional<std::string> reader::scalar(const YAML::Node& node, const std::string& path)
{
    if (!node.IsScalar()) {
        fail(node, path, "expected a scalar value");
        return std::nullopt;
    }
    std::string error;
    auto value = substitute_env(node.Scalar(), env_, error);
    if (!value)
        fail(node, path, error);
    return value;
}

std::optional<reader::scalar_field> reader::field(const YAML::Node& map, std::string_view key, const std::string& path)
{
    auto node = map[std::string(key)];
    if (!node)
        return std::nullopt;
    auto p = join(path, key);
    auto s = scalar(node, p);
    if (!s)
        return std::nullopt;
    return scalar_field{node, std::move(p), std::move(*s)};
}

void reader::read_bool(const YAML::Node& map, std::string_view key, const std::string& path, bool& out)
{
    auto f = field(map, key, path);
    if (!f)
        return;
    const auto& [node, p, s] = *f;
    if (s == "true" || s == "yes" || s == "on")
        out = true;
    else if (s == "false" || s == "no" || s == "off")
        out = false;
    else
        fail(node, p, "expected true or false, got \"" + s + "\"");
}

std::optional<std::uint64_t> reader::uint_value(const YAML::Node& map, std::string_view key, const std::string& path,
                                                std::uint64_t min, std::uint64_t max)
{
    auto f = field(map, key, path);
    if (!f)
        return std::nullopt;
    const auto& [node, p, s] = *f;
    std::uint64_t v = 0;
    bool ok = !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
    if (ok) {
        try {
            v = std::stoull(s);
        } catch (...) {
            ok = false;
        }
    }
    if (!ok || v < min || v > max) {
        fail(node, p, "expected an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "], got \"" + s + "\"");
        return std::nullopt;
    }
    return v;
}

void reader::read_percent(const YAML::Node& map, std::string_view key, const std::string& path, double& out, bool zero_allowed)
{
    auto f = field(map, key, path);
    if (!f)
        return;
    const auto& [node, p, s] = *f;
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    if (!s.empty() && end == s.c_str() + s.size() && v > 0.0 && v < 1.0) {
        fail(node, p,
             "expected a percentage (0-100), got \"" + s + "\", which looks like a ratio: write " + number_text(v * 100) +
                 " for " + number_text(v * 100) + " %, or \"" + s + "%\" if you mean " + s + " %");
        return;
    }
    read_double(map, key, path, out, 0.0, 100.0, zero_allowed ? "a percentage in [0, 100]" : "a percentage in (0, 100]",
                !zero_allowed);
}

void reader::read_double(const YAML::Node& map, std::string_view key, const std::string& path, double& out, double min,
                         double max, const std::string& expected, bool exclusive_min)
{
    auto f = field(map, key, path);
    if (!f)
        return;
    const auto& [node, p, s] = *f;
    std::string text = s;
    if (!text.empty() && text.back() == '%')
        text.pop_back();
    char* end = nullptr;
    double v = std::strtod(text.c_str(), &end);
    bool ok = !text.empty() && end == text.c_str() + text.size() && v <= max && (exclusive_min ? v > min : v >= min);
    if (!ok) {
        fail(node, p, "expected " + expected + ", got \"" + s + "\"");
        return;
    }
    out = v;
}

void reader::read_duration(const YAML::Node& map, std::string_view key, const std::string& path, nanos& out, nanos min, nanos max)
{
    auto f = field(map, key, path);
    if (!f)
        return;
    const auto& [node, p, s] = *f;
    auto d = parse_duration(s);
    if (!d) {
        fail(node, p, "expected a duration such as 250ms, 5s, 2m or 1h, got \"" + s + "\"");
        return;
    }
    if (*d < min || *d > max) {
        fail(node, p, "duration " + s + " is out of range [" + describe(min) + ", " + describe(max) + "]");
        return;
    }
    out = *d;
}

void reader::read_size(const YAML::Node& map, std::string_view key, const std::string& path, std::uint64_t& out,
                       std::uint64_t min, std::uint64_t max)
{
    auto f = field(map, key, path);
    if (!f)
        return;
    const auto& [node, p, s] = *f;
    auto v = parse_size(s);
    if (!v) {
        fail(node, p, "expected a size such as 512, 64KiB or 1MiB, got \"" + s + "\"");
        return;
    }
    if (*v < min || *v > max) {
        fail(node, p, "size " + s + " is out of range [" + std::to_string(min) + ", " + std::to_string(max) + "] bytes");
        return;
    }
    out = *v;
}

void reader::read_size_or_unlimited(const YAML::Node& map, std::string_view key, const std::string& path, std::uint64_t& out,
                                    std::uint64_t min)
{
    if (auto f = field(map, key, path); f && f->text == "unlimited") {
        out = unlimited_size;
        return;
    }
    read_size(map, key, path, out, min, 1ull << 50);
}

void reader::read_string(const YAML::Node& map, std::string_view key, const std::string& path, std::string& out)
{
    if (auto f = field(map, key, path))
        out = f->text;
}

bool reader::read_host_port(const YAML::Node& node, const std::string& path, host_port& out, bool allow_port_zero)
{
    auto s = scalar(node, path);
    if (!s)
        return false;
    auto hp = parse_host_port(*s);
    if (!hp || (hp->port == 0 && !allow_port_zero)) {
        fail(node, path,
             std::string("expected host:port with a port in [") + (allow_port_zero ? "0" : "1") + ", 65535], got \"" + *s + "\"");
        return false;
    }
    out = *hp;
    return true;
}

std::vector<std::string> reader::read_string_list(const YAML::Node& map, std::string_view key, const std::string& path)
{
    std::vector<std::string> out;
    auto node = map[std::string(key)];
    if (!node)
        return out;
    auto p = join(path, key);
    if (!node.IsSequence()) {
        fail(node, p, "expected a list");
        return out;
    }
    for (std::size_t i = 0; i < node.size(); ++i)
        if (auto s = scalar(node[i], p + "[" + std::to_string(i) + "]"))
            out.push_back(*s);
    return out;
}

std::optional<std::vector<unsigned>> reader::read_status_list(const YAML::Node& map, std::string_view key,
                                                              const std::string& path)
{
    auto node = map[std::string(key)];
    if (!node)
        return std::nullopt;
    auto p = join(path, key);
    std::vector<unsigned> out;
    if (!node.IsSequence()) {
        fail(node, p, "expected a list of status codes or ranges such as 500-599");
        return out;
    }
    for (std::size_t i = 0; i < node.size(); ++i) {
        auto ip = p + "[" + std::to_string(i) + "]";
        auto s = scalar(node[i], ip);
        if (!s)
            continue;
        unsigned lo = 0, hi = 0;
        char dash = 0;
        std::istringstream is(*s);
        is >> lo;
        if (is >> dash) {
            is >> hi;
        } else {
            hi = lo;
        }
        if (!is.eof() || (dash && dash != '-') || lo < 100 || hi > 599 || lo > hi) {
            fail(node[i], ip, "expected a status code (100-599) or a range such as 500-599, got \"" + *s + "\"");
            continue;
        }
        for (unsigned c = lo; c <= hi; ++c)
            out.push_back(c);
    }
    return out;
}

key_recording::key_recording(std::vector<checked_key>& out) { t_checked_keys = &out; }

key_recording::~key_recording() { t_checked_keys = nullptr; }

std::string config_path(const std::string& name, const std::string& config_dir)
{
    return (!name.empty() && name.front() == '/') ? name : config_dir + "/" + name;
}

std::optional<std::string> read_text_file(const std::string& name, const std::string& config_dir, std::string& error)
{
    const std::string full = config_path(name, config_dir);
    std::ifstream in(full, std::ios::binary);
    if (!in) {
        error = "cannot read " + full + ": " + std::strerror(errno);
        return std::nullopt;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string lower(std::string s)
{
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

} // namespace breakerbox::config
