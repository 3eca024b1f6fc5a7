#!/usr/bin/env python3
"""Load generator for airlockd (Tests/Bench/daemon.sh). Python 3.9+ standard library only.

    daemon_load.py --socket PATH --method probe|scan|status [--file FILE] [--expect VERDICT] [--rule RULE]
                   [--outcome OUTCOME] --clients N --requests M [--warmup W] [--label TEXT]

N client threads, each with its own connection and (for probe and scan) its own read-only descriptor of FILE. Each
sends W warm-up requests, waits at a barrier for the others, then sends M sequential requests: one framed JSON
object (4-byte big-endian length) with the descriptor attached as SCM_RIGHTS, then reads the whole framed reply.
Latency is per request, from just before the send to the last byte of the reply (time.perf_counter). Every reply,
warm-up included, must be `"ok": true` with the request's id; for probe and scan it must hold exactly one report,
whose verdict is VERDICT (default clean), whose findings include RULE when given, and whose detonation outcome is
OUTCOME when given ("none": no detonation at all). Anything else stops the run with exit status 1 and the reply.

Prints one JSON line: label, method, clients, requests, seconds (wall time from the barrier to the last reply),
rps (requests / seconds), the latencies in ms: p50, p90, p95, p99, max, mean (nearest-rank percentiles over every
measured request of every client), and clientCpuMs: this process's CPU time (user + system) over the measured
requests, per request.
"""
import argparse
import json
import math
import os
import socket
import struct
import sys
import threading
import time


class Failure(Exception):
    pass


def read_exactly(sock, n):
    chunks, got = [], 0
    while got < n:
        b = sock.recv(n - got)
        if not b:
            raise Failure(f"airlockd closed the connection after {got} of {n} bytes")
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def call(sock, frame_bytes, fd):
    """One request and its reply: (latency in seconds, reply bytes)."""
    t0 = time.perf_counter()
    if fd is None:
        sock.sendall(frame_bytes)
    else:
        sent = socket.send_fds(sock, [frame_bytes], [fd])
        if sent < len(frame_bytes):
            sock.sendall(frame_bytes[sent:])
    (n,) = struct.unpack(">I", read_exactly(sock, 4))
    body = read_exactly(sock, n)
    return time.perf_counter() - t0, body


def check(body, rid, args):
    try:
        reply = json.loads(body)
    except ValueError as e:
        raise Failure(f"reply is not JSON ({e}): {body[:600]!r}")
    if reply.get("ok") is not True or reply.get("id") != rid:
        raise Failure(f"request {rid}: reply is not ok for this id: {body[:600]!r}")
    if args.method == "status":
        if "status" not in reply:
            raise Failure(f"status reply without status: {body[:600]!r}")
        return
    reports = reply.get("reports")
    if not isinstance(reports, list) or len(reports) != 1:
        raise Failure(f"request {rid}: expected one report: {body[:600]!r}")
    r = reports[0]
    if args.expect != "any" and r.get("verdict") != args.expect:
        raise Failure(f"request {rid}: verdict {r.get('verdict')!r}, expected {args.expect!r}: {body[:900]!r}")
    if args.rule and not any(f.get("rule") == args.rule for f in r.get("findings", [])):
        raise Failure(f"request {rid}: no finding {args.rule}: {body[:900]!r}")
    if args.outcome:
        det = r.get("detonation")
        outcome = "none" if det is None else det.get("outcome")
        if outcome != args.outcome:
            raise Failure(f"request {rid}: detonation outcome {outcome!r}, expected {args.outcome!r}: {body[:900]!r}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--method", required=True, choices=["probe", "scan", "status"])
    ap.add_argument("--file")
    ap.add_argument("--expect", default="clean")
    ap.add_argument("--rule")
    ap.add_argument("--outcome")
    ap.add_argument("--clients", type=int, required=True)
    ap.add_argument("--requests", type=int, required=True, help="measured requests per client")
    ap.add_argument("--warmup", type=int, default=3, help="warm-up requests per client")
    ap.add_argument("--timeout", type=float, default=60, help="detonation deadline asked of the daemon, seconds")
    ap.add_argument("--worlds", type=int, help="worlds asked of the daemon for each probe (its default when absent)")
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    if args.method != "status" and not args.file:
        ap.error("--file is required for probe and scan")

    name = os.path.basename(args.file) if args.file else ""
    barrier = threading.Barrier(args.clients + 1)
    latencies = [[] for _ in range(args.clients)]
    errors = []
    done_at = [0.0] * args.clients

    def client(i):
        sock = fd = None
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(args.timeout + 30)
            sock.connect(args.socket)
            fd = os.open(args.file, os.O_RDONLY | os.O_CLOEXEC) if args.file else None
            rid = 0

            def one(measure):
                nonlocal rid
                rid += 1
                msg = {"airlock": 1, "id": rid, "method": args.method, "params": {}}
                if args.method != "status":
                    msg["params"] = {"name": name, "timeout": args.timeout}
                    if args.method == "probe" and args.worlds is not None:
                        msg["params"]["worlds"] = args.worlds
                body = json.dumps(msg, separators=(",", ":")).encode()
                dt, reply = call(sock, struct.pack(">I", len(body)) + body, fd)
                check(reply, rid, args)
                if measure:
                    latencies[i].append(dt)

            for _ in range(args.warmup):
                one(False)
        except BaseException as e:  # noqa: BLE001 -- reported below; the broken barrier stops everyone
            errors.append(f"client {i} (warm-up): {e}")
            barrier.abort()
            return
        try:
            barrier.wait()
            for _ in range(args.requests):
                if errors:
                    return
                one(True)
            done_at[i] = time.perf_counter()
        except threading.BrokenBarrierError:
            return
        except BaseException as e:  # noqa: BLE001
            errors.append(f"client {i}: {e}")
        finally:
            if fd is not None:
                os.close(fd)
            sock.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
    for t in threads:
        t.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    start = time.perf_counter()
    cpu0 = os.times()
    for t in threads:
        t.join()
    cpu1 = os.times()
    if errors:
        print(f"daemon_load.py {args.label or args.method}: FAILED", file=sys.stderr)
        for e in errors[:5]:
            print(f"  {e}", file=sys.stderr)
        sys.exit(1)

    lat = sorted(x for per in latencies for x in per)
    n = len(lat)
    if n != args.clients * args.requests:
        sys.exit(f"daemon_load.py: {n} latencies, expected {args.clients * args.requests}")
    seconds = max(done_at) - start

    def pct(p):  # nearest rank
        return lat[max(0, math.ceil(p / 100 * n) - 1)] * 1e3

    print(json.dumps({
        "label": args.label, "method": args.method, "clients": args.clients, "requests": n,
        "seconds": round(seconds, 4), "rps": round(n / seconds, 1),
        "p50": round(pct(50), 3), "p90": round(pct(90), 3), "p95": round(pct(95), 3), "p99": round(pct(99), 3),
        "max": round(lat[-1] * 1e3, 3), "mean": round(sum(lat) / n * 1e3, 3),
        "clientCpuMs": round((cpu1.user - cpu0.user + cpu1.system - cpu0.system) / n * 1e3, 3),
    }))


if __name__ == "__main__":
    main()
