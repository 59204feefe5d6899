// The queue's database file, opened for one owner: its folder and file with private permissions, an
// flock held for the store's life, WAL and the synchronous mode, the schema created or checked.
#pragma once
#include "config/config.hpp"
#include "queue/sqlite_db.hpp"

#include <memory>
#include <string>

namespace breakerbox::queue {

// The database at cfg.path, ready for the store; `lock_fd` receives the held lock's descriptor (the
// store closes it). nullptr with `error` ("<path>: why") when any step fails (nothing left held then).
std::unique_ptr<sqlite_db> open_queue_file(const config::queue_store_config& cfg, int& lock_fd, std::string& error);

} // namespace breakerbox::queue
