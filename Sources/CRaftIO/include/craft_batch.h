/*
 * Batched writes linked to one fdatasync, with two interchangeable backends:
 *
 *   CRAFT_BACKEND_URING     io_uring: one submission holds every write of the batch, each
 *                           linked (IOSQE_IO_LINK) to the next, the last linked to an
 *                           IORING_OP_FSYNC with IORING_FSYNC_DATASYNC.
 *   CRAFT_BACKEND_FALLBACK  pwritev(2) + fdatasync(2) executed during submit; completions
 *                           are queued and reaped exactly as io_uring's would be.
 *
 * Both follow io_uring's link semantics: a write that fails or writes short ends the chain,
 * and every later operation of that batch completes with -ECANCELED. The caller owns every
 * buffer and iovec until the completion of its operation has been reaped. `user_data` is a
 * caller-chosen slot number, never a pointer.
 *
 *   submit(batch) ──> [write 0] ─link─> [write 1] ─link─> ... ─link─> [fdatasync]
 *                          │                │                              │
 *   reap() <──────── cqe(user_data,res) for each operation, in completion order
 */
#ifndef CRAFT_BATCH_H
#define CRAFT_BATCH_H

#include <stdint.h>
#include <sys/uio.h>

enum craft_backend {
    CRAFT_BACKEND_URING = 1,
    CRAFT_BACKEND_FALLBACK = 2,
};

/* One positioned write of a batch. */
struct craft_write {
    uint64_t offset;          /* absolute file offset */
    const struct iovec *iov;  /* caller-owned, valid until this write's completion */
    uint32_t iovcnt;          /* 1 ... IOV_MAX */
    uint32_t reserved;        /* zero */
    uint64_t user_data;       /* slot number returned in the completion */
};

/* One completed operation. */
struct craft_completion {
    uint64_t user_data;
    int64_t result;           /* bytes written, 0 for the fdatasync, or -errno */
};

struct craft_writer;

/* Checks whether io_uring can be used here: the syscall exists and is permitted, a ring
 * can be created, and WRITEV and FSYNC are supported. Returns 0 or -errno
 * (-ENOSYS, -EPERM, -EOPNOTSUPP, ...). */
int craft_uring_probe(void);

/* Creates a writer able to hold `depth` operations in flight (rounded up to a power of two
 * by io_uring). Returns 0 and sets *out, or -errno. */
int craft_writer_create(enum craft_backend backend, uint32_t depth, struct craft_writer **out);

void craft_writer_destroy(struct craft_writer *writer);

/* Queues `count` writes to `fd` linked in order, followed when `sync_user_data` is not
 * UINT64_MAX by an fdatasync linked after the last write, and submits them. Returns the
 * number of operations submitted (count, plus one with the sync) or -errno; -EBUSY when
 * the writer has no room for the whole batch (nothing was queued). */
int craft_writer_submit(struct craft_writer *writer, int fd, const struct craft_write *writes,
                        uint32_t count, uint64_t sync_user_data);

/* Queues one positioned read of at most `length` bytes of `fd` at `offset` into the
 * caller's `buffer` (owned by the caller until the completion is reaped; the result is the
 * byte count, 0 at end of file, or -errno) and submits it, unlinked: reads complete in any
 * order. Snapshot streams keep several in flight to read a file ahead of the sender.
 * Returns 1, or -errno; -EBUSY when the writer has no room. */
int craft_writer_submit_read(struct craft_writer *writer, int fd, void *buffer, uint32_t length,
                             uint64_t offset, uint64_t user_data);
/* Reaps up to `capacity` completions into `out`, blocking until at least `min_complete`
 * are available (0 never blocks). Returns the number reaped or -errno (-EINTR included:
 * the caller retries). */
int craft_writer_reap(struct craft_writer *writer, struct craft_completion *out,
                      uint32_t capacity, uint32_t min_complete);

/* Operations submitted whose completions have not been reaped yet. */
uint32_t craft_writer_in_flight(const struct craft_writer *writer);

/* The operation capacity of the writer. */
uint32_t craft_writer_depth(const struct craft_writer *writer);

/* sizeof of the shared structs, so that Swift can assert its view matches. */
uint32_t craft_write_struct_size(void);
uint32_t craft_completion_struct_size(void);

#endif
