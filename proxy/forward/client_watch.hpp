// Notices a client that goes away while its request is with the upstream, and then cancels the
// upstream exchange (the upstream is not kept busy for nobody, and its outcome is not recorded).
// One per downstream session, reused for every request: arming costs one reactor registration on the
// client socket and no allocation. Worker-owned, like the session that owns it.
//
// NOTE: bytes the client pipelines meanwhile make a close undetectable without reading them; then the
// watch simply stops (the exchange finishes under its own deadline, as before).
#pragma once
#include "core/asio.hpp"

namespace breakerbox::forward {

class client_watch {
public:
    explicit client_watch(tcp::socket& client) : client_(client) {}

    // Starts watching; `upstream` is cancelled if the client closes before disarm().
    void arm(beast::tcp_stream& upstream);
    // Stops watching (the pending wait completes later as aborted and touches nothing).
    void disarm() noexcept;
    bool client_gone() const noexcept { return gone_; }

private:
    tcp::socket& client_;
    beast::tcp_stream* upstream_ = nullptr;
    bool gone_ = false;
    bool waiting_ = false;
};

} // namespace breakerbox::forward
