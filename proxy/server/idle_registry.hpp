// The keep-alive connections of one worker that are waiting for their next request. Worker-owned.
//
// Two uses: drain (cancel every idle wait so those connections close at once) and parking. A pending
// Asio read must own its buffer, so every idle connection held its 2 KiB read buffer (and the capacity
// of its last response head) for as long as it stayed idle. Once a second the worker's sweep asks the
// connections idle since the previous sweep to park: their read is cancelled, they give those buffers
// back and wait for readability without one. The wait costs an epoll_ctl (Asio re-arms the descriptor
// for a wait), which is why a connection parks only after a second of silence and not after every
// request; the re-arm also reports data that arrived meanwhile, so nothing can be missed.
//
// An intrusive list (Boost.Intrusive, auto-unlinking), so that marking a connection idle — once per
// request — allocates nothing.
#pragma once
#include "core/deadline_stream.hpp"

#include <boost/intrusive/list.hpp>

#include <cstddef>
#include <cstdint>

namespace breakerbox::server {

using idle_link = boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;

// Registers a connection as idle for one wait (RAII: it leaves the registry when destroyed). Owned by
// the session's coroutine frame.
class idle_mark : public idle_link {
public:
    idle_mark(class idle_registry& registry, deadline_stream& stream) noexcept;
    idle_mark(const idle_mark&) = delete;
    idle_mark& operator=(const idle_mark&) = delete;

    // The read was cancelled to park the connection (not by drain or the idle timeout).
    bool park_requested() const noexcept { return park_requested_; }

private:
    friend class idle_registry;
    deadline_stream& stream_;
    std::uint64_t since_;
    bool park_requested_ = false;
};

class idle_registry {
public:
    // Drain: cancels every idle wait; `closing` tells the sessions to close rather than wait again.
    void close_all() noexcept
    {
        closing = true;
        for (auto& m : marks_)
            cancel_wait(m);
    }
    // Once a second: asks the connections idle since before the previous call to park (cancels their
    // read). Returns how many were asked.
    std::size_t park_long_idle() noexcept
    {
        ++sweeps_;
        std::size_t asked = 0;
        for (auto& m : marks_) {
            if (m.park_requested_ || sweeps_ - m.since_ < 2)
                continue; // asked already, or idle for less than a whole sweep interval
            m.park_requested_ = true;
            ++asked;
            cancel_wait(m);
        }
        return asked;
    }

    bool closing = false;

private:
    friend class idle_mark;
    static void cancel_wait(idle_mark& m) noexcept
    {
        error_code ignored; // a socket already closed has nothing to cancel
        m.stream_.socket().cancel(ignored);
    }

    boost::intrusive::list<idle_mark, boost::intrusive::constant_time_size<false>> marks_;
    std::uint64_t sweeps_ = 0;
};

inline idle_mark::idle_mark(idle_registry& registry, deadline_stream& stream) noexcept : stream_(stream), since_(registry.sweeps_)
{
    registry.marks_.push_front(*this);
}

} // namespace breakerbox::server
