#include "craft_zstd.h"

#include <errno.h>
#include <stdlib.h>
#include <zstd.h>
#include <zstd_errors.h>

struct craft_zstd_cctx {
    ZSTD_CCtx *cctx;
    size_t last_error;
};

struct craft_zstd_dctx {
    ZSTD_DCtx *dctx;
    size_t last_error;
};

int craft_zstd_min_level(void) { return ZSTD_minCLevel(); }
int craft_zstd_max_level(void) { return ZSTD_maxCLevel(); }
unsigned craft_zstd_version(void) { return ZSTD_versionNumber(); }
size_t craft_zstd_compress_bound(size_t in_len) { return ZSTD_compressBound(in_len); }

static int64_t zstd_failure(size_t code, size_t *slot) {
    *slot = code;
    switch (ZSTD_getErrorCode(code)) {
    case ZSTD_error_memory_allocation:
        return -ENOMEM;
    case ZSTD_error_parameter_unsupported:
    case ZSTD_error_parameter_outOfBound:
    case ZSTD_error_stage_wrong:
        return -EINVAL;
    default:
        return -EBADMSG;
    }
}

int craft_zstd_cctx_create(int level, struct craft_zstd_cctx **out) {
    if (out == NULL || level < ZSTD_minCLevel() || level > ZSTD_maxCLevel()) return -EINVAL;
    struct craft_zstd_cctx *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) return -ENOMEM;
    ctx->cctx = ZSTD_createCCtx();
    if (ctx->cctx == NULL) {
        free(ctx);
        return -ENOMEM;
    }
    size_t rc = ZSTD_CCtx_setParameter(ctx->cctx, ZSTD_c_compressionLevel, level);
    if (!ZSTD_isError(rc)) rc = ZSTD_CCtx_setParameter(ctx->cctx, ZSTD_c_checksumFlag, 1);
    if (ZSTD_isError(rc)) {
        ZSTD_freeCCtx(ctx->cctx);
        free(ctx);
        return -EINVAL;
    }
    *out = ctx;
    return 0;
}

void craft_zstd_cctx_destroy(struct craft_zstd_cctx *ctx) {
    if (ctx == NULL) return;
    ZSTD_freeCCtx(ctx->cctx);
    free(ctx);
}

int craft_zstd_cctx_reset(struct craft_zstd_cctx *ctx) {
    size_t rc = ZSTD_CCtx_reset(ctx->cctx, ZSTD_reset_session_only);
    return ZSTD_isError(rc) ? (int)zstd_failure(rc, &ctx->last_error) : 0;
}

int64_t craft_zstd_compress_stream(struct craft_zstd_cctx *ctx, const void *input, size_t in_len,
                                   size_t *in_pos, void *output, size_t out_cap, size_t *out_pos,
                                   int finish) {
    if (ctx == NULL || in_pos == NULL || out_pos == NULL || *in_pos > in_len || *out_pos > out_cap) return -EINVAL;
    ZSTD_inBuffer in = {.src = input, .size = in_len, .pos = *in_pos};
    ZSTD_outBuffer out = {.dst = output, .size = out_cap, .pos = *out_pos};
    size_t rc = ZSTD_compressStream2(ctx->cctx, &out, &in, finish ? ZSTD_e_end : ZSTD_e_continue);
    *in_pos = in.pos;
    *out_pos = out.pos;
    if (ZSTD_isError(rc)) return zstd_failure(rc, &ctx->last_error);
    return (int64_t)rc;
}

int craft_zstd_dctx_create(struct craft_zstd_dctx **out) {
    if (out == NULL) return -EINVAL;
    struct craft_zstd_dctx *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) return -ENOMEM;
    ctx->dctx = ZSTD_createDCtx();
    if (ctx->dctx == NULL) {
        free(ctx);
        return -ENOMEM;
    }
    *out = ctx;
    return 0;
}

void craft_zstd_dctx_destroy(struct craft_zstd_dctx *ctx) {
    if (ctx == NULL) return;
    ZSTD_freeDCtx(ctx->dctx);
    free(ctx);
}

int craft_zstd_dctx_reset(struct craft_zstd_dctx *ctx) {
    size_t rc = ZSTD_DCtx_reset(ctx->dctx, ZSTD_reset_session_only);
    return ZSTD_isError(rc) ? (int)zstd_failure(rc, &ctx->last_error) : 0;
}

int64_t craft_zstd_decompress_stream(struct craft_zstd_dctx *ctx, const void *input, size_t in_len,
                                     size_t *in_pos, void *output, size_t out_cap, size_t *out_pos) {
    if (ctx == NULL || in_pos == NULL || out_pos == NULL || *in_pos > in_len || *out_pos > out_cap) return -EINVAL;
    ZSTD_inBuffer in = {.src = input, .size = in_len, .pos = *in_pos};
    ZSTD_outBuffer out = {.dst = output, .size = out_cap, .pos = *out_pos};
    size_t rc = ZSTD_decompressStream(ctx->dctx, &out, &in);
    *in_pos = in.pos;
    *out_pos = out.pos;
    if (ZSTD_isError(rc)) return zstd_failure(rc, &ctx->last_error);
    return (int64_t)rc;
}

const char *craft_zstd_cctx_error_name(const struct craft_zstd_cctx *ctx) {
    return ctx->last_error == 0 ? "" : ZSTD_getErrorName(ctx->last_error);
}

const char *craft_zstd_dctx_error_name(const struct craft_zstd_dctx *ctx) {
    return ctx->last_error == 0 ? "" : ZSTD_getErrorName(ctx->last_error);
}
