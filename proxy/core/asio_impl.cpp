// The one translation unit that compiles Asio and Beast (separate compilation): every other file
// sees only declarations, which keeps a clean build of the project within minutes on two cores.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
