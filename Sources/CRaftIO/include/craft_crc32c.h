/*
 * CRC-32C (Castagnoli, as in iSCSI RFC 3720 and ext4). craft_crc32c_extend uses the CPU's
 * crc32 instruction where it exists (SSE 4.2, ARMv8 CRC) and a table otherwise.
 * `crc` is the value returned for the previous piece (0 to start).
 */
#ifndef CRAFT_CRC32C_H
#define CRAFT_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t craft_crc32c_extend(uint32_t crc, const void *data, size_t length);

/* The table implementation, always available (for tests and for CPUs without the instruction). */
uint32_t craft_crc32c_extend_software(uint32_t crc, const void *data, size_t length);

/* 1 when craft_crc32c_extend uses a hardware instruction on this CPU, 0 otherwise. */
int craft_crc32c_is_hardware(void);

#endif
