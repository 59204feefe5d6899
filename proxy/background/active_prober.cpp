#include "background/active_prober.hpp"

#include "core/deadline_stream.hpp"
#include "core/log.hpp"
#include "core/write_all.hpp"
#include "forward/outcome_table.hpp"
#include "http/message_rules.hpp"
#include "http/read_message.hpp"
#include "tls/session_cache.hpp"
#include "tls/tls_connection.hpp"
#include "tls/upstream_tls.hpp"

#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <type_traits>

namespace breakerbox::background {
namespace {

namespace bhttp = boost::beast::http;
using resilience::breaker_state;

probe_result read_failure(const error_code& rec)
{
    if (rec == beast::error::timeout)
        return probe_result{proxy_error::upstream_timeout, 0, "no complete answer within the probe timeout"};
    if (rec.category() == make_error_code(bhttp::error::bad_version).category() && rec != bhttp::error::partial_message &&
        rec != bhttp::error::end_of_stream)
        return probe_result{proxy_error::upstream_invalid_response, 0, rec.message()};
    return probe_result{proxy_error::upstream_reset, 0, rec.message()};
}

// TLS 1.3 (RFC 8446 §4.4.2): the server's refusal of our certificate is an alert that comes after our
// side of the handshake; a server that closes at once makes our write fail with a reset before it is
// read. After a failed write on TLS, what the server sent is read (already queued: no wait) — the same
// rule as for requests (upstream_exchange.cpp), so probes classify it alike.
template <class Stream>
asio::awaitable<error_code> pending_alert(Stream& stream, error_code ec)
{
    if constexpr (std::is_same_v<Stream, tls::tls_io>) {
        if (ec != beast::error::timeout) {
            char scratch[512];
            auto [rec, n] = co_await stream.ssl.async_read_some(asio::buffer(scratch), nothrow_awaitable);
            if (n == 0)
                co_return stream.io_error(rec);
        }
    }
    co_return ec;
}

probe_result refused_after_handshake(const error_code& ec)
{
    return probe_result{proxy_error::upstream_tls_handshake_failed, 0,
                        "refused the TLS session after the handshake: " + ec.message()};
}

// The request and its answer over `stream` (a deadline_stream, or a tls::tls_io over one).
template <class Stream>
asio::awaitable<probe_result> request_health(Stream& stream, const std::string& path, const std::string& host)
{
    const std::string request =
        "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: breakerbox-probe\r\nConnection: close\r\n\r\n";
    const auto sent = co_await write_rest(stream, asio::buffer(request), write_progress{}, 0);
    if (const auto wec = sent.ec) {
        if (const auto alert = co_await pending_alert(stream, wec); tls::is_received_alert(alert))
            co_return refused_after_handshake(alert);
        co_return probe_result{wec == beast::error::timeout ? proxy_error::upstream_timeout : proxy_error::upstream_reset, 0,
                               wec.message()};
    }
    beast::flat_buffer buffer;
    bhttp::response_parser<bhttp::string_body> parser;
    http::trailer_fence fence{parser}; // only the status is judged, but trailers never join the header
    parser.body_limit(64 * 1024);      // a health answer; anything bigger is not one
    if (auto rec = co_await http::read_message(stream, buffer, parser, fence))
        co_return tls::is_received_alert(rec) && !parser.got_some() ? refused_after_handshake(rec) : read_failure(rec);
    if (!http::response_coding_supported(parser.get()))
        co_return probe_result{proxy_error::upstream_invalid_response, 0, "a transfer coding other than chunked (RFC 9112 §6.1)"};
    co_return probe_result{proxy_error::ok, parser.get().result_int(), {}};
}

// The next endpoint to probe, round robin, skipping those outlier detection keeps out (a probe of a
// known-bad endpoint would only re-open the circuit) unless all are.
tcp::endpoint next_probe_endpoint(const std::vector<tcp::endpoint>& endpoints, std::size_t& next,
                                  const resilience::outlier_detector* detector, nanos now)
{
    for (std::size_t tried = 0; detector && tried < endpoints.size(); ++tried) {
        const tcp::endpoint& candidate = endpoints[next % endpoints.size()];
        if (detector->find(candidate)->in_load_balancing(now))
            break;
        ++next;
    }
    return endpoints[next++ % endpoints.size()];
}

// How long to sleep before looking at the breaker again.
nanos next_look(const resilience::circuit_breaker& breaker)
{
    switch (breaker.state()) {
    // At most a second: an operator reset and a new trip with a shorter open time are noticed soon.
    case breaker_state::open: return std::clamp(breaker.time_until_probe(), millis(1), seconds(1));
    case breaker_state::half_open: return millis(10); // our probe slot may be taken: look again soon
    default: return millis(50);                       // closed: notice a trip quickly; a timer on the main thread costs nothing
    }
}

} // namespace

asio::awaitable<probe_result> probe_once(const tcp::endpoint& endpoint, const std::string& path, const std::string& host,
                                         nanos timeout, tls::upstream_tls* tls, tls::session_cache& sessions)
{
    deadline_stream stream(co_await asio::this_coro::executor);
    stream.expires_after(as_duration(timeout));
    if (auto ec = co_await stream.connect(endpoint))
        co_return probe_result{ec == beast::error::timeout ? proxy_error::upstream_connect_timeout
                                                           : proxy_error::upstream_connect_failed,
                               0, ec.message()};
    if (!tls)
        co_return co_await request_health(stream, path, host);
    tls::tls_connection conn(stream.socket(), *tls);
    stream.shut_down_on_abort(); // the TLS engine starts socket operations a cancel cannot reach
    const std::string label = endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
    auto handshake = co_await tls::client_handshake(conn, stream, &sessions, label, false);
    if (handshake.error != proxy_error::ok)
        co_return probe_result{handshake.error, 0, std::move(handshake.detail)};
    tls::tls_io io{stream, conn.stream};
    const probe_result r = co_await request_health(io, path, host);
    tls::forget_without_invalidating(conn); // its session stays resumable for the next probe
    co_return r;
}

asio::awaitable<void> run_active_prober(probe_target target, std::function<bool()> active)
{
    auto& breaker = target.shared->breaker;
    const auto& cfg = target.shared->cfg;
    const auto& clk = steady_clock_source::instance();
    asio::steady_timer timer(co_await asio::this_coro::executor);
    std::size_t next_endpoint = 0;
    tls::session_cache sessions; // the prober's own (main thread), for all endpoints of this generation
    while (active()) {
        const auto state = breaker.state();
        if ((state == breaker_state::open && breaker.time_until_probe() == 0) || state == breaker_state::half_open) {
            const resilience::permit permit = breaker.try_acquire_probe(clk.now());
            if (permit.admitted()) {
                const auto& endpoints = *target.endpoints;
                if (endpoints.empty()) {
                    breaker.release(permit); // nothing resolved to probe: not an upstream outcome
                } else {
                    const tcp::endpoint endpoint =
                        next_probe_endpoint(endpoints, next_endpoint, target.shared->outliers.get(), clk.now());
                    const probe_result r = co_await probe_once(endpoint, cfg.breaker.probe_path, target.host,
                                                               cfg.breaker.probe_timeout, target.shared->tls.get(), sessions);
                    const auto outcome = classify_probe(r, target.shared->classifier);
                    breaker.on_result(permit, outcome, clk.now());
                    target.shared->active_probes[static_cast<std::size_t>(outcome)].fetch_add(1, std::memory_order_relaxed);
                    log::debug("active probe", {{"upstream", cfg.name},
                                                {"endpoint", endpoint.address().to_string()},
                                                {"status", r.status},
                                                {"error", r.error == proxy_error::ok ? "" : token(r.error)},
                                                {"detail", r.detail},
                                                {"outcome", name_of(outcome)}});
                    continue; // look at the breaker again at once: more probes may be needed to close it
                }
            }
        }
        timer.expires_after(as_duration(next_look(breaker)));
        auto [ec] = co_await timer.async_wait(nothrow_awaitable);
        if (ec)
            co_return;
    }
}

resilience::outcome classify_probe(const probe_result& r, const resilience::outcome_classifier& classifier)
{
    return r.error == proxy_error::ok ? classifier.of_status(r.status) : classifier.of_failure(forward::rule_of(r.error).breaker);
}

} // namespace breakerbox::background
