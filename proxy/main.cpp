// breakerbox: a sidecar HTTP reverse proxy with circuit breakers, bulkheads, retries and fallbacks.
#include "app.hpp"
#include "config/loader.hpp"
#include "core/memory_release.hpp"
#include "version_report.hpp"

#include <CLI/CLI.hpp>

#include <iostream>

#if defined(BREAKERBOX_WITH_MIMALLOC)
#include <mimalloc.h>
#endif

int main(int argc, char** argv)
{
    CLI::App cli{"breakerbox: a sidecar HTTP reverse proxy that stops cascading failures"};
    std::string config_path = "/etc/breakerbox/breakerbox.yaml";
    std::string check_path;
    bool version = false;
    cli.add_option("-c,--config", config_path, "configuration file (YAML)")->capture_default_str();
    cli.add_option("--check-config", check_path, "validate FILE, print every error, exit 0 when valid and 1 otherwise");
    cli.add_flag("--version", version, "print the version, commit, build type and library versions, and exit");
    cli.footer("\nSignals:\n"
               "  SIGHUP           reload the configuration file (a file with errors is rejected; the old one keeps serving)\n"
               "  SIGTERM, SIGINT  drain: stop accepting, finish requests in flight within limits.drain_timeout, exit 0\n"
               "\nEnvironment:\n"
               "  BREAKERBOX_ADMIN_TOKEN  the admin API's bearer token when the file sets none (admin.token)\n"
               "  ${NAME} in the file     replaced by that environment variable (an unset one is an error)\n"
               "\nExit status: 0 on success (and after a drain), 1 on any error.\n"
               "Docs: README.md, config/reference.md (every key), docs/admin-api.md; on the admin listener,\n"
               "/dashboard is the live view and an unknown path lists the endpoints.");
    try {
        cli.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // --help prints and exits 0; a usage error prints its message and exits 1, like every other
        // failure (the README's contract: 0 or 1), not CLI11's own codes (106, 109, 114 …).
        return cli.exit(e) == 0 ? 0 : 1;
    }

    if (version) {
#if defined(BREAKERBOX_WITH_MIMALLOC)
        const int mi = mi_version(); // e.g. 206 for 2.0.6
        const std::string allocator =
            "mimalloc " + std::to_string(mi / 100) + "." + std::to_string(mi / 10 % 10) + "." + std::to_string(mi % 10);
#else
        const std::string allocator = "the C library's malloc";
#endif
        std::cout << breakerbox::version_report(allocator);
        return 0;
    }
    const std::string& path = check_path.empty() ? config_path : check_path;
    auto loaded = breakerbox::config::load_file(path);
    for (const auto& e : loaded.errors)
        std::cerr << e.text() << "\n";
    if (!loaded.cfg) {
        std::cerr << path << ": " << loaded.errors.size() << " error(s); breakerbox did not start\n";
        return 1;
    }
    if (!check_path.empty()) {
        std::cout << path << ": configuration OK\n";
        return 0;
    }
#if defined(BREAKERBOX_WITH_MIMALLOC)
    breakerbox::install_memory_release([] { mi_collect(true); });
#endif
    return breakerbox::run_proxy(std::move(*loaded.cfg));
}
