/*
 * raftd-git-hook: git's proc-receive hook for pushes served by raftd.
 *
 * raftd starts `git receive-pack` with one end of a socket pair as descriptor 3, which git
 * passes on to its hooks. This program relays the proc-receive protocol between git
 * (its standard input and output) and raftd (descriptor 3): raftd reads the ref commands,
 * replicates the push through Raft, and writes git the per-ref answers. It decides nothing
 * itself. Run by hand (no descriptor 3), it says so and fails.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static int write_all(int fd, const char *p, ssize_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, (size_t)n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= w;
    }
    return 0;
}

int main(void) {
    const int peer = 3;
    struct stat st;
    if (fstat(peer, &st) < 0 || !S_ISSOCK(st.st_mode)) {
        fprintf(stderr, "raftd-git-hook: git's proc-receive hook for raftd; it runs only under a push that raftd serves\n");
        return 2;
    }
    char buffer[1 << 16];
    int in_open = 1, peer_open = 1;
    while (peer_open) {
        struct pollfd fds[2] = {{.fd = in_open ? 0 : -1, .events = POLLIN}, {.fd = peer, .events = POLLIN}};
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        if (in_open && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t r = read(0, buffer, sizeof(buffer));
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                in_open = 0;
                shutdown(peer, SHUT_WR);
            } else if (write_all(peer, buffer, r) < 0) {
                return 1;
            }
        }
        if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = read(peer, buffer, sizeof(buffer));
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0)
                peer_open = 0;
            else if (write_all(1, buffer, r) < 0)
                return 1;
        }
    }
    return 0;
}
