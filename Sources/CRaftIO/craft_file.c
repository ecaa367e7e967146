#define _GNU_SOURCE
#include "craft_file.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/openat2.h>

int craft_openat(int dirfd, const char *path, int flags, mode_t mode) {
    int fd = openat(dirfd, path, flags | O_CLOEXEC, mode);
    return fd >= 0 ? fd : -errno;
}

/* Set once openat2 is found missing (ENOSYS) or refused by a seccomp filter (EPERM): the
 * callers' careful path serves from then on without a failed syscall per file. */
static int openat2_unavailable;

int craft_replace_beneath(const char *root, const char *target, const void *bytes, size_t length) {
    if (__atomic_load_n(&openat2_unavailable, __ATOMIC_RELAXED)) return -ENOSYS;
    /* The lock and the target share a directory: resolve it once, beneath the root and
     * without links, and name both files relative to it, so that nothing resolved later
     * can follow a link either. */
    const char *slash = strrchr(target, '/');
    const char *leaf = slash ? slash + 1 : target;
    size_t parent_length = slash ? (size_t)(slash - target) : 0;
    char parent[4096];
    char lock_leaf[256];
    if (parent_length >= sizeof parent) return -ENAMETOOLONG;
    if (snprintf(lock_leaf, sizeof lock_leaf, "%s.lock", leaf) >= (int)sizeof lock_leaf) return -ENAMETOOLONG;
    memcpy(parent, target, parent_length);
    parent[parent_length] = 0;

    int root_fd = open(root, O_DIRECTORY | O_PATH | O_CLOEXEC);
    if (root_fd < 0) return -errno;
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = O_DIRECTORY | O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH;
    int dir = parent_length ? (int)syscall(SYS_openat2, root_fd, parent, &how, sizeof how) : dup(root_fd);
    int error = dir < 0 ? errno : 0;
    close(root_fd);
    if (dir < 0) {
        if (error == ENOSYS || error == EPERM) __atomic_store_n(&openat2_unavailable, 1, __ATOMIC_RELAXED);
        return -error;
    }
    int fd = openat(dir, lock_leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        error = errno;
        close(dir);
        return -error;
    }
    const char *at = bytes;
    size_t left = length;
    while (left > 0) {
        ssize_t n = write(fd, at, left);
        if (n < 0) {
            error = errno;
            break;
        }
        if (n == 0) {
            error = EIO;
            break;
        }
        at += n;
        left -= (size_t)n;
    }
    if (close(fd) != 0 && error == 0 && errno != EINTR) error = errno;
    if (error == 0 && renameat(dir, lock_leaf, dir, leaf) != 0) error = errno;
    if (error != 0) unlinkat(dir, lock_leaf, 0);
    close(dir);
    return -error;
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

int craft_syncfs(int fd) {
    return syncfs(fd) == 0 ? 0 : -errno;
}

int64_t craft_pread(int fd, void *buffer, size_t length, uint64_t offset) {
    ssize_t n = pread(fd, buffer, length, (off_t)offset);
    return n >= 0 ? (int64_t)n : -errno;
}

int64_t craft_pwrite(int fd, const void *buffer, size_t length, uint64_t offset) {
    ssize_t n = pwrite(fd, buffer, length, (off_t)offset);
    return n >= 0 ? (int64_t)n : -errno;
}

int craft_prefetch(int fd, uint64_t offset, uint64_t length) {
    int rc = posix_fadvise(fd, (off_t)offset, (off_t)length, POSIX_FADV_WILLNEED);
    return -rc; /* posix_fadvise returns the error number itself */
}

int craft_writeback(int fd, uint64_t offset, uint64_t length) {
    return sync_file_range(fd, (off64_t)offset, (off64_t)length, SYNC_FILE_RANGE_WRITE) == 0 ? 0 : -errno;
}

int craft_writeback_wait(int fd, uint64_t offset, uint64_t length) {
    unsigned flags = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER;
    return sync_file_range(fd, (off64_t)offset, (off64_t)length, flags) == 0 ? 0 : -errno;
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

int craft_set_thread_name(const char *name) {
    return prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0) == 0 ? 0 : -errno;
}

int craft_set_thread_niceness(int niceness) {
    /* Linux keeps a nice value per thread: PRIO_PROCESS with the thread's own ID. */
    return setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), niceness) == 0 ? 0 : -errno;
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

int craft_lstat(const char *path, uint32_t *mode, uint64_t *size) {
    struct stat st;
    if (lstat(path, &st) != 0) return -errno;
    *mode = (uint32_t)st.st_mode;
    *size = (uint64_t)st.st_size;
    return 0;
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

int craft_unlink(const char *path) {
    return unlink(path) == 0 ? 0 : -errno;
}

int craft_rename(const char *from, const char *to) {
    return rename(from, to) == 0 ? 0 : -errno;
}

int craft_link(const char *from, const char *to) {
    return link(from, to) == 0 ? 0 : -errno;
}

int craft_rmdir(const char *path) {
    return rmdir(path) == 0 ? 0 : -errno;
}

struct craft_dir {
    DIR *dir;
};

int craft_dir_open(const char *path, struct craft_dir **out) {
    DIR *dir = opendir(path);
    if (dir == NULL) return -errno;
    struct craft_dir *handle = malloc(sizeof(*handle));
    if (handle == NULL) {
        closedir(dir);
        return -ENOMEM;
    }
    handle->dir = dir;
    *out = handle;
    return 0;
}

int64_t craft_dir_next(struct craft_dir *handle, char *buffer, size_t capacity) {
    for (;;) {
        errno = 0;
        struct dirent *entry = readdir(handle->dir);
        if (entry == NULL) return errno == 0 ? 0 : -errno;
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
        size_t length = strlen(entry->d_name);
        if (length + 1 > capacity) return -ENAMETOOLONG;
        memcpy(buffer, entry->d_name, length + 1);
        return (int64_t)length;
    }
}

void craft_dir_close(struct craft_dir *handle) {
    if (handle == NULL) return;
    closedir(handle->dir);
    free(handle);
}

int craft_rwlock_init(pthread_rwlock_t *lock, int prefer_writers) {
    pthread_rwlockattr_t attr;
    int rc = pthread_rwlockattr_init(&attr);
    if (rc != 0) return -rc;
    if (prefer_writers) {
        rc = pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    }
    if (rc == 0) rc = pthread_rwlock_init(lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    return -rc; /* pthread functions return the error number itself */
}
