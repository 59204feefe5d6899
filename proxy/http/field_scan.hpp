// Field lookups by linear scan, for the per-request paths. A message has a handful of fields and each
// one stores its name's enum, so one pass comparing enums costs a few instructions per field; Beast's
// own lookups (operator[], find, erase and set by name) walk an ordered index comparing names
// case-insensitively, about 200 instructions each, and a proxied request made about a dozen of them.
#pragma once
#include "http/message.hpp"

#include <boost/beast/core/string.hpp>

#include <algorithm>
#include <string_view>

namespace breakerbox::http {

// A field name: its enum, or field::unknown with the spelling (for names Beast does not know, such as
// X-Forwarded-For). Build unknown names once (`field_name::of`), not per request.
struct field_name {
    bhttp::field id = bhttp::field::unknown;
    std::string_view text;

    static field_name of(std::string_view name) { return {bhttp::string_to_field(name), name}; }
    bool matches(const fields::value_type& f) const
    {
        return f.name() == id && (id != bhttp::field::unknown || boost::beast::iequals(f.name_string(), text));
    }
};

inline fields::const_iterator find_first(const fields& f, field_name name)
{
    for (auto it = f.begin(); it != f.end(); ++it)
        if (name.matches(*it))
            return it;
    return f.end();
}

inline bool has_field(const fields& f, field_name name) { return find_first(f, name) != f.end(); }

// The first value, or empty.
inline std::string_view value_of(const fields& f, field_name name)
{
    auto it = find_first(f, name);
    return it == f.end() ? std::string_view{} : std::string_view(it->value());
}

inline void erase_all(fields& f, field_name name)
{
    for (auto it = f.begin(); it != f.end();)
        it = name.matches(*it) ? f.erase(it) : std::next(it);
}

// Without Beast's name-to-enum lookup when the name is known already.
inline void insert_field(fields& f, field_name name, std::string_view value)
{
    f.insert(name.id, name.id != bhttp::field::unknown ? std::string_view(bhttp::to_string(name.id)) : name.text, value);
}

// Exactly one field `name` with `value` afterwards; one that is already so is left as it is (replacing
// it would free and allocate it for nothing).
inline void set_field(fields& f, field_name name, std::string_view value)
{
    auto first = find_first(f, name);
    if (first != f.end() && first->value() == value &&
        std::none_of(std::next(first), f.end(), [&](const auto& other) { return name.matches(other); }))
        return;
    erase_all(f, name);
    insert_field(f, name, value);
}

} // namespace breakerbox::http
