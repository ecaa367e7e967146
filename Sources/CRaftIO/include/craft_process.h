/*
 * Facts about this process that Swift's Glibc module does not reach: heap bytes in use
 * (for memory figures that, unlike RSS, drop when memory is freed).
 */
#ifndef CRAFT_PROCESS_H
#define CRAFT_PROCESS_H

#include <stdint.h>

/* Bytes of heap currently allocated (glibc mallinfo2 uordblks; 0 where unavailable). */
int64_t craft_heap_in_use(void);

#endif
