#ifndef AIRLOCK_CSECCOMP_SHIM_H
#define AIRLOCK_CSECCOMP_SHIM_H
#include <seccomp.h>
#include <stdint.h>

/* Function-like macros Swift cannot import. */
static inline uint32_t airlock_scmp_act_errno(uint16_t err) { return SCMP_ACT_ERRNO(err); }
static inline uint32_t airlock_scmp_act_allow(void) { return SCMP_ACT_ALLOW; }
static inline uint32_t airlock_scmp_act_notify(void) { return SCMP_ACT_NOTIFY; }
static inline uint32_t airlock_scmp_act_log(void) { return SCMP_ACT_LOG; }
static inline uint32_t airlock_scmp_act_kill_process(void) { return SCMP_ACT_KILL_PROCESS; }
static inline uint32_t airlock_scmp_act_kill_thread(void) { return SCMP_ACT_KILL_THREAD; }
static inline uint32_t airlock_scmp_arch_native(void) { return SCMP_ARCH_NATIVE; }
static inline int airlock_nr_scmp_error(void) { return __NR_SCMP_ERROR; }
static inline uint32_t airlock_scmp_arch_x86_64(void) { return SCMP_ARCH_X86_64; }
static inline uint32_t airlock_scmp_arch_aarch64(void) { return SCMP_ARCH_AARCH64; }
#endif
