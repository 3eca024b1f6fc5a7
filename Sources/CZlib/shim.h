#ifndef AIRLOCK_CZLIB_SHIM_H
#define AIRLOCK_CZLIB_SHIM_H
#include <zlib.h>

/* inflateInit2 is a macro. */
static inline int airlock_inflate_init_raw(z_streamp stream) { return inflateInit2(stream, -MAX_WBITS); }
#endif
