#define _GNU_SOURCE
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

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long craft_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void craft_close_quietly(int *fd) {
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* A child starts with an empty signal mask and SIGPIPE at its default (we may ignore it),
 * plus `flags` (e.g. its own process group). */
static void craft_child_signals(posix_spawnattr_t *attr, short flags) {
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    posix_spawnattr_setsigmask(attr, &none);
    posix_spawnattr_setsigdefault(attr, &defaults);
    posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | flags);
}

int craft_run(const char *const argv[], const char *const envp[], const char *cwd,
              const unsigned char *input, size_t input_len,
              unsigned char *out, size_t out_cap, unsigned char *err, size_t err_cap,
              int timeout_ms, struct craft_run_result *result) {
    if (argv == NULL || argv[0] == NULL || argv[0][0] != '/' || envp == NULL || result == NULL ||
        timeout_ms <= 0)
        return -EINVAL;
    memset(result, 0, sizeof(*result));
    int in_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
    if (pipe2(in_pipe, O_CLOEXEC) < 0 || pipe2(out_pipe, O_CLOEXEC) < 0 || pipe2(err_pipe, O_CLOEXEC) < 0) {
        int e = errno;
        craft_close_quietly(&in_pipe[0]), craft_close_quietly(&in_pipe[1]);
        craft_close_quietly(&out_pipe[0]), craft_close_quietly(&out_pipe[1]);
        craft_close_quietly(&err_pipe[0]), craft_close_quietly(&err_pipe[1]);
        return -e;
    }
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_adddup2(&actions, in_pipe[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
    posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
    if (cwd != NULL) posix_spawn_file_actions_addchdir_np(&actions, cwd);
    craft_child_signals(&attr, 0);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &actions, &attr, (char *const *)argv, (char *const *)envp);
    /* Children validate data in the background of the node's latency-sensitive threads:
     * they yield the CPU to them (set before the child's threads start, which inherit it;
     * a failure only leaves the default priority). */
    if (rc == 0) (void)setpriority(PRIO_PROCESS, (id_t)pid, CRAFT_CHILD_NICENESS);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    craft_close_quietly(&in_pipe[0]);
    craft_close_quietly(&out_pipe[1]);
    craft_close_quietly(&err_pipe[1]);
    if (rc != 0) {
        craft_close_quietly(&in_pipe[1]);
        craft_close_quietly(&out_pipe[0]);
        craft_close_quietly(&err_pipe[0]);
        return -rc;
    }
    fcntl(in_pipe[1], F_SETFL, O_NONBLOCK);
    fcntl(out_pipe[0], F_SETFL, O_NONBLOCK);
    fcntl(err_pipe[0], F_SETFL, O_NONBLOCK);
    if (input_len == 0) craft_close_quietly(&in_pipe[1]);

    /* A child that exits without reading its input must not kill us with SIGPIPE: block it
     * on this thread while we write, and absorb one that arrives. */
    sigset_t pipe_only, previous;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &previous);

    size_t written = 0;
    unsigned char scratch[4096];
    long long deadline = craft_now_ms() + timeout_ms;
    while (out_pipe[0] >= 0 || err_pipe[0] >= 0) {
        struct pollfd fds[3];
        int n = 0, in_at = -1, out_at = -1, err_at = -1;
        if (in_pipe[1] >= 0) { in_at = n; fds[n].fd = in_pipe[1]; fds[n].events = POLLOUT; n++; }
        if (out_pipe[0] >= 0) { out_at = n; fds[n].fd = out_pipe[0]; fds[n].events = POLLIN; n++; }
        if (err_pipe[0] >= 0) { err_at = n; fds[n].fd = err_pipe[0]; fds[n].events = POLLIN; n++; }
        long long left = deadline - craft_now_ms();
        if (left <= 0) {
            kill(pid, SIGKILL);
            result->timed_out = 1;
            break;
        }
        int ready = poll(fds, (nfds_t)n, (int)(left > 1000 ? 1000 : left));
        if (ready < 0) {
            if (errno == EINTR) continue;
            kill(pid, SIGKILL);
            break;
        }
        if (in_at >= 0 && fds[in_at].revents) {
            ssize_t w = write(in_pipe[1], input + written, input_len - written);
            if (w > 0) written += (size_t)w;
            if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == input_len)
                craft_close_quietly(&in_pipe[1]);
        }
        int *readers[2] = {&out_pipe[0], &err_pipe[0]};
        int at[2] = {out_at, err_at};
        for (int k = 0; k < 2; k++) {
            if (at[k] < 0 || !fds[at[k]].revents) continue;
            unsigned char *buffer = k == 0 ? out : err;
            size_t cap = k == 0 ? out_cap : err_cap;
            size_t *len = k == 0 ? &result->out_len : &result->err_len;
            ssize_t r;
            if (*len < cap) {
                r = read(*readers[k], buffer + *len, cap - *len);
                if (r > 0) *len += (size_t)r;
            } else {
                r = read(*readers[k], scratch, sizeof(scratch));
                if (r > 0 && k == 0) result->out_truncated = 1;
            }
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) craft_close_quietly(readers[k]);
        }
    }
    craft_close_quietly(&in_pipe[1]);
    craft_close_quietly(&out_pipe[0]);
    craft_close_quietly(&err_pipe[0]);
    struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe_only, NULL, &zero) == SIGPIPE) {
    }
    pthread_sigmask(SIG_SETMASK, &previous, NULL);

    int status = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, 0);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) return -errno;
    }
    if (WIFEXITED(status)) {
        result->exited = 1;
        result->exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        result->term_signal = WTERMSIG(status);
    }
    return 0;
}

