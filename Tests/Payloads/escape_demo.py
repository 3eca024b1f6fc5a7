# A harmless "malicious" payload: every step tries to leave the sandbox and reports what happened.
import ctypes, os, socket

def attempt(what, fn):
    try:
        result = fn()
        print(f"  {what:<38} -> {result}")
    except Exception as e:
        print(f"  {what:<38} -> refused: {e.__class__.__name__}: {e}")

libc = ctypes.CDLL(None, use_errno=True)
def errno_of(rc):
    return "ok" if rc >= 0 else "refused: " + os.strerror(ctypes.get_errno())

print("inside the sandbox:")
attempt("read /etc/shadow", lambda: open("/etc/shadow").read()[:20])
attempt("write /usr/bin/evil", lambda: open("/usr/bin/evil", "w"))
attempt("connect 127.0.0.1:22", lambda: socket.create_connection(("127.0.0.1", 22), timeout=1))
attempt("os.system('id')", lambda: os.system("id"))
attempt("io_uring_setup", lambda: errno_of(libc.syscall(425, 1, 0)))
attempt("unshare(CLONE_NEWUSER)", lambda: errno_of(libc.unshare(0x10000000)))
attempt("kill(-1, SIGKILL)", lambda: os.kill(-1, 9))
status = open("/proc/self/status").read().splitlines()
print("  " + ", ".join(l.replace(":\t", "=") for l in status if l.startswith(("CapEff", "CapBnd", "NoNewPrivs", "Seccomp:"))))
