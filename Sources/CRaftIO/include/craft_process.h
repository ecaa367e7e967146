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

#ifndef CRAFT_PROCESS_SPAWN
#define CRAFT_PROCESS_SPAWN
#include <sys/types.h>

/*
 * Starts argv[0] (an absolute path) with exactly envp in cwd (NULL: ours), for a child
 * whose output is streamed (git serving a fetch or a push): its standard input is
 * stdin_fd (-1: /dev/null), its standard error err_fd (-1: /dev/null), and its standard
 * output a new pipe whose read end (blocking, close-on-exec) goes to *out_fd. With
 * extra_fd >= 0, the child also holds it as descriptor 3 (inherited by its own children:
 * git's hooks). The child runs at `niceness` (0: ours) in its own process group, with
 * default signal dispositions. Returns 0 with *pid and *out_fd set, or -errno.
 */
int craft_spawn(const char *const argv[], const char *const envp[], const char *cwd, int stdin_fd,
                int err_fd, int extra_fd, int niceness, pid_t *pid, int *out_fd);

/* Waits for pid. Returns 0 with *exited (1: exit code in *code; 0: the signal in *code), or
 * -errno. */
int craft_wait(pid_t pid, int *exited, int *code);

/* A connected pair of stream sockets, both close-on-exec. Returns 0 or -errno. */
int craft_socketpair(int fds[2]);

/*
 * Inflates the gzip stream in in_fd into out_fd, refusing more than max_out bytes of
 * output. Returns the bytes written, -EINVAL for a damaged or truncated stream, -EFBIG
 * past max_out, or -errno.
 */
long long craft_gunzip(int in_fd, int out_fd, long long max_out);
#endif
