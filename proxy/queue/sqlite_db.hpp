// A thin owner of one SQLite connection and its prepared statements: errors as return values (the
// SQLite result code and sqlite3_errmsg), never exceptions. Owned by one thread (the queue's writer):
// SQLite is built thread-safe, but a connection used from one thread needs no locking of ours.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

struct sqlite3;
struct sqlite3_stmt;

namespace breakerbox::queue {

class sqlite_statement {
public:
    sqlite_statement() = default;
    explicit sqlite_statement(sqlite3_stmt* s) : stmt_(s) { }
    sqlite_statement(sqlite_statement&& o) noexcept : stmt_(std::exchange(o.stmt_, nullptr)) { }
    sqlite_statement& operator=(sqlite_statement&& o) noexcept;
    ~sqlite_statement();

    explicit operator bool() const noexcept { return stmt_ != nullptr; }

    // Parameters are numbered from 1 (SQLite's convention). Text and blobs are copied (SQLITE_TRANSIENT).
    sqlite_statement& bind(int i, std::int64_t v);
    sqlite_statement& bind(int i, std::string_view text);
    sqlite_statement& bind_blob(int i, std::string_view bytes);
    sqlite_statement& bind_null(int i);

    // SQLITE_ROW (a row to read), SQLITE_DONE, or an error code.
    int step();
    // Ready for the next bind/step: reset and bindings cleared.
    void reset();

    // Columns are numbered from 0.
    std::int64_t int64(int col) const;
    std::string text(int col) const; // text or blob bytes; "" for NULL
    bool is_null(int col) const;

private:
    sqlite3_stmt* stmt_ = nullptr;
};

class sqlite_db {
public:
    // Opens (creating) `path`; nullopt with `error` set when it cannot.
    static std::unique_ptr<sqlite_db> open(const std::string& path, std::string& error);
    ~sqlite_db();
    sqlite_db(const sqlite_db&) = delete;
    sqlite_db& operator=(const sqlite_db&) = delete;

    // Runs statements without results; false with last_error() on failure.
    bool exec(const char* sql);
    // A prepared statement; empty (and last_error()) when the SQL is invalid.
    sqlite_statement prepare(const char* sql);
    std::string last_error() const;
    // Whether a transaction is open. After some errors (SQLITE_FULL, IOERR, NOMEM) SQLite rolls the
    // whole transaction back by itself: this is how the caller learns it.
    bool in_transaction() const;
    std::int64_t changes() const;

private:
    explicit sqlite_db(sqlite3* db) : db_(db) { }
    sqlite3* db_;
};

} // namespace breakerbox::queue
