// Loads and validates the YAML configuration. Every problem is reported (not just the first), each
// with file, line, column and key path, and nothing starts unless the list is empty.
#pragma once
#include "config/config.hpp"
#include "config/units.hpp"

#include <optional>
#include <string>
#include <vector>

namespace breakerbox::config {

struct config_error {
    std::string file;
    int line = 0;   // 1-based; 0 when unknown
    int column = 0; // 1-based
    std::string path;
    std::string message;
    // "file:line:column: path: message"
    std::string text() const;
};

struct load_result {
    std::optional<config> cfg;
    std::vector<config_error> errors;
};

load_result load_file(const std::string& path, const env_lookup& env = process_environment());
load_result load_string(const std::string& yaml, const std::string& file_name, const env_lookup& env = process_environment());

// Test support (tests/integration/test_reference_docs.py, through tests/tools/config_keys.cpp): every key
// the loader accepts at each mapping it checked while loading `yaml` — the check's place in the loader
// (its file in proxy/config/, "policies.cpp", and line there), the mapping's path as errors give it
// ("upstreams.svc.circuit_breaker", "listeners[0]", "" for the top level), the key. Errors in `yaml` do
// not matter; only the mappings present are checked.
struct checked_key {
    std::string file;
    int line;
    std::string path;
    std::string key;
};
std::vector<checked_key> checked_keys(const std::string& yaml, const std::string& file_name);

} // namespace breakerbox::config
