#!/usr/bin/env python3
"""Bad input at rate, for scripts/faults (scenario badinput).

Against one rgsd (its PID, UDP and TCP SIP addresses), for SECONDS:
  - replays the SIP torture messages of tests/torture and mutations of them (bit flips,
    truncations, repeated and deleted bytes; seeded, so every run sends the same) at RATE
    messages/s over UDP from 127.0.0.5;
  - sends random datagrams, and RTP-shaped ones with random SSRCs, to every UDP port rgsd has
    open besides its SIP port (the media sockets of the calls in progress), 1,000 a second;
  - sends one INVITE whose SDP has 1,000 media lines and one OPTIONS with a 64 KiB header,
    over TCP, and notes what came back;
  - opens IDLE TCP connections to rgsd and leaves them idle, counting how many rgsd kept open.
Prints one JSON object with what it sent and saw, and rgsd's peak descriptor count.
"""
import json
import os
import random
import resource
import socket
import subprocess
import sys
import time

pid, udp, tcp, seconds, rate, idle, torture = sys.argv[1:8]
seconds, rate, idle = float(seconds), int(rate), int(idle)


def addr(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


udp, tcp = addr(udp), addr(tcp)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, idle + 1024)), hard))

corpus = []
for root, _, files in os.walk(torture):
    for f in sorted(files):
        if f.endswith(".sip"):
            with open(os.path.join(root, f), "rb") as fh:
                corpus.append(fh.read())
rng = random.Random(4475)


def mutate(msg):
    b = bytearray(msg)
    for _ in range(rng.randint(1, 8)):
        kind = rng.randrange(4)
        if not b:
            break
        i = rng.randrange(len(b))
        if kind == 0:
            b[i] ^= 1 << rng.randrange(8)
        elif kind == 1:
            del b[i:]
        elif kind == 2:
            b[i:i] = b[i:i + rng.randint(1, 64)] * rng.randint(1, 20)
        else:
            del b[i:i + rng.randint(1, 16)]
    return bytes(b[:60000])


messages = corpus + [mutate(rng.choice(corpus)) for _ in range(2000)]


def fds():
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def media_ports():
    out = subprocess.run(["ss", "-Hunap"], capture_output=True, text=True).stdout
    ports = []
    for line in out.splitlines():
        if f"pid={pid}," not in line:
            continue
        local = line.split()[3]
        port = int(local.rsplit(":", 1)[1])
        if port != udp[1]:
            ports.append(port)
    return ports


def over_tcp(data, wait=2.0):
    """Sends data on a new connection; returns the status line of the first final response,
    "closed" when rgsd closed the connection first, or "no answer"."""
    s = socket.create_connection(tcp, timeout=wait)
    try:
        s.sendall(data)
        s.settimeout(wait)
        got = b""
        while True:
            while b"\r\n\r\n" not in got:
                chunk = s.recv(4096)
                if not chunk:
                    return "closed"
                got += chunk
            head, got = got.split(b"\r\n\r\n", 1)
            status = head.split(b"\r\n", 1)[0].decode(errors="replace")
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    got = got[int(line.split(b":", 1)[1]):]
            if not status.startswith("SIP/2.0 1"):
                return status
    except (socket.timeout, ConnectionError) as e:
        return f"no answer ({type(e).__name__})"
    finally:
        s.close()


local = f"127.0.0.1:{tcp[1]}"
sdp = "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" + "".join(
    f"m=audio {30000 + 2 * i} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n" for i in range(1000))
big_sdp = (
    f"INVITE sip:sales@{local} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKbig1\r\n"
    f"From: <sip:bad@127.0.0.1>;tag=b1\r\nTo: <sip:sales@{local}>\r\nCall-ID: bigsdp-1\r\n"
    f"CSeq: 1 INVITE\r\nContact: <sip:bad@127.0.0.1:5999;transport=tcp>\r\nMax-Forwards: 70\r\n"
    f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}").encode()
big_header = (
    f"OPTIONS sip:sales@{local} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKbig2\r\n"
    f"From: <sip:bad@127.0.0.1>;tag=b2\r\nTo: <sip:sales@{local}>\r\nCall-ID: bighdr-1\r\n"
    f"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nX-Big: {'a' * 65536}\r\nContent-Length: 0\r\n\r\n").encode()

result = {"fds_at_start": fds()}
result["sdp_1000_media_lines"] = over_tcp(big_sdp)
result["header_64k"] = over_tcp(big_header)

# Idle connections, opened at once and kept.
held = []
refused = 0
for _ in range(idle):
    try:
        held.append(socket.create_connection(tcp, timeout=2))
    except OSError:
        refused += 1
time.sleep(1)
closed_by_rgsd = 0
for s in held:
    s.setblocking(False)
    try:
        if s.recv(1) == b"":
            closed_by_rgsd += 1
    except BlockingIOError:
        pass
    except OSError:
        closed_by_rgsd += 1
result["idle_opened"] = len(held)
result["idle_refused_at_connect"] = refused
result["idle_closed_by_rgsd_at_once"] = closed_by_rgsd

sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sip.bind(("127.0.0.5", 0))
sip.setblocking(False)
noise = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
noise.bind(("127.0.0.6", 0))
sent = garbage = answers = 0
peak_fds = fds()
start = time.monotonic()
next_ports = 0.0
ports = []
while time.monotonic() - start < seconds:
    tick = time.monotonic()
    if tick >= next_ports:
        ports = media_ports()
        peak_fds = max(peak_fds, fds())
        next_ports = tick + 1.0
    for _ in range(rate // 100):
        try:
            sip.sendto(messages[sent % len(messages)], udp)
        except OSError:
            pass
        sent += 1
    for _ in range(10):
        if not ports:
            break
        port = ports[garbage % len(ports)]
        if garbage % 2:
            pkt = bytes([0x80, 0]) + rng.randbytes(10) + rng.randbytes(rng.randint(0, 200))
        else:
            pkt = rng.randbytes(rng.randint(1, 1400))
        try:
            noise.sendto(pkt, ("127.0.0.1", port))
        except OSError:
            pass
        garbage += 1
    while True:
        try:
            sip.recvfrom(65535)
            answers += 1
        except BlockingIOError:
            break
    time.sleep(max(0.0, 0.01 - (time.monotonic() - tick)))
still_open = 0
for s in held:
    try:
        if s.recv(1) != b"":
            still_open += 1
    except BlockingIOError:
        still_open += 1
    except OSError:
        pass
    s.close()
result.update(
    sip_messages_sent=sent,
    sip_answers=answers,
    media_garbage_sent=garbage,
    media_ports_last_seen=len(ports),
    idle_still_open_at_end=still_open,
    peak_fds=peak_fds,
    fds_at_end=fds(),
)
print(json.dumps(result))
