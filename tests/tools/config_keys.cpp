// config-keys FILE: the keys breakerbox's loader accepts at every mapping it checks while loading FILE,
// one JSON object per line: {"file": "policies.cpp", "line": <its line of the check>, "path":
// "upstreams.u.retries", "key": "max_attempts"} (the check's file in proxy/config/ and line there). For
// test_reference_docs.py, which checks that config/reference.md documents each key under its own block.
// Exit 1 when FILE cannot be read.
#include "config/loader.hpp"

#include <nlohmann/json.hpp>

#include <fstream>
#include <iostream>
#include <sstream>

int main(int argc, char** argv)
{
    if (argc != 2) {
        std::cerr << "usage: config-keys FILE\n";
        return 1;
    }
    std::ifstream in(argv[1]);
    if (!in) {
        std::cerr << "config-keys: cannot read " << argv[1] << "\n";
        return 1;
    }
    std::stringstream text;
    text << in.rdbuf();
    for (const auto& k : breakerbox::config::checked_keys(text.str(), argv[1]))
        std::cout << nlohmann::json{{"file", k.file}, {"line", k.line}, {"path", k.path}, {"key", k.key}}.dump() << "\n";
    return 0;
}
