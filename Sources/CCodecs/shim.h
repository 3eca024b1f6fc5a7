#ifndef AIRLOCK_CCODECS_SHIM_H
#define AIRLOCK_CCODECS_SHIM_H
/* The decompressors the static analysis opens packed models with: xz/lzma (and 7z's LZMA, LZMA2, BCJ, Delta
   through liblzma's raw decoder), bzip2, zstd and lz4 frames. Only their decoders are used. */
#include <lzma.h>
#include <bzlib.h>
#include <zstd.h>
#include <lz4frame.h>

/* LZMA_STREAM_INIT is a macro: a zeroed stream. */
static inline lzma_stream airlock_lzma_stream_init(void) {
    lzma_stream s = LZMA_STREAM_INIT;
    return s;
}
/* Filter ids are macros with casts, which Swift does not import. */
static const lzma_vli airlock_lzma_filter_lzma1 = LZMA_FILTER_LZMA1;
static const lzma_vli airlock_lzma_filter_lzma2 = LZMA_FILTER_LZMA2;
static const lzma_vli airlock_lzma_filter_x86 = LZMA_FILTER_X86;
static const lzma_vli airlock_lzma_filter_delta = LZMA_FILTER_DELTA;
static const lzma_vli airlock_lzma_vli_unknown = LZMA_VLI_UNKNOWN;
#endif
