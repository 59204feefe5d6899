// The message types the proxy works with. A buffered body is a string: that is what makes retries and
// fallbacks possible (limits.request_buffer / response_buffer bound it); a longer one streams, and the
// string then holds one piece at a time (docs/streaming.md).
#pragma once
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

namespace breakerbox::http {
namespace bhttp = boost::beast::http;
using request = bhttp::request<bhttp::string_body>;
using response = bhttp::response<bhttp::string_body>;
using fields = bhttp::fields;
} // namespace breakerbox::http
