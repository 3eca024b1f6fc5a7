#ifndef AIRLOCK_CZLIB_SHIM_H
#define AIRLOCK_CZLIB_SHIM_H
#include <zlib.h>

/* inflateInit2 is a macro. */
static inline int airlock_inflate_init_raw(z_streamp stream) { return inflateInit2(stream, -MAX_WBITS); }
/* zlib (windowBits 15) or gzip (windowBits 31) framing. */
static inline int airlock_inflate_init_window(z_streamp stream, int bits) { return inflateInit2(stream, bits); }
#endif
