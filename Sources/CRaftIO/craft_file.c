#define _GNU_SOURCE
#include "craft_file.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

int craft_openat(int dirfd, const char *path, int flags, mode_t mode) {
    int fd = openat(dirfd, path, flags | O_CLOEXEC, mode);
    return fd >= 0 ? fd : -errno;
}

int craft_close(int fd) {
    return close(fd) == 0 ? 0 : -errno;
}

int craft_fallocate(int fd, uint64_t offset, uint64_t length) {
    return fallocate(fd, 0, (off_t)offset, (off_t)length) == 0 ? 0 : -errno;
}

int craft_fdatasync(int fd) {
    return fdatasync(fd) == 0 ? 0 : -errno;
}

int craft_fsync(int fd) {
    return fsync(fd) == 0 ? 0 : -errno;
}

int64_t craft_pread(int fd, void *buffer, size_t length, uint64_t offset) {
    ssize_t n = pread(fd, buffer, length, (off_t)offset);
    return n >= 0 ? (int64_t)n : -errno;
}

int64_t craft_pwrite(int fd, const void *buffer, size_t length, uint64_t offset) {
    ssize_t n = pwrite(fd, buffer, length, (off_t)offset);
    return n >= 0 ? (int64_t)n : -errno;
}

int craft_ftruncate(int fd, uint64_t length) {
    return ftruncate(fd, (off_t)length) == 0 ? 0 : -errno;
}

int64_t craft_file_size(int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0) return -errno;
    return (int64_t)st.st_size;
}

int craft_set_file_size_limit(uint64_t limit) {
    struct rlimit current;
    if (getrlimit(RLIMIT_FSIZE, &current) != 0) return -errno;
    struct rlimit wanted = {.rlim_cur = (rlim_t)limit, .rlim_max = current.rlim_max};
    if (limit == UINT64_MAX || (current.rlim_max != RLIM_INFINITY && wanted.rlim_cur > current.rlim_max)) {
        wanted.rlim_cur = current.rlim_max;
    }
    if (signal(SIGXFSZ, SIG_IGN) == SIG_ERR) return -errno;
    return setrlimit(RLIMIT_FSIZE, &wanted) == 0 ? 0 : -errno;
}

int craft_mkdir(const char *path, mode_t mode) {
    return mkdir(path, mode) == 0 ? 0 : -errno;
}

int64_t craft_file_type(const char *path, int follow_symlinks) {
    struct stat st;
    int rc = follow_symlinks ? stat(path, &st) : lstat(path, &st);
    if (rc != 0) return -errno;
    return (int64_t)(st.st_mode & S_IFMT);
}

int64_t craft_realpath(const char *path, char *buffer, size_t capacity) {
    char *resolved = realpath(path, NULL);
    if (resolved == NULL) return -errno;
    size_t length = strlen(resolved);
    if (length + 1 > capacity) {
        free(resolved);
        return -ERANGE;
    }
    memcpy(buffer, resolved, length + 1);
    free(resolved);
    return (int64_t)length;
}

int craft_lock_exclusive(int fd) {
    return flock(fd, LOCK_EX | LOCK_NB) == 0 ? 0 : -errno;
}
