/*
 * SHA-256 (FIPS 180-4): the content address of a pack travelling as an attachment, checked
 * when it is written and when it is received from a peer.
 */
#ifndef CRAFT_SHA256_H
#define CRAFT_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct craft_sha256 {
    uint32_t state[8];
    uint64_t length; /* bytes hashed so far */
    uint8_t buffer[64];
    uint32_t buffered;
};

void craft_sha256_init(struct craft_sha256 *ctx);
void craft_sha256_update(struct craft_sha256 *ctx, const void *data, size_t length);
/* Writes the 32-byte digest; the context must be initialised again before reuse. */
void craft_sha256_final(struct craft_sha256 *ctx, uint8_t digest[32]);

/* Uses the CPU's SHA instructions when it has them (the default) or not (tests compare the
 * two). Returns whether they are used now. */
int craft_sha256_accelerate(int enable);

#endif
