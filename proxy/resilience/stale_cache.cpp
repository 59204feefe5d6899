#include "resilience/stale_cache.hpp"

#include <boost/beast/http/rfc7230.hpp>

#include <algorithm>

namespace breakerbox::resilience {
namespace {

namespace bhttp = boost::beast::http;

// Whether a comma-separated directive list (Cache-Control) names `directive`, with or without "=value".
bool has_directive(std::string_view header, std::string_view directive)
{
    while (!header.empty()) {
        auto comma = header.find(',');
        std::string_view item = header.substr(0, comma);
        header = comma == std::string_view::npos ? std::string_view{} : header.substr(comma + 1);
        item = item.substr(0, item.find('='));
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t'))
            item.remove_prefix(1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t'))
            item.remove_suffix(1);
        if (boost::beast::iequals(item, directive))
            return true;
    }
    return false;
}

std::string lower(std::string_view s)
{
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

} // namespace

std::string stale_cache::primary_key(const http::request& req)
{
    std::string key = lower(req[bhttp::field::host]);
    key.push_back(' ');
    key.append(req.target());
    return key;
}

std::string stale_cache::variant_key(const std::string& primary, const std::vector<std::string>& vary, const http::request& req)
{
    std::string key = primary;
    for (const auto& name : vary) {
        key.push_back('\n');
        key.append(req[name]);
    }
    return key;
}

void stale_cache::store(const http::request& req, const http::response& res, nanos now)
{
    const unsigned status = res.result_int();
    if (req.method() != bhttp::verb::get || status < 200 || status > 299 || status == 206)
        return;
    auto cc = res[bhttp::field::cache_control];
    if (has_directive(cc, "no-store") || has_directive(cc, "private") || res.count(bhttp::field::set_cookie))
        return;
    std::vector<std::string> vary;
    for (const auto& f : res)
        if (f.name() == bhttp::field::vary)
            for (auto t : bhttp::token_list{f.value()}) {
                if (t == "*")
                    return;
                vary.push_back(lower(t));
            }
    std::size_t bytes = res.body().size() + 256;
    for (const auto& f : res)
        bytes += f.name_string().size() + f.value().size() + 4;
    if (bytes > cfg_.max_bytes)
        return;

    auto value = std::make_shared<cached_response>(cached_response{res, now, bytes});
    const std::string primary = primary_key(req);
    const std::string key = variant_key(primary, vary, req);
    std::lock_guard lock(mutex_);
    vary_[primary] = std::move(vary);
    if (auto it = entries_.find(key); it != entries_.end()) {
        bytes_ -= it->second.value->bytes;
        lru_.erase(it->second.position);
        entries_.erase(it);
    }
    lru_.push_front(key);
    entries_.emplace(key, entry{std::move(value), lru_.begin()});
    bytes_ += bytes;
    while (!lru_.empty() && (entries_.size() > cfg_.max_entries || bytes_ > cfg_.max_bytes))
        evict_one();
}

std::shared_ptr<const cached_response> stale_cache::lookup(const http::request& req, nanos now)
{
    const std::string primary = primary_key(req);
    std::lock_guard lock(mutex_);
    auto v = vary_.find(primary);
    if (v == vary_.end())
        return nullptr;
    auto it = entries_.find(variant_key(primary, v->second, req));
    if (it == entries_.end())
        return nullptr;
    if (now - it->second.value->stored_at > cfg_.max_age) {
        bytes_ -= it->second.value->bytes;
        lru_.erase(it->second.position);
        entries_.erase(it);
        return nullptr;
    }
    lru_.splice(lru_.begin(), lru_, it->second.position);
    return it->second.value;
}

void stale_cache::evict_one()
{
    const std::string& key = lru_.back();
    if (auto it = entries_.find(key); it != entries_.end()) {
        bytes_ -= it->second.value->bytes;
        entries_.erase(it);
    }
    lru_.pop_back();
}

std::size_t stale_cache::entries() const
{
    std::lock_guard lock(mutex_);
    return entries_.size();
}

std::size_t stale_cache::bytes() const
{
    std::lock_guard lock(mutex_);
    return bytes_;
}

} // namespace breakerbox::resilience
