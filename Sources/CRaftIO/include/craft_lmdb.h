/*
 * LMDB's C API, used directly by the Swift wrapper in RaftEngine/Metadata.
 * Nothing is wrapped here: the header only makes lmdb.h visible to Swift through CRaftIO.
 */
#ifndef CRAFT_LMDB_H
#define CRAFT_LMDB_H

#include <lmdb.h>

#endif
