// The last good response per URL (and the request headers its Vary names), for the "stale" fallback.
// Bounded by entries and bytes (least recently used goes first) and by age. Only 2xx answers to GET,
// never when the response says no-store or private, sets a cookie, or varies on "*".
// Shared; one mutex, because entries are only written for upstreams that configure a stale fallback
// (opt-in) and read only when a fallback is being served.
#pragma once
#include "config/config.hpp"
#include "http/message.hpp"

#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace breakerbox::resilience {

struct cached_response {
    http::response response;
    nanos stored_at;
    std::size_t bytes;
};

class stale_cache {
public:
    explicit stale_cache(const config::stale_cache_config& cfg) : cfg_(cfg) {}

    // `req` is the request as sent upstream, `res` the response as it will be sent to the client.
    void store(const http::request& req, const http::response& res, nanos now);
    // The freshest stored answer for this request, if one is within max_age.
    std::shared_ptr<const cached_response> lookup(const http::request& req, nanos now);

    std::size_t entries() const;
    std::size_t bytes() const;

private:
    using lru_list = std::list<std::string>;
    struct entry {
        std::shared_ptr<const cached_response> value;
        lru_list::iterator position;
    };
    static std::string primary_key(const http::request& req);
    static std::string variant_key(const std::string& primary, const std::vector<std::string>& vary, const http::request& req);
    void evict_one(); // requires mutex_

    const config::stale_cache_config cfg_;
    mutable std::mutex mutex_;
    std::unordered_map<std::string, std::vector<std::string>> vary_; // primary key → header names the response varies on
    std::unordered_map<std::string, entry> entries_;
    lru_list lru_; // most recent at the front
    std::size_t bytes_ = 0;
};

} // namespace breakerbox::resilience
