#include "core/memory_release.hpp"

#include <malloc.h>

namespace breakerbox {
namespace {

// Sanitizer builds replace malloc with the sanitizer's allocator: glibc's arenas are then not the heap,
// and malloc_trim walking them crashed now and then under ASan (a SEGV in mtrim from the worker's sweep
// after a burst). The sanitizer's allocator manages its own memory: nothing to give back there.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define BREAKERBOX_SANITIZED_ALLOCATOR 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define BREAKERBOX_SANITIZED_ALLOCATOR 1
#endif
#endif

void trim_glibc_heap()
{
#if !defined(BREAKERBOX_SANITIZED_ALLOCATOR)
    malloc_trim(0);
#endif
}

memory_release_fn release_fn = trim_glibc_heap; // written before the workers start, read by them after

} // namespace

void install_memory_release(memory_release_fn fn) noexcept { release_fn = fn ? fn : trim_glibc_heap; }

void release_free_memory() noexcept { release_fn(); }

} // namespace breakerbox
