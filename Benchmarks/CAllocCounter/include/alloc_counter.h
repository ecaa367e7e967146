#ifndef CRAFT_ALLOC_COUNTER_H
#define CRAFT_ALLOC_COUNTER_H

/// Heap allocations (malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign)
/// made by this process so far: the benchmark program that links this target replaces
/// the C library's allocator entry points with counting ones.
unsigned long long craft_allocations(void);

#endif
