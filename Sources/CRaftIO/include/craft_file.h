/*
 * File syscalls for the WAL and the storage layout. Each returns >= 0 or -errno and
 * never retries: EINTR goes back to Swift, which owns the retry policy.
 */
#ifndef CRAFT_FILE_H
#define CRAFT_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* openat(2) with O_CLOEXEC always added. Returns the descriptor or -errno. */
int craft_openat(int dirfd, const char *path, int flags, mode_t mode);

/* A small file replaced by lock and rename beneath the directory `root`, without following
 * any symbolic link on the way: the directory of `target` is opened with openat2
 * (RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH), then `<name>.lock` created in it (O_EXCL),
 * written, closed and renamed to `target`'s name, both relative to that directory.
 * Returns 0, or -errno with the lock it created removed: ENOENT or ENOTDIR (a directory on
 * the way missing or a file), EEXIST (a lock already there), ELOOP or EXDEV (a link on the
 * way), EISDIR (a directory at `target`), ENOSYS (no openat2; remembered, and returned at
 * once from then on, as after EPERM from a seccomp filter). */
int craft_replace_beneath(const char *root, const char *target, const void *bytes, size_t length);

/* close(2). Returns 0 or -errno. */
int craft_close(int fd);

/* fallocate(2) with mode 0 (allocate, extend the size). Returns 0 or -errno. */
int craft_fallocate(int fd, uint64_t offset, uint64_t length);

/* fdatasync(2). Returns 0 or -errno. */
int craft_fdatasync(int fd);

/* fsync(2), used on directories after a create, rename or unlink. Returns 0 or -errno. */
int craft_fsync(int fd);

/* syncfs(2): everything dirty on the file system holding fd (a checkpoint that touched
 * too many files for one fsync each). Returns 0 or -errno. */
int craft_syncfs(int fd);

/* pread(2) of at most `length` bytes at `offset` into a caller buffer. Returns the byte
 * count read (0 at end of file) or -errno. A short read is not an error here. */
int64_t craft_pread(int fd, void *buffer, size_t length, uint64_t offset);

/* pwrite(2) of at most `length` bytes at `offset`. Returns the byte count or -errno. */
int64_t craft_pwrite(int fd, const void *buffer, size_t length, uint64_t offset);

/* posix_fadvise(POSIX_FADV_WILLNEED): start reading [offset, offset+length) into the page
 * cache in the background (recovery prefetches the next segment while parsing this one).
 * Returns 0 or -errno. */
int craft_prefetch(int fd, uint64_t offset, uint64_t length);

/* sync_file_range(SYNC_FILE_RANGE_WRITE): start writing [offset, offset+length) back to the
 * disk without waiting, so that a large file's final fsync has little left to do and other
 * files' fdatasyncs do not queue behind one large flush. Durability still needs fsync.
 * Returns 0 or -errno. */
int craft_writeback(int fd, uint64_t offset, uint64_t length);

/* sync_file_range waiting for the range's writeback to end: a large file written in steps
 * waits for the step before last, so it never has more than two steps queued at the disk
 * ahead of other files' fdatasyncs. Returns 0 or -errno. */
int craft_writeback_wait(int fd, uint64_t offset, uint64_t length);

/* ftruncate(2). Returns 0 or -errno. */
int craft_ftruncate(int fd, uint64_t length);

/* fstat(2) size of the file. Returns the size or -errno. */
int64_t craft_file_size(int fd);

/* Raises or lowers RLIMIT_FSIZE for this process and ignores SIGXFSZ, so that writes past
 * the limit fail with EFBIG instead of killing the process. For tests that need a real
 * short write and a real write error from the kernel. Returns 0 or -errno. */
int craft_set_file_size_limit(uint64_t limit);

/* Names the calling thread (at most 15 bytes are kept), for ps, top and perf. Returns 0 or -errno. */
int craft_set_thread_name(const char *name);

/* Sets the calling thread's nice value (background work such as bulk transfers yields the
 * CPU to the node's latency-sensitive threads). Returns 0 or -errno. */
int craft_set_thread_niceness(int niceness);

/* mkdir(2). Returns 0 or -errno (-EEXIST when anything exists at `path`). */
int craft_mkdir(const char *path, mode_t mode);

/* The file type bits (st_mode & S_IFMT) of `path`, from stat(2) when `follow_symlinks` is
 * non-zero, lstat(2) otherwise. Returns the bits (> 0) or -errno. */
int64_t craft_file_type(const char *path, int follow_symlinks);

/* lstat(2): the whole st_mode (type and permission bits) and the size. Returns 0 or -errno. */
int craft_lstat(const char *path, uint32_t *mode, uint64_t *size);
/* realpath(3) of `path` (which must exist) into `buffer`, NUL-terminated. Returns the
 * length without the NUL, -ERANGE when `capacity` is too small, or -errno. */
int64_t craft_realpath(const char *path, char *buffer, size_t capacity);

/* flock(2) with LOCK_EX | LOCK_NB: an exclusive advisory lock on the open file, held until
 * the descriptor is closed. Returns 0, -EWOULDBLOCK when another open file description
 * holds it, or -errno. */
int craft_lock_exclusive(int fd);

/* unlink(2). Returns 0 or -errno. */
int craft_unlink(const char *path);

/* rename(2). Returns 0 or -errno. */
int craft_rename(const char *from, const char *to);

/* link(2): a second name for an existing file. Returns 0 or -errno. */
int craft_link(const char *from, const char *to);

/* rmdir(2). Returns 0 or -errno. */
int craft_rmdir(const char *path);

/* pthread_rwlock_init, writer-preferring when `prefer_writers` is non-zero (a GNU
 * extension Swift cannot reach). Returns 0 or -errno. */
#include <pthread.h>
int craft_rwlock_init(pthread_rwlock_t *lock, int prefer_writers);

/* Directory listing: open, then read names one by one, then close. */
struct craft_dir;
/* Returns 0 and sets *out, or -errno. */
int craft_dir_open(const char *path, struct craft_dir **out);
/* Copies the next name (never "." or "..") into `buffer`, NUL-terminated. Returns its length,
 * 0 at the end, -ENAMETOOLONG when `capacity` is too small, or -errno. */
int64_t craft_dir_next(struct craft_dir *dir, char *buffer, size_t capacity);
void craft_dir_close(struct craft_dir *dir);

#endif
