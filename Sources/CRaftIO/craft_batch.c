#define _GNU_SOURCE
#include "craft_batch.h"

#include <errno.h>
#include <liburing.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Static_assert(sizeof(struct craft_write) == 32, "craft_write layout is mirrored in Swift");
_Static_assert(offsetof(struct craft_write, iov) == 8, "craft_write layout is mirrored in Swift");
_Static_assert(offsetof(struct craft_write, user_data) == 24, "craft_write layout is mirrored in Swift");
_Static_assert(sizeof(struct craft_completion) == 16, "craft_completion layout is mirrored in Swift");

struct craft_writer {
    enum craft_backend backend;
    uint32_t depth;
    uint32_t in_flight;
    /* io_uring backend */
    struct io_uring ring;
    /* fallback backend: completions produced at submit, waiting to be reaped (a FIFO). */
    struct craft_completion *pending;
    uint32_t pending_head;
    uint32_t pending_count;
};

int craft_uring_probe(void) {
    struct io_uring ring;
    int rc = io_uring_queue_init(4, &ring, 0);
    if (rc < 0) return rc;
    struct io_uring_probe *probe = io_uring_get_probe_ring(&ring);
    if (probe == NULL) {
        io_uring_queue_exit(&ring);
        return -EOPNOTSUPP;
    }
    int ok = io_uring_opcode_supported(probe, IORING_OP_WRITEV) &&
             io_uring_opcode_supported(probe, IORING_OP_FSYNC) &&
             io_uring_opcode_supported(probe, IORING_OP_READ);
    io_uring_free_probe(probe);
    io_uring_queue_exit(&ring);
    return ok ? 0 : -EOPNOTSUPP;
}

int craft_writer_create(enum craft_backend backend, uint32_t depth, struct craft_writer **out) {
    if (out == NULL || depth == 0 || depth > 32768) return -EINVAL;
    if (backend != CRAFT_BACKEND_URING && backend != CRAFT_BACKEND_FALLBACK) return -EINVAL;
    struct craft_writer *w = calloc(1, sizeof(*w));
    if (w == NULL) return -ENOMEM;
    w->backend = backend;
    if (backend == CRAFT_BACKEND_URING) {
        int rc = io_uring_queue_init(depth, &w->ring, 0);
        if (rc < 0) {
            free(w);
            return rc;
        }
        w->depth = w->ring.sq.ring_entries;
    } else {
        w->depth = depth;
        w->pending = calloc(depth, sizeof(struct craft_completion));
        if (w->pending == NULL) {
            free(w);
            return -ENOMEM;
        }
    }
    *out = w;
    return 0;
}

void craft_writer_destroy(struct craft_writer *w) {
    if (w == NULL) return;
    if (w->backend == CRAFT_BACKEND_URING) {
        io_uring_queue_exit(&w->ring);
    } else {
        free(w->pending);
    }
    free(w);
}

static void fallback_push(struct craft_writer *w, uint64_t user_data, int64_t result) {
    uint32_t slot = (w->pending_head + w->pending_count) % w->depth;
    w->pending[slot].user_data = user_data;
    w->pending[slot].result = result;
    w->pending_count++;
}

static int submit_fallback(struct craft_writer *w, int fd, const struct craft_write *writes,
                           uint32_t count, uint64_t sync_user_data) {
    int broken = 0;
    for (uint32_t i = 0; i < count; i++) {
        int64_t result;
        if (broken) {
            result = -ECANCELED;
        } else {
            size_t expected = 0;
            for (uint32_t v = 0; v < writes[i].iovcnt; v++) expected += writes[i].iov[v].iov_len;
            ssize_t n = pwritev(fd, writes[i].iov, (int)writes[i].iovcnt, (off_t)writes[i].offset);
            result = n >= 0 ? (int64_t)n : -errno;
            /* io_uring breaks a link chain on an error or a short write; so do we. */
            if (n < 0 || (size_t)n != expected) broken = 1;
        }
        fallback_push(w, writes[i].user_data, result);
    }
    if (sync_user_data != UINT64_MAX) {
        int64_t result = broken ? -ECANCELED : (fdatasync(fd) == 0 ? 0 : -errno);
        fallback_push(w, sync_user_data, result);
    }
    return 0;
}

static int submit_uring(struct craft_writer *w, int fd, const struct craft_write *writes,
                        uint32_t count, uint64_t sync_user_data) {
    int with_sync = sync_user_data != UINT64_MAX;
    for (uint32_t i = 0; i < count; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
        /* Room was checked by the caller against depth and in_flight. */
        if (sqe == NULL) return -EBUSY;
        io_uring_prep_writev(sqe, fd, writes[i].iov, writes[i].iovcnt, writes[i].offset);
        io_uring_sqe_set_data64(sqe, writes[i].user_data);
        if (i + 1 < count || with_sync) sqe->flags |= IOSQE_IO_LINK;
    }
    if (with_sync) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
        if (sqe == NULL) return -EBUSY;
        io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
        io_uring_sqe_set_data64(sqe, sync_user_data);
    }
    uint32_t total = count + (with_sync ? 1u : 0u);
    uint32_t submitted = 0;
    while (submitted < total) {
        int rc = io_uring_submit(&w->ring);
        if (rc == -EINTR || rc == -EAGAIN) continue;
        if (rc < 0) return rc;
        submitted += (uint32_t)rc;
        if (rc == 0) return -EIO;
    }
    return 0;
}

