// The message types the proxy works with. Bodies are buffered strings: that is what makes retries and
// fallbacks possible (limits.max_request_body / max_response_body bound them).
#pragma once
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

namespace breakerbox::http {
namespace bhttp = boost::beast::http;
using request = bhttp::request<bhttp::string_body>;
using response = bhttp::response<bhttp::string_body>;
using fields = bhttp::fields;
} // namespace breakerbox::http
