/*
 * zstd streaming compression and decompression into caller buffers, for snapshot streams.
 * A context is reused across frames. Errors are negative: -ENOMEM when a context cannot be
 * allocated, -EINVAL for a bad parameter, -EBADMSG for input that is not a valid zstd
 * stream (craft_zstd_error_name says which zstd error it was).
 */
#ifndef CRAFT_ZSTD_H
#define CRAFT_ZSTD_H

#include <stddef.h>
#include <stdint.h>

struct craft_zstd_cctx;
struct craft_zstd_dctx;

/* Smallest and largest compression levels the linked zstd accepts. */
int craft_zstd_min_level(void);
int craft_zstd_max_level(void);
/* The linked library's version, e.g. 10504 for 1.5.4. */
unsigned craft_zstd_version(void);

int craft_zstd_cctx_create(int level, struct craft_zstd_cctx **out);
void craft_zstd_cctx_destroy(struct craft_zstd_cctx *ctx);
/* Starts a new frame, discarding any frame in progress. */
int craft_zstd_cctx_reset(struct craft_zstd_cctx *ctx);

/*
 * Compresses from input[*in_pos ..< in_len] into output[*out_pos ..< out_cap], advancing
 * both positions. `finish` non-zero ends the frame once all input is consumed. Returns the
 * number of bytes still to flush (0: done for this call's purpose) or a negative error.
 */
int64_t craft_zstd_compress_stream(struct craft_zstd_cctx *ctx, const void *input, size_t in_len,
                                   size_t *in_pos, void *output, size_t out_cap, size_t *out_pos,
                                   int finish);

int craft_zstd_dctx_create(struct craft_zstd_dctx **out);
void craft_zstd_dctx_destroy(struct craft_zstd_dctx *ctx);
int craft_zstd_dctx_reset(struct craft_zstd_dctx *ctx);

/*
 * Decompresses from input[*in_pos ..< in_len] into output[*out_pos ..< out_cap]. Returns 0
 * when a frame has been completely decoded and flushed, a positive hint when more input or
 * output room is needed, or -EBADMSG for corrupt input.
 */
int64_t craft_zstd_decompress_stream(struct craft_zstd_dctx *ctx, const void *input, size_t in_len,
                                     size_t *in_pos, void *output, size_t out_cap, size_t *out_pos);

/* Name of the last zstd error seen by the context, or "" when there was none. */
const char *craft_zstd_cctx_error_name(const struct craft_zstd_cctx *ctx);
const char *craft_zstd_dctx_error_name(const struct craft_zstd_dctx *ctx);

/* Output size that is always enough for one ZSTD_e_flush step of `in_len` bytes. */
size_t craft_zstd_compress_bound(size_t in_len);

#endif
