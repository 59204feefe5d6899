// What `breakerbox --version` prints, in the spirit of `haproxy -vv`: the version, the commit and build
// type it was built from, the compiler, and each library's version as built against and, where the
// library can say, as loaded now (a distribution's security update changes the second).
#pragma once
#include <string>
#include <string_view>

namespace breakerbox {

// Lines "key: value", the first one "breakerbox <version>". `allocator`: what the binary links (main
// knows: the library does not).
std::string version_report(std::string_view allocator);

} // namespace breakerbox
