#include "version_report.hpp"

#include <boost/version.hpp>
#include <build_info.hpp>
#include <hiredis/hiredis.h>
#include <nlohmann/json.hpp>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>
#include <sqlite3.h>

#include <string>

namespace breakerbox {

std::string version_report(std::string_view allocator)
{
    std::string r = std::string("breakerbox ") + build::version + "\n";
    r += std::string("commit: ") + build::commit + "\n";
#if defined(__clang__)
    r += std::string("build: ") + build::build_type + ", C++20, clang " __clang_version__ "\n";
#else
    r += std::string("build: ") + build::build_type + ", C++20, g++ " __VERSION__ "\n";
#endif
    r += "boost: " + std::to_string(BOOST_VERSION / 100000) + "." + std::to_string(BOOST_VERSION / 100 % 1000) + "." +
         std::to_string(BOOST_VERSION % 100) + " (Asio, Beast)\n";
    r += std::string("openssl: built ") + OPENSSL_VERSION_TEXT + "; loaded " + OpenSSL_version(OPENSSL_VERSION) + "\n";
    r += std::string("sqlite: built ") + SQLITE_VERSION + "; loaded " + sqlite3_libversion() + "\n";
    r += "hiredis: " + std::to_string(HIREDIS_MAJOR) + "." + std::to_string(HIREDIS_MINOR) + "." + std::to_string(HIREDIS_PATCH) +
         "\n";
    r += "nlohmann_json: " + std::to_string(NLOHMANN_JSON_VERSION_MAJOR) + "." + std::to_string(NLOHMANN_JSON_VERSION_MINOR) +
         "." + std::to_string(NLOHMANN_JSON_VERSION_PATCH) + "\n";
    r += "allocator: " + std::string(allocator) + "\n";
    return r;
}

} // namespace breakerbox
