// An upstream's tls block: its keys as written (read_tls, with the other policies), then the trust,
// certificate and key files it names, read and checked (resolve_tls, once the endpoints are known).
#include "config/sections.hpp"
#include "config/tls_material.hpp"

#include <utility>

namespace breakerbox::config {

void read_tls(reader& r, const YAML::Node& node, const std::string& path, tls_config& t)
{
    if (!r.check_map(
            node, path,
            {"enabled", "verify", "ca_file", "server_name", "client_certificate", "client_key", "min_version", "session_reuse"}))
        return;
    t.enabled = true; // the block's presence turns it on, unless it says enabled: false
    r.read_bool(node, "enabled", path, t.enabled);
    r.read_bool(node, "verify", path, t.verify);
    r.read_enum(node, "min_version", path, t.min_version);
    r.read_bool(node, "session_reuse", path, t.session_reuse);
    // Names and files: checked (and the files read) by resolve_tls once the endpoints are known.
    using text_field = std::string tls_config::*;
    const std::pair<const char*, text_field> texts[]{{"ca_file", &tls_config::ca_file},
                                                     {"server_name", &tls_config::server_name},
                                                     {"client_certificate", &tls_config::client_certificate},
                                                     {"client_key", &tls_config::client_key}};
    for (const auto& [key, field] : texts)
        r.read_string(node, key, path, t.*field);
}

// The TLS material an upstream with tls.enabled names, read and checked now (at start and at every
// reload: rotation without restart), and the name it verifies. Errors point at the key that named the
// file (in the upstream's tls block, or the upstream when the block came from defaults).
void resolve_tls(reader& r, const YAML::Node& node, const std::string& path, upstream_config& u, const std::string& config_dir,
                 const YAML::Node& defaults_tls)
{
    auto& t = u.tls;
    if (!t.enabled)
        return;
    // The block's own place: the upstream's tls block, else the defaults' one it inherited (reported
    // there, once: the reader drops repeated errors).
    const bool own = static_cast<bool>(node["tls"]);
    const YAML::Node block = own ? node["tls"] : (defaults_tls ? defaults_tls : node);
    const std::string p = own || !defaults_tls ? path + ".tls" : "defaults.tls";
    auto at = [&](const char* key) { return block[key] ? block[key] : block; };
    auto load = [&](const std::string& file, const char* key, std::string& out) {
        std::string error;
        if (auto text = read_text_file(file, config_dir, error))
            out = std::move(*text);
        else
            r.fail(at(key), p + "." + key, error);
        if (error.empty() && out.empty()) // (a rotation caught between truncate and write, say)
            r.fail(at(key), p + "." + key, file + " is empty");
        return !out.empty();
    };
    if (!t.ca_file.empty()) {
        if (load(t.ca_file, "ca_file", t.ca_pem))
            if (auto bad = check_certificates(t.ca_pem); !bad.empty())
                r.fail(at("ca_file"), p + ".ca_file", t.ca_file + ": " + bad);
    } else if (t.verify) {
        std::string error;
        const auto system = system_trust_file();
        auto text = read_text_file(system, "/", error);
        if (!text || !check_certificates(*text).empty())
            r.fail(block, p,
                   "no trust source: tls.ca_file is not set and the system bundle " + system +
                       " has no readable certificate (install ca-certificates, or set tls.ca_file)");
        else
            t.ca_pem = std::move(*text);
    }
    if (t.client_certificate.empty() != t.client_key.empty())
        r.fail(block, p, "mutual TLS needs both client_certificate and client_key");
    else if (!t.client_certificate.empty() && load(t.client_certificate, "client_certificate", t.certificate_pem) &&
             load(t.client_key, "client_key", t.key_pem))
        if (auto bad = check_certificate_and_key(t.certificate_pem, t.key_pem); !bad.empty()) {
            const std::string key = bad.substr(0, bad.find(':')); // client_certificate or client_key
            r.fail(at(key.c_str()), p + "." + key, bad.substr(bad.find(':') + 2));
        }
    if (t.server_name.empty() && !u.endpoints.empty()) {
        t.server_name = u.endpoints.front().host;
        for (const auto& e : u.endpoints)
            if (e.host != t.server_name)
                r.fail(block, p + ".server_name", "the endpoints have different hosts: set the name their certificates carry");
    }
    t.server_name_is_ip = is_ip_literal(t.server_name);
}

} // namespace breakerbox::config
