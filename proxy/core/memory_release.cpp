#include "core/memory_release.hpp"

#include <malloc.h>

namespace breakerbox {
namespace {

void trim_glibc_heap() { malloc_trim(0); }

memory_release_fn release_fn = trim_glibc_heap; // written before the workers start, read by them after

} // namespace

void install_memory_release(memory_release_fn fn) noexcept { release_fn = fn ? fn : trim_glibc_heap; }

void release_free_memory() noexcept { release_fn(); }

} // namespace breakerbox
