// Serialisation of a message head (start line and fields) into one contiguous buffer, so that a
// message goes out as one write of two buffers (head, body). Beast's serializer hands the kernel one
// iovec per name, separator, value and CRLF; the profile showed that iteration and the many small
// iovecs as the largest user-space cost of a proxied request.
#pragma once
#include "http/message.hpp"

#include <string>

namespace breakerbox::http {

// Replaces `out` with the head of the message (reusing its capacity).
void serialize_head(const response& res, std::string& out);
void serialize_head(const request& req, std::string& out);

} // namespace breakerbox::http
