// HTTP-date (RFC 9110 §5.6.7) and Retry-After (RFC 9110 §10.2.3) parsing. Pure functions: the current
// time is passed in (seconds since the Unix epoch, UTC), never read here.
#pragma once
#include "core/clock.hpp"

#include <cstdint>
#include <optional>
#include <string_view>

namespace breakerbox::http {

// Seconds since the Unix epoch for an HTTP-date in any of the three formats a recipient must accept:
// IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), the obsolete RFC 850 form ("Sunday, 06-Nov-94
// 08:49:37 GMT", whose two-digit year is placed at most 50 years after `now_unix`) and asctime ("Sun Nov
// 6 08:49:37 1994"). nullopt: not an HTTP-date (wrong shape, a field out of range, a day the month lacks).
std::optional<std::int64_t> parse_http_date(std::string_view text, std::int64_t now_unix);

// How long a Retry-After value asks to wait, from `now_unix`: delay-seconds (1*DIGIT) as given, an
// HTTP-date as the time until then, and zero for a date in the past (it means "now"). nullopt for an
// invalid value (a sign, a fraction, garbage), which a recipient ignores.
std::optional<nanos> retry_after_delay(std::string_view value, std::int64_t now_unix);

} // namespace breakerbox::http
