/*
 * Sealed in-memory copies of a file (memfd), the form in which a file the sandbox's user could write is handed to
 * it. This runs in the supervisor, never between clone and exec.
 */
#define _GNU_SOURCE
#include "airlock_sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/types.h>
#include <unistd.h>

int airlock_memfd(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

/* Copies [from, to) of `fd` into `copy` at the same offsets, counting against *left. */
static int al_copy_range(int copy, int fd, off_t from, off_t to, uint64_t *left) {
    if (lseek(copy, from, SEEK_SET) < 0) return -1;
    off_t offset = from;
    while (offset < to) {
        uint64_t want = (uint64_t)(to - offset);
        if (want > (1u << 30)) want = 1u << 30;
        if (want > *left) {
            errno = EFBIG;
            return -1;
        }
        ssize_t n = sendfile(copy, fd, &offset, (size_t)want);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = EIO; /* the file got shorter */
            return -1;
        }
        *left -= (uint64_t)n;
    }
    return 0;
}

int airlock_sealed_copy(int fd, uint64_t size, uint64_t budget) {
    int copy = memfd_create("model", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (copy < 0) return -1;
    uint64_t left = budget;
    /* The size first: what is never written stays a hole, which costs no memory and reads as zeros. */
    int rc = ftruncate(copy, (off_t)size);
    off_t pos = 0;
    while (rc == 0 && (uint64_t)pos < size) {
        off_t data = lseek(fd, pos, SEEK_DATA);
        if (data < 0 && errno == ENXIO) break; /* only a hole from here on */
        off_t hole = data < 0 ? -1 : lseek(fd, data, SEEK_HOLE);
        if (data < 0 || hole < 0) {
            if (errno != EINVAL && errno != EOPNOTSUPP) {
                rc = -1;
                break;
            }
            data = pos; /* no hole detection here: all of it is data */
            hole = (off_t)size;
        }
        if ((uint64_t)data >= size) break;
        if ((uint64_t)hole > size) hole = (off_t)size;
        rc = al_copy_range(copy, fd, data, hole, &left);
        pos = hole;
    }
    if (rc < 0 || fcntl(copy, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0 ||
        lseek(copy, 0, SEEK_SET) < 0) {
        int saved = errno;
        close(copy);
        errno = saved;
        return -1;
    }
    return copy;
}
