#ifndef AIRLOCK_CCAP_SHIM_H
#define AIRLOCK_CCAP_SHIM_H
#include <sys/capability.h>
#endif
