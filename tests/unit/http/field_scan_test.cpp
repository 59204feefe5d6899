#include "http/field_scan.hpp"

#include <gtest/gtest.h>

#include <vector>

using namespace breakerbox;
namespace bhttp = boost::beast::http;

namespace {
std::vector<std::string> lines(const http::fields& f)
{
    std::vector<std::string> out;
    for (const auto& field : f)
        out.push_back(std::string(field.name_string()) + ": " + std::string(field.value()));
    return out;
}
} // namespace

TEST(field_scan, finds_known_names_by_enum_and_unknown_names_case_insensitively)
{
    http::fields f;
    f.insert(bhttp::field::host, "a");
    f.insert("x-forwarded-for", "1.1.1.1");
    f.insert("X-Other", "o");
    EXPECT_EQ(http::value_of(f, {bhttp::field::host}), "a");
    EXPECT_EQ(http::value_of(f, http::field_name::of("X-Forwarded-For")), "1.1.1.1");
    EXPECT_EQ(http::value_of(f, http::field_name::of("X-Missing")), "");
    EXPECT_FALSE(http::has_field(f, {bhttp::field::content_length}));
    // A known name spelled as text resolves to its enum.
    EXPECT_EQ(http::value_of(f, http::field_name::of("HOST")), "a");
}

TEST(field_scan, erase_all_removes_every_line_of_the_name_and_nothing_else)
{
    http::fields f;
    f.insert(bhttp::field::via, "1");
    f.insert(bhttp::field::host, "h");
    f.insert(bhttp::field::via, "2");
    http::erase_all(f, {bhttp::field::via});
    EXPECT_EQ(lines(f), (std::vector<std::string>{"Host: h"}));
}

TEST(field_scan, set_field_leaves_exactly_one_line)
{
    http::fields f;
    f.insert(bhttp::field::content_length, "5");
    f.insert(bhttp::field::host, "h");
    auto kept = f.begin();
    http::set_field(f, {bhttp::field::content_length}, "5");
    EXPECT_EQ(f.begin(), kept) << "an equal single field is left in place";
    f.insert(bhttp::field::content_length, "5");
    http::set_field(f, {bhttp::field::content_length}, "5");
    EXPECT_EQ(lines(f), (std::vector<std::string>{"Host: h", "Content-Length: 5"})) << "a duplicate is not kept";
    http::set_field(f, http::field_name::of("X-New"), "v");
    http::set_field(f, {bhttp::field::content_length}, "7");
    EXPECT_EQ(lines(f), (std::vector<std::string>{"Host: h", "X-New: v", "Content-Length: 7"}));
}
