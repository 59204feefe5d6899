#include "forward/outcome_table.hpp"

#include <string_view>

namespace breakerbox::forward {
namespace {

using counted_family = counted_as::family;

// `prefix + name` in backquotes (appended piece by piece: GCC 12's -Warray-bounds misfires on
// chains of string operator+ at -O3).
std::string code(std::string_view prefix, std::string_view name)
{
    std::string s;
    s.reserve(prefix.size() + name.size() + 2);
    s.append("`").append(prefix).append(name).append("`");
    return s;
}

std::string_view origin_name(reason_origin o)
{
    switch (o) {
    case reason_origin::answer: return "answer";
    case reason_origin::upstream: return "upstream";
    case reason_origin::local: return "local";
    case reason_origin::client: return "client";
    case reason_origin::session: return "session";
    }
    return "?";
}

std::string answer_cell(proxy_error e)
{
    switch (e) {
    case proxy_error::ok: return "the upstream's";
    case proxy_error::upstream_failure_status: return "the fallback's (the upstream's failure status replaced)";
    case proxy_error::circuit_open: return "503 + Retry-After";
    case proxy_error::client_closed: return "none (nobody to answer)";
    default: return std::to_string(http_status(e));
    }
}

std::string breaker_cell(const reason_rule& r)
{
    using resilience::failure_class;
    if (r.reason == proxy_error::ok)
        return "by status (`classify.failure_statuses`, `ignored_statuses`)";
    switch (r.breaker) {
    case failure_class::connect_failure: return "failure if `classify.connect_failure`";
    case failure_class::connect_timeout: return "failure if `classify.connect_timeout`";
    case failure_class::request_timeout: return "failure if `classify.request_timeout`";
    case failure_class::connection_reset: return "failure if `classify.connection_reset`";
    case failure_class::invalid_response: return "failure if `classify.invalid_response`";
    case failure_class::none: break;
    }
    return "nothing";
}

std::string retry_cell(const reason_rule& r)
{
    if (r.reason == proxy_error::ok)
        return "status in `retry_on`";
    switch (r.retry) {
    case retry_on::connect_failure: return "`retry_on: connect_failure`";
    case retry_on::reset: return "`retry_on: reset`";
    case retry_on::timeout: return "`retry_on: timeout`";
    case retry_on::never: break;
    }
    return "never";
}

std::string trigger_cell(const reason_rule& r)
{
    if (r.reason == proxy_error::ok)
        return "`upstream_error` for a failure status";
    return r.trigger ? code("", name_of(*r.trigger)) : "—";
}

std::string counted_cell(const reason_rule& r)
{
    const auto& c = r.counted;
    switch (c.kind) {
    case counted_family::outcome: return code("requests.", runtime::upstream_outcome_names[static_cast<std::size_t>(c.outcome)]);
    case counted_family::rejection:
        return code("rejections.", runtime::rejection_reason_names[static_cast<std::size_t>(c.rejection)]);
    case counted_family::by_admission: return "`rejections.circuit_open` / `half_open_full` / `recovery_ramp` / `cluster_open`";
    case counted_family::none: break;
    }
    return r.reason == proxy_error::ok ? "`requests.success` / `status_failure` / `ignored`" : "—";
}

} // namespace

std::string render_outcome_table_markdown()
{
    std::string out =
        "| reason | origin | answer (no fallback) | breaker records | retried when | fallback trigger | counted as |\n"
        "|---|---|---|---|---|---|---|\n";
    for (const auto& r : outcome_table) {
        for (const std::string& cell : {code("", token(r.reason)), std::string(origin_name(r.origin)), answer_cell(r.reason),
                                        breaker_cell(r), retry_cell(r), trigger_cell(r), counted_cell(r)})
            out.append("| ").append(cell).append(" ");
        out.append("|\n");
    }
    return out;
}

} // namespace breakerbox::forward
