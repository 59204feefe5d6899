#include "config/tls_material.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <arpa/inet.h>

#include <cstdlib>
#include <memory>

namespace breakerbox::config {
namespace {

struct bio_free {
    void operator()(BIO* b) const { BIO_free(b); }
};
struct x509_free {
    void operator()(X509* x) const { X509_free(x); }
};
struct pkey_free {
    void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using bio_ptr = std::unique_ptr<BIO, bio_free>;

bio_ptr memory_bio(const std::string& text) { return bio_ptr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size()))); }

// The reason of the last OpenSSL error, and the error queue cleared.
std::string openssl_reason(const char* fallback)
{
    const unsigned long e = ERR_peek_last_error();
    ERR_clear_error();
    if (e == 0)
        return fallback;
    const char* reason = ERR_reason_error_string(e);
    return reason ? reason : fallback;
}

// A password callback that never asks (no terminal prompt for an encrypted key): such a key fails.
int no_password(char*, int, int, void*) { return 0; }

} // namespace

std::string check_certificates(const std::string& pem)
{
    auto bio = memory_bio(pem);
    int count = 0;
    for (;;) {
        std::unique_ptr<X509, x509_free> cert(PEM_read_bio_X509(bio.get(), nullptr, no_password, nullptr));
        if (!cert)
            break;
        ++count;
    }
    const unsigned long last = ERR_peek_last_error();
    // The loop ends with "no start line" at the end of the text: that one is expected.
    if (last != 0 && ERR_GET_REASON(last) != PEM_R_NO_START_LINE)
        return "not a readable PEM certificate: " + openssl_reason("unknown error");
    ERR_clear_error();
    if (count == 0)
        return "no PEM certificate in it";
    return {};
}

std::string check_certificate_and_key(const std::string& certificate_pem, const std::string& key_pem)
{
    if (auto bad = check_certificates(certificate_pem); !bad.empty())
        return "client_certificate: " + bad;
    auto cert_bio = memory_bio(certificate_pem);
    std::unique_ptr<X509, x509_free> cert(PEM_read_bio_X509(cert_bio.get(), nullptr, no_password, nullptr));
    auto key_bio = memory_bio(key_pem);
    std::unique_ptr<EVP_PKEY, pkey_free> key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, no_password, nullptr));
    if (!key)
        return "client_key: not a readable unencrypted PEM private key: " + openssl_reason("unknown error");
    if (X509_check_private_key(cert.get(), key.get()) != 1)
        return "client_key: does not match client_certificate (" + openssl_reason("key values mismatch") + ")";
    return {};
}

std::string system_trust_file()
{
    if (const char* env = std::getenv(X509_get_default_cert_file_env()); env && *env)
        return env;
    return X509_get_default_cert_file();
}

bool is_ip_literal(const std::string& name)
{
    unsigned char buffer[16];
    return inet_pton(AF_INET, name.c_str(), buffer) == 1 || inet_pton(AF_INET6, name.c_str(), buffer) == 1;
}

} // namespace breakerbox::config
