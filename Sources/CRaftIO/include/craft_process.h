/*
 * Facts about this process that Swift's Glibc module does not reach: heap bytes in use
 * (for memory figures that, unlike RSS, drop when memory is freed); and running a helper
 * program (git, to validate an incoming pack) with bounded output and a deadline.
 */
#ifndef CRAFT_PROCESS_H
#define CRAFT_PROCESS_H

#include <stdint.h>

/* Bytes of heap currently allocated (glibc mallinfo2 uordblks; 0 where unavailable). */
int64_t craft_heap_in_use(void);

#include <stddef.h>

/* The nice value children run at (git validating a pushed pack): below the node's own
 * threads, so a large push does not take the CPU from heartbeats and small writes. */
#define CRAFT_CHILD_NICENESS 10

/* What craft_run reports about the finished child. */
struct craft_run_result {
    int exited;      /* 1: exited normally with exit_code; 0: killed by term_signal */
    int exit_code;
    int term_signal;
    int timed_out;   /* 1: the deadline passed and the child was sent SIGKILL */
    size_t out_len;  /* bytes of stdout kept (at most out_cap; the rest was read and dropped) */
    size_t err_len;
    int out_truncated;
};

/*
 * Runs argv[0] (an absolute path; no PATH search) with exactly envp, in cwd (NULL: ours),
 * feeding `input` to its standard input and keeping up to out_cap / err_cap bytes of its
 * standard output and error. The child gets default signal dispositions and an empty
 * signal mask; our SIGPIPE from a child that stops reading is absorbed. After timeout_ms
 * (> 0) the child is killed with SIGKILL. Returns 0 with *result filled in, or -errno
 * (nothing was started, or the child could not be waited for).
 */
int craft_run(const char *const argv[], const char *const envp[], const char *cwd,
              const unsigned char *input, size_t input_len,
              unsigned char *out, size_t out_cap, unsigned char *err, size_t err_cap,
              int timeout_ms, struct craft_run_result *result);

#endif
