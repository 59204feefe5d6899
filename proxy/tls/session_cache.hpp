// The TLS sessions one worker keeps for one endpoint of one configuration generation, so that a new
// connection resumes instead of making a full handshake (RFC 8446 §2.2; TLS 1.2 tickets, RFC 5077).
// Worker-owned: lives in the endpoint's slot (upstream/worker_upstream.hpp); OpenSSL's new-session
// callback fills it on the thread running the handshake or read — the owning worker's. Never wider than
// one generation: resumption skips certificate verification, so a session must not outlive the trust,
// name and verify settings it was verified under.
#pragma once
#include "core/thread_owner.hpp"

#include <vector>

struct ssl_st;
struct ssl_session_st;

namespace breakerbox::tls {

class session_cache {
public:
    session_cache() = default;
    ~session_cache();
    session_cache(const session_cache&) = delete;
    session_cache& operator=(const session_cache&) = delete;
    session_cache(session_cache&& other) noexcept : sessions_(std::move(other.sessions_)) { }

    // Takes ownership of one reference to `session` (from the new-session callback); keeps the newest few.
    void put(ssl_session_st* session) noexcept;
    // Offers the newest still valid session to `ssl` before its handshake. TLS 1.3 tickets are meant for
    // one use (RFC 8446 §C.4): one is given away when others remain; the last is kept (servers accept it
    // again, or fall back to a full handshake by themselves).
    void offer(ssl_st* ssl) noexcept;
    std::size_t size() const noexcept { return sessions_.size(); }

private:
    std::vector<ssl_session_st*> sessions_; // newest last
    thread_owner owner_;                    // the worker (or the prober's main thread) that uses it: claimed by the first use
};

} // namespace breakerbox::tls