int craft_writer_submit(struct craft_writer *w, int fd, const struct craft_write *writes,
                        uint32_t count, uint64_t sync_user_data) {
    if (w == NULL || (count > 0 && writes == NULL)) return -EINVAL;
    uint32_t total = count + (sync_user_data != UINT64_MAX ? 1u : 0u);
    if (total == 0) return 0;
    for (uint32_t i = 0; i < count; i++) {
        if (writes[i].iovcnt == 0 || writes[i].iov == NULL || writes[i].reserved != 0) return -EINVAL;
    }
    if (total > w->depth - w->in_flight) return -EBUSY;
    if (w->backend == CRAFT_BACKEND_URING && io_uring_sq_space_left(&w->ring) < total) return -EBUSY;
    int rc = w->backend == CRAFT_BACKEND_URING ? submit_uring(w, fd, writes, count, sync_user_data)
                                               : submit_fallback(w, fd, writes, count, sync_user_data);
    if (rc < 0) return rc;
    w->in_flight += total;
    return (int)total;
}

int craft_writer_submit_read(struct craft_writer *w, int fd, void *buffer, uint32_t length,
                             uint64_t offset, uint64_t user_data) {
    if (w == NULL || buffer == NULL || length == 0) return -EINVAL;
    if (w->in_flight >= w->depth) return -EBUSY;
    if (w->backend == CRAFT_BACKEND_URING) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
        if (sqe == NULL) return -EBUSY;
        io_uring_prep_read(sqe, fd, buffer, length, offset);
        io_uring_sqe_set_data64(sqe, user_data);
        for (;;) {
            int rc = io_uring_submit(&w->ring);
            if (rc == -EINTR || rc == -EAGAIN) continue;
            if (rc < 0) return rc;
            if (rc == 0) return -EIO;
            break;
        }
    } else {
        ssize_t n;
        do {
            n = pread(fd, buffer, length, (off_t)offset);
        } while (n < 0 && errno == EINTR);
        fallback_push(w, user_data, n >= 0 ? (int64_t)n : -errno);
    }
    w->in_flight += 1;
    return 1;
}

static int reap_fallback(struct craft_writer *w, struct craft_completion *out, uint32_t capacity,
                         uint32_t min_complete) {
    /* Everything completed during submit: asking to wait for more than exists would hang
     * for ever with io_uring, so it is a caller bug here too. */
    if (min_complete > w->pending_count) return -EINVAL;
    uint32_t n = 0;
    while (n < capacity && w->pending_count > 0) {
        out[n++] = w->pending[w->pending_head];
        w->pending_head = (w->pending_head + 1) % w->depth;
        w->pending_count--;
    }
    return (int)n;
}

static int reap_uring(struct craft_writer *w, struct craft_completion *out, uint32_t capacity,
                      uint32_t min_complete) {
    if (min_complete > w->in_flight) return -EINVAL;
    uint32_t n = 0;
    while (n < capacity) {
        struct io_uring_cqe *cqe = NULL;
        int rc;
        if (n < min_complete) {
            rc = io_uring_wait_cqe(&w->ring, &cqe);
        } else {
            rc = io_uring_peek_cqe(&w->ring, &cqe);
            if (rc == -EAGAIN) break;
        }
        if (rc < 0) return n > 0 ? (int)n : rc;
        out[n].user_data = io_uring_cqe_get_data64(cqe);
        out[n].result = cqe->res;
        io_uring_cqe_seen(&w->ring, cqe);
        n++;
    }
    return (int)n;
}

int craft_writer_reap(struct craft_writer *w, struct craft_completion *out, uint32_t capacity,
                      uint32_t min_complete) {
    if (w == NULL || out == NULL || capacity == 0 || min_complete > capacity) return -EINVAL;
    int rc = w->backend == CRAFT_BACKEND_URING ? reap_uring(w, out, capacity, min_complete)
                                               : reap_fallback(w, out, capacity, min_complete);
    if (rc > 0) w->in_flight -= (uint32_t)rc;
    return rc;
}

uint32_t craft_writer_in_flight(const struct craft_writer *w) { return w->in_flight; }
uint32_t craft_writer_depth(const struct craft_writer *w) { return w->depth; }
uint32_t craft_write_struct_size(void) { return (uint32_t)sizeof(struct craft_write); }
uint32_t craft_completion_struct_size(void) { return (uint32_t)sizeof(struct craft_completion); }
