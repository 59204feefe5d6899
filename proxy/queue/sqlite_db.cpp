#include "queue/sqlite_db.hpp"

#include <sqlite3.h>

#include <utility>

namespace breakerbox::queue {

sqlite_statement& sqlite_statement::operator=(sqlite_statement&& o) noexcept
{
    if (this != &o) {
        sqlite3_finalize(stmt_);
        stmt_ = std::exchange(o.stmt_, nullptr);
    }
    return *this;
}

sqlite_statement::~sqlite_statement() { sqlite3_finalize(stmt_); }

sqlite_statement& sqlite_statement::bind(int i, std::int64_t v)
{
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
}

sqlite_statement& sqlite_statement::bind(int i, std::string_view text)
{
    sqlite3_bind_text64(stmt_, i, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
    return *this;
}

sqlite_statement& sqlite_statement::bind_blob(int i, std::string_view bytes)
{
    sqlite3_bind_blob64(stmt_, i, bytes.data(), bytes.size(), SQLITE_TRANSIENT);
    return *this;
}

sqlite_statement& sqlite_statement::bind_null(int i)
{
    sqlite3_bind_null(stmt_, i);
    return *this;
}

int sqlite_statement::step() { return sqlite3_step(stmt_); }

void sqlite_statement::reset()
{
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
}

std::int64_t sqlite_statement::int64(int col) const { return sqlite3_column_int64(stmt_, col); }

std::string sqlite_statement::text(int col) const
{
    const void* p = sqlite3_column_blob(stmt_, col);
    const int n = sqlite3_column_bytes(stmt_, col);
    return p ? std::string(static_cast<const char*>(p), static_cast<std::size_t>(n)) : std::string();
}

bool sqlite_statement::is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

std::unique_ptr<sqlite_db> sqlite_db::open(const std::string& path, std::string& error)
{
    sqlite3* db = nullptr;
    const int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
        error = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
        sqlite3_close(db);
        return nullptr;
    }
    sqlite3_busy_timeout(db, 5000); // another process holding the file: wait a little, then fail
    return std::unique_ptr<sqlite_db>(new sqlite_db(db));
}

sqlite_db::~sqlite_db() { sqlite3_close(db_); }

bool sqlite_db::exec(const char* sql) { return sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) == SQLITE_OK; }

sqlite_statement sqlite_db::prepare(const char* sql)
{
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) != SQLITE_OK)
        return {};
    return sqlite_statement(s);
}

std::string sqlite_db::last_error() const { return sqlite3_errmsg(db_); }

bool sqlite_db::in_transaction() const { return sqlite3_get_autocommit(db_) == 0; }

std::int64_t sqlite_db::changes() const { return sqlite3_changes64(db_); }

} // namespace breakerbox::queue
