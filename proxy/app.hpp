// Start-up and shutdown: workers, listeners, name resolution, signals, drain.
// Owned by the main thread, which runs the accept loops, the resolvers and the signal handling on its
// own io_context while the workers serve connections.
#pragma once
#include "config/config.hpp"

namespace breakerbox {

// Runs breakerbox until it has drained after SIGTERM/SIGINT. Returns the process exit code.
// Start-up failures (a port in use, ...) are logged and return 1.
int run_proxy(config::config cfg);

} // namespace breakerbox
