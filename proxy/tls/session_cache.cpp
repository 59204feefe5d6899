#include "tls/session_cache.hpp"

#include <openssl/ssl.h>

#include <ctime>

namespace breakerbox::tls {
namespace {

constexpr std::size_t max_sessions = 4;

bool still_valid(SSL_SESSION* s, std::time_t now)
{
    return SSL_SESSION_is_resumable(s) && SSL_SESSION_get_time(s) + SSL_SESSION_get_timeout(s) > now;
}

} // namespace

session_cache::~session_cache()
{
    for (auto* s : sessions_)
        SSL_SESSION_free(s);
}

void session_cache::put(ssl_session_st* session) noexcept
{
    owner_.claim("session_cache::put");
    sessions_.push_back(session);
    if (sessions_.size() > max_sessions) {
        SSL_SESSION_free(sessions_.front());
        sessions_.erase(sessions_.begin());
    }
}

void session_cache::offer(ssl_st* ssl) noexcept
{
    owner_.claim("session_cache::offer");
    const std::time_t now = std::time(nullptr);
    while (!sessions_.empty() && !still_valid(sessions_.back(), now)) {
        SSL_SESSION_free(sessions_.back());
        sessions_.pop_back();
    }
    if (sessions_.empty())
        return;
    SSL_set_session(ssl, sessions_.back()); // takes its own reference
    if (sessions_.size() > 1) {
        SSL_SESSION_free(sessions_.back());
        sessions_.pop_back();
    }
}

} // namespace breakerbox::tls
