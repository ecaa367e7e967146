#include "craft_process.h"

#include <malloc.h>

int64_t craft_heap_in_use(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    struct mallinfo2 info = mallinfo2();
    return (int64_t)info.uordblks;
#else
    return 0;
#endif
}
