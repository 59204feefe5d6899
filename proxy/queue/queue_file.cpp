#include "queue/queue_file.hpp"

#include "core/log.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace breakerbox::queue {
namespace {

constexpr const char* schema = R"sql(
CREATE TABLE IF NOT EXISTS queue_entries(
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  upstream TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  idempotency_key TEXT,
  key_from_client INTEGER NOT NULL,
  fingerprint TEXT NOT NULL,
  method TEXT NOT NULL,
  target TEXT NOT NULL,
  fields BLOB NOT NULL,
  body BLOB,
  size INTEGER NOT NULL,
  body_size INTEGER NOT NULL,
  enqueued_ms INTEGER NOT NULL,
  age_from_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  response_status INTEGER NOT NULL DEFAULT 0,
  response_headers TEXT NOT NULL DEFAULT '{}',
  response_body BLOB,
  response_truncated INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '');
CREATE UNIQUE INDEX IF NOT EXISTS queue_entries_key ON queue_entries(upstream, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS queue_entries_state ON queue_entries(upstream, state, seq);
CREATE INDEX IF NOT EXISTS queue_entries_updated ON queue_entries(upstream, state, updated_ms);
PRAGMA user_version=1;
)sql";

// The schema this build writes (PRAGMA user_version). A file of another version is refused, never
// guessed at: queued requests are data.
constexpr std::int64_t schema_version = 1;

// The folder is created 0700; an existing one others can read is allowed but said. The file is created
// 0600 before SQLite opens it (SQLite gives its -wal and -shm files the database file's mode).
bool prepare_files(const std::string& path, std::string& error)
{
    namespace fs = std::filesystem;
    const fs::path file(path);
    const fs::path dir = file.parent_path().empty() ? fs::path(".") : file.parent_path();
    std::error_code ec;
    if (!fs::exists(dir, ec)) {
        fs::create_directories(dir, ec);
        if (ec) {
            error = "cannot create " + dir.string() + ": " + ec.message();
            return false;
        }
        fs::permissions(dir, fs::perms::owner_all, ec);
    } else if ((fs::status(dir, ec).permissions() & (fs::perms::group_read | fs::perms::others_read)) != fs::perms::none) {
        log::warn("the queue's folder is readable by other users: queued requests are data; make it 0700",
                  {{"folder", dir.string()}});
    }
    const bool existed = fs::exists(file, ec);
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        error = "cannot open " + path + ": " + std::strerror(errno);
        return false;
    }
    struct stat st { };
    if (::fstat(fd, &st) == 0 && (st.st_mode & 077) != 0) {
        log::warn("the queue's database was readable by other users: its mode is set to 0600", {{"database", path}});
        ::fchmod(fd, 0600);
    }
    ::close(fd);
    if (!existed) { // the new file's directory entry, durable before the first 202 relies on it
        const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            ::fsync(dfd);
            ::close(dfd);
        }
    }
    return true;
}

// One process owns a queue: a second one (two sidecars on one volume, an old and a new pod overlapping)
// would take the first's deliveries in flight for crashed ones. An flock on <path>.lock, held for the
// store's life (the kernel drops it when the process dies). -1 with `error` when another holds it.
int lock_queue(const std::string& path, std::string& error)
{
    const std::string lock_path = path + ".lock";
    const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        error = "cannot open " + lock_path + ": " + std::strerror(errno);
        return -1;
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        error = errno == EWOULDBLOCK ? "another process holds " + lock_path + " (one breakerbox per queue database)"
                                     : "cannot lock " + lock_path + ": " + std::strerror(errno);
        ::close(fd);
        return -1;
    }
    return fd;
}

// The schema, created in a new file or checked in an existing one.
bool ensure_schema(sqlite_db& db, std::string& error)
{
    auto version_query = db.prepare("PRAGMA user_version");
    auto tables = db.prepare("SELECT count(*) FROM sqlite_master WHERE type='table' AND name='queue_entries'");
    if (!version_query || !tables || version_query.step() != SQLITE_ROW || tables.step() != SQLITE_ROW) {
        error = db.last_error();
        return false;
    }
    const auto version = version_query.int64(0);
    const bool has_table = tables.int64(0) > 0;
    if (version == schema_version)
        return true;
    if (version == 0 && !has_table) {
        if (db.exec(schema))
            return true;
        error = db.last_error();
        return false;
    }
    error = "the queue's schema version is " + std::to_string(version) + ", this breakerbox reads version " +
            std::to_string(schema_version) + " only (written by another version?): move the file away to start empty";
    return false;
}

// WAL is what lets a commit be one sequential write; a file system without it is refused.
bool enable_wal(sqlite_db& db, std::string& error)
{
    auto q = db.prepare("PRAGMA journal_mode=WAL");
    if (!q || q.step() != SQLITE_ROW) {
        error = db.last_error();
        return false;
    }
    if (q.text(0) != "wal") {
        error = "the file system does not support SQLite's WAL mode (journal_mode is " + q.text(0) + ")";
        return false;
    }
    return true;
}

} // namespace

std::unique_ptr<sqlite_db> open_queue_file(const config::queue_store_config& cfg, int& lock_fd, std::string& error)
{
    if (!prepare_files(cfg.path, error))
        return nullptr;
    lock_fd = lock_queue(cfg.path, error);
    if (lock_fd < 0)
        return nullptr;
    auto fail = [&](std::string why) {
        error = cfg.path + ": " + std::move(why);
        ::close(std::exchange(lock_fd, -1));
        return nullptr;
    };
    auto db = sqlite_db::open(cfg.path, error);
    if (!db)
        return fail(error);
    const char* sync = cfg.synchronous == config::queue_sync::full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL";
    if (!enable_wal(*db, error) || !ensure_schema(*db, error))
        return fail(error);
    if (!db->exec(sync))
        return fail(db->last_error());
    return db;
}

} // namespace breakerbox::queue
