// An enum's names, spelled once beside the enum: each enum E declares, in its own namespace,
//     constexpr std::span<const enum_name<E>> names_of(E) noexcept;   // found by argument-dependent lookup
// and everything that turns values into words or words into values reads that one table — the config
// loader (parse, and the "expected a, b or c" of its errors), /health/circuits, /metrics and the logs.
#pragma once
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace breakerbox {

template <class E>
struct enum_name {
    E value;
    std::string_view name;
};

// The name of `value`; "?" for a value the table does not list (a bug: every value has a name).
template <class E>
constexpr std::string_view name_of(E value) noexcept
{
    for (const auto& entry : names_of(E{}))
        if (entry.value == value)
            return entry.name;
    return "?";
}

// The value named `text` (exact, case-sensitive, as the docs spell it); nullopt when none is.
template <class E>
constexpr std::optional<E> parse_name(std::string_view text) noexcept
{
    for (const auto& entry : names_of(E{}))
        if (entry.name == text)
            return entry.value;
    return std::nullopt;
}

// "a, b or c": the accepted names, for an error message.
template <class E>
std::string names_list()
{
    std::string out;
    const auto names = names_of(E{});
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (i > 0)
            out += i + 1 == names.size() ? " or " : ", ";
        out += names[i].name;
    }
    return out;
}

} // namespace breakerbox
