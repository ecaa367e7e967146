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

/* close(2). Returns 0 or -errno. */
int craft_close(int fd);

/* fallocate(2) with mode 0 (allocate, extend the size). Returns 0 or -errno. */
int craft_fallocate(int fd, uint64_t offset, uint64_t length);

/* fdatasync(2). Returns 0 or -errno. */
int craft_fdatasync(int fd);

/* fsync(2), used on directories after a create, rename or unlink. Returns 0 or -errno. */
int craft_fsync(int fd);

/* pread(2) of at most `length` bytes at `offset` into a caller buffer. Returns the byte
 * count read (0 at end of file) or -errno. A short read is not an error here. */
int64_t craft_pread(int fd, void *buffer, size_t length, uint64_t offset);

/* pwrite(2) of at most `length` bytes at `offset`. Returns the byte count or -errno. */
int64_t craft_pwrite(int fd, const void *buffer, size_t length, uint64_t offset);

/* posix_fadvise(POSIX_FADV_WILLNEED): start reading [offset, offset+length) into the page
 * cache in the background (recovery prefetches the next segment while parsing this one).
 * Returns 0 or -errno. */
int craft_prefetch(int fd, uint64_t offset, uint64_t length);

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

#endif
