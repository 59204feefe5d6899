// The result of trying one upstream with its bulkhead, breaker and retries — what the fallback chain
// and the default answer decide on. The upstream's answer itself stays in the caller's message
// (forward_result::response), never moved from layer to layer.
#pragma once
#include "core/error.hpp"
#include "resilience/circuit_breaker.hpp"

#include <string>

namespace breakerbox::forward {

struct call_result {
    proxy_error error = proxy_error::ok; // ok: the upstream answered
    std::string detail;
    bool failure_status = false;       // the upstream answered, with a status classified as failure
    resilience::admission rejection{}; // when error == circuit_open
    bool by_cluster = false;           // circuit_open by the cluster's verdict (scope: cluster)
};

} // namespace breakerbox::forward
