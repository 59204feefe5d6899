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
load_result load_string(const std::string& yaml, const std::string& file_name,
                        const env_lookup& env = process_environment());

} // namespace breakerbox::config
