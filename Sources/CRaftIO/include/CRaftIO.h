/*
 * CRaftIO: the thin C layer under RaftEngine.
 *
 * Syscalls, io_uring, zstd, crc32c and the LMDB C API, nothing else: no policy, no
 * threads, no callbacks into Swift. Every function returns >= 0 on success or -errno
 * (or a documented negative code) on failure; Swift never reads the global errno.
 */
#ifndef CRAFTIO_H
#define CRAFTIO_H

#include "craft_file.h"
#include "craft_batch.h"
#include "craft_zstd.h"
#include "craft_crc32c.h"
#include "craft_lmdb.h"
#include "craft_process.h"
#include "craft_sha256.h"

#endif
