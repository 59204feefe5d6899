// What a socket's receive queue holds right now, without taking anything from it or waiting: one
// non-blocking MSG_PEEK of a byte. Tells a peer that closed (EOF or an error) from one that is quiet or
// has sent more. Used by the client watches and by the upstream pool's liveness check.
#pragma once
#include "core/asio.hpp"

namespace breakerbox {

enum class peek_result { empty, data, closed };

peek_result peek_receive_queue(tcp::socket& socket) noexcept;

} // namespace breakerbox
