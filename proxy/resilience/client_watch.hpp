// Notices a client that goes away while its request is with the upstream, and then cancels the
// upstream exchange (the upstream is not kept busy for nobody, and its outcome is not recorded).
// One per downstream session, reused for every request. Worker-owned, like the session.
//
// Watching a socket costs a system call (Asio registers the wait with epoll_ctl), which the profile
// showed on every request. So a watch only enters its worker's registry when the exchange starts (two
// pointer updates), and the worker's sweep, every 100 ms, starts the actual socket wait for exchanges
// that have been running longer than that. Fast requests never pay for it.
//
// The same sweep ends exchanges whose upstream's circuit has opened since they started, when the
// upstream's circuit_breaker.cancel_in_flight says so: they are answered as if they had arrived after
// it opened, instead of waiting out a timeout against an upstream the breaker has given up on.
//
// With slow_calls.in_flight the sweep also records an exchange as slow once it has run that long
// (through its breaker permit), so that a hung upstream trips the slow-call rules within
// slow_calls.duration (+ up to 100 ms) instead of after the request timeout.
//
// NOTE: bytes the client pipelines meanwhile make a close undetectable without reading them; then the
// watch simply stops (the exchange finishes under its own deadline, as before).
#pragma once
#include "core/asio.hpp"
#include "core/clock.hpp"
#include "core/deadline_stream.hpp"
#include "resilience/breaker_permit.hpp"
#include "resilience/circuit_breaker.hpp"

namespace breakerbox::resilience {

class client_watch;

// The watches of one worker's exchanges in progress (an intrusive list: no allocation). Worker-owned.
class watch_registry {
public:
    // Records exchanges that have become slow, starts the socket wait of every watch registered at
    // least `min_age` ago, and cancels the exchanges whose circuit has opened meanwhile.
    void sweep(nanos now, nanos min_age);

private:
    friend class client_watch;
    client_watch* head_ = nullptr;
};

class client_watch {
public:
    client_watch(tcp::socket& client, watch_registry& registry) : client_(client), registry_(registry) { }
    ~client_watch() { disarm(); }
    client_watch(const client_watch&) = delete;
    client_watch& operator=(const client_watch&) = delete;

    // Starts watching for this exchange: `upstream` is cancelled if the client closes before disarm(),
    // or — with `breaker` — if that circuit has opened since its trip count was `trips` (read before
    // the call was admitted, so that a trip in between is not missed). With `slow_permit`, the sweep
    // records the call as slow through it once it has run that long.
    void arm(deadline_stream& upstream, nanos now, const resilience::circuit_breaker* breaker = nullptr, std::uint64_t trips = 0,
             resilience::breaker_permit* slow_permit = nullptr);
    // Stops watching (a pending socket wait completes later as aborted and touches nothing).
    void disarm() noexcept;
    bool client_gone() const noexcept { return gone_; }
    bool circuit_opened() const noexcept { return circuit_opened_; }

private:
    friend class watch_registry;
    void start_socket_wait();
    void cancel_exchange() noexcept;
    void unlink() noexcept;

    tcp::socket& client_;
    watch_registry& registry_;
    deadline_stream* upstream_ = nullptr;
    nanos armed_at_ = 0;
    const resilience::circuit_breaker* breaker_ = nullptr;
    std::uint64_t trips_at_arm_ = 0;
    resilience::breaker_permit* slow_permit_ = nullptr;
    bool gone_ = false;
    bool circuit_opened_ = false;
    bool waiting_ = false;
    bool linked_ = false;
    client_watch* prev_ = nullptr;
    client_watch* next_ = nullptr;
};

} // namespace breakerbox::resilience
