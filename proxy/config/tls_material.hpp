// Checks of TLS material at load time (libcrypto only, no context): what is wrong with a PEM file is
// reported with the file, line and key that named it, and a reload with broken material is rejected
// while the previous configuration keeps serving. Each returns "" when the material is good, else the
// reason (OpenSSL's words).
#pragma once
#include <string>

namespace breakerbox::config {

// At least one certificate, every PEM block in it parseable.
std::string check_certificates(const std::string& pem);
// A certificate chain and an unencrypted private key that belongs to its first certificate.
std::string check_certificate_and_key(const std::string& certificate_pem, const std::string& key_pem);
// The system trust bundle ($SSL_CERT_FILE, else OpenSSL's default file, e.g. /usr/lib/ssl/cert.pem):
// its path, and its text ("" when it cannot be read).
std::string system_trust_file();
// Whether `name` is an IPv4 or IPv6 literal.
bool is_ip_literal(const std::string& name);

} // namespace breakerbox::config
