#!/usr/bin/env python3
"""Misbehaving agents, for scripts/faults (scenario agents). Runs for SECONDS, then prints
one JSON object: how many INVITEs each agent got and what it did.

  noack   UDP: answers 200 and keeps re-sending it as if rgsd's ACK never came (0.5, 1, 2 s),
          then hangs up with BYE at 4 s, as RFC 3261 §13.3.1.4 tells a UAS without an ACK.
  silent  UDP: 180 Ringing, then nothing at all: no final response, no answer to CANCEL.
  vanish  UDP: answers 200, then is gone: no BYE, no RTP, no answer to anything.
  stall   TCP: answers 200 on the connection rgsd opens, then never reads it again.

Usage: badagents.py SECONDS NOACK_PORT SILENT_PORT VANISH_PORT STALL_PORT
"""
import json
import socket
import sys
import threading
import time

seconds = float(sys.argv[1])
ports = dict(zip(["noack", "silent", "vanish", "stall"], map(int, sys.argv[2:6])))
counts = {name: 0 for name in ports}
lock = threading.Lock()
SDP = "v=0\r\no=bad 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n"


def headers(msg):
    head = msg.split("\r\n\r\n", 1)[0].split("\r\n")
    out = {}
    for line in head[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            out.setdefault(k.strip().lower(), []).append(v.strip())
    return head[0], out


def response(msg, status, tag, body=None, transport="UDP", port=0):
    first, h = headers(msg)
    lines = [f"SIP/2.0 {status}"]
    lines += [f"Via: {v}" for v in h.get("via", [])]
    lines += [f"From: {h['from'][0]}", f"To: {h['to'][0]};tag={tag}", f"Call-ID: {h['call-id'][0]}",
              f"CSeq: {h['cseq'][0]}",
              f"Contact: <sip:bad@127.0.0.1:{port};transport={transport.lower()}>"]
    if body:
        lines += ["Content-Type: application/sdp", f"Content-Length: {len(body)}", "", body]
    else:
        lines += ["Content-Length: 0", "", ""]
    return "\r\n".join(lines)


def bye(invite, tag, port):
    _, h = headers(invite)
    contact = h.get("contact", ["<sip:rgsd@127.0.0.1>"])[0].strip("<>").split(">")[0]
    return "\r\n".join([
        f"BYE {contact} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKbye{time.monotonic_ns()}",
        f"From: {h['to'][0]};tag={tag}", f"To: {h['from'][0]}", f"Call-ID: {h['call-id'][0]}",
        "CSeq: 1 BYE", "Max-Forwards: 70", "Content-Length: 0", "", ""])


def udp_agent(name):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", ports[name]))
    sock.settimeout(0.2)
    timers = []  # (due, payload, addr)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        now = time.monotonic()
        for t in [t for t in timers if t[0] <= now]:
            timers.remove(t)
            sock.sendto(t[1].encode(), t[2])
        try:
            data, addr = sock.recvfrom(65535)
        except socket.timeout:
            continue
        msg = data.decode(errors="replace")
        method = msg.split(" ", 1)[0]
        if method != "INVITE" or "\r\nTo:" in msg and ";tag=" in msg.split("\r\nTo:", 1)[1].split("\r\n", 1)[0]:
            continue  # ACK, CANCEL, BYE, re-INVITE: ignored by all three
        with lock:
            counts[name] += 1
        tag = f"{name}{counts[name]}"
        if name == "silent":
            sock.sendto(response(msg, "180 Ringing", tag, port=ports[name]).encode(), addr)
            continue
        ok = response(msg, "200 OK", tag, SDP, port=ports[name])
        sock.sendto(ok.encode(), addr)
        if name == "noack":
            for delay in (0.5, 1.0, 2.0):
                timers.append((now + delay, ok, addr))
            timers.append((now + 4.0, bye(msg, tag, ports[name]), addr))


def tcp_agent():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", ports["stall"]))
    srv.listen(64)
    srv.settimeout(0.2)
    held = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            continue
        conn.settimeout(2)
        held.append(conn)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65535)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            continue
        msg = data.decode(errors="replace")
        if msg.startswith("INVITE "):
            with lock:
                counts["stall"] += 1
            conn.sendall(response(msg, "200 OK", f"stall{counts['stall']}", SDP, "TCP",
                                  ports["stall"]).encode())
        # From here on this connection is never read again.
    for c in held:
        c.close()


threads = [threading.Thread(target=udp_agent, args=(n,)) for n in ("noack", "silent", "vanish")]
threads.append(threading.Thread(target=tcp_agent))
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(counts))
