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
def connect_ssh():
    with socket.create_connection(("127.0.0.1", 22), timeout=1) as s:
        # The sandbox's own network namespace: every address is local to it and answered by the supervisor's sink.
        return (f"connected to {s.getpeername()[0]}:{s.getpeername()[1]}, the sandbox's emulated network: "
                "nothing left the machine (the trace records the connect)")
attempt("connect 127.0.0.1:22", connect_ssh)
def system_id():
    # os.system returns a wait status: the shell's exit status times 256. 127 is what the C library's system() child
    # exits with when it cannot start /bin/sh, and what a shell exits with for a command it cannot find.
    status = os.system("id")
    if not os.WIFEXITED(status):
        return f"{status} (killed by signal {os.WTERMSIG(status)})"
    code = os.WEXITSTATUS(status)
    if code != 127:
        return f"{status} (exit status {code})"
    why = ("/bin/sh is there, but the sandbox refused to execute it (execve denied: see the trace)"
           if os.path.exists("/bin/sh") else "there is no /bin/sh inside the sandbox")
    return f"{status} = exit status 127 << 8: the shell never ran; {why}"
attempt("os.system('id')", system_id)
attempt("io_uring_setup", lambda: errno_of(libc.syscall(425, 1, 0)))
attempt("unshare(CLONE_NEWUSER)", lambda: errno_of(libc.unshare(0x10000000)))
attempt("kill(-1, SIGKILL)", lambda: os.kill(-1, 9))
status = open("/proc/self/status").read().splitlines()
print("  " + ", ".join(l.replace(":\t", "=") for l in status if l.startswith(("CapEff", "CapBnd", "NoNewPrivs", "Seccomp:"))))