#include <sys/socket.h>
#include <zlib.h>

int craft_spawn(const char *const argv[], const char *const envp[], const char *cwd, int stdin_fd,
                int err_fd, int extra_fd, int niceness, pid_t *pid, int *out_fd) {
    if (argv == NULL || argv[0] == NULL || argv[0][0] != '/' || envp == NULL || pid == NULL || out_fd == NULL)
        return -EINVAL;
    int out_pipe[2] = {-1, -1};
    if (pipe2(out_pipe, O_CLOEXEC) < 0) return -errno;
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
    if (stdin_fd >= 0)
        posix_spawn_file_actions_adddup2(&actions, stdin_fd, 0);
    else
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
    if (err_fd >= 0)
        posix_spawn_file_actions_adddup2(&actions, err_fd, 2);
    else
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    if (extra_fd >= 0) posix_spawn_file_actions_adddup2(&actions, extra_fd, 3);
    if (cwd != NULL) posix_spawn_file_actions_addchdir_np(&actions, cwd);
    posix_spawnattr_setpgroup(&attr, 0);
    craft_child_signals(&attr, POSIX_SPAWN_SETPGROUP);
    int rc = posix_spawn(pid, argv[0], &actions, &attr, (char *const *)argv, (char *const *)envp);
    if (rc == 0 && niceness != 0) (void)setpriority(PRIO_PROCESS, (id_t)*pid, niceness);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    craft_close_quietly(&out_pipe[1]);
    if (rc != 0) {
        craft_close_quietly(&out_pipe[0]);
        return -rc;
    }
    *out_fd = out_pipe[0];
    return 0;
}

int craft_wait(pid_t pid, int *exited, int *code) {
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, 0);
        if (r == pid) break;
        if (r < 0 && errno == EINTR) continue;
        return r < 0 ? -errno : -ECHILD;
    }
    if (WIFEXITED(status)) {
        *exited = 1;
        *code = WEXITSTATUS(status);
    } else {
        *exited = 0;
        *code = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    }
    return 0;
}

int craft_socketpair(int fds[2]) {
    return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0 ? -errno : 0;
}

static int craft_write_all(int fd, const unsigned char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

long long craft_gunzip(int in_fd, int out_fd, long long max_out) {
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) return -ENOMEM;
    static __thread unsigned char in[1 << 16], out[1 << 16];
    long long total = 0;
    int rc = Z_OK, result = 0;
    while (rc != Z_STREAM_END) {
        if (z.avail_in == 0) {
            ssize_t r = read(in_fd, in, sizeof(in));
            if (r < 0) {
                if (errno == EINTR) continue;
                result = -errno;
                break;
            }
            if (r == 0) {
                result = -EINVAL; /* truncated */
                break;
            }
            z.next_in = in;
            z.avail_in = (uInt)r;
        }
        z.next_out = out;
        z.avail_out = sizeof(out);
        rc = inflate(&z, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END) {
            result = rc == Z_MEM_ERROR ? -ENOMEM : -EINVAL;
            break;
        }
        size_t produced = sizeof(out) - z.avail_out;
        total += (long long)produced;
        if (total > max_out) {
            result = -EFBIG;
            break;
        }
        int w = craft_write_all(out_fd, out, produced);
        if (w < 0) {
            result = w;
            break;
        }
    }
    inflateEnd(&z);
    return result < 0 ? result : total;
}
