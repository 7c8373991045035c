#!/usr/bin/env python3
"""Linux (kernel TCP) peers for synack's end-to-end tests.

Every subcommand is a real kernel TCP client or server, run inside a test namespace by the Rust
harness (tests/src/). Servers print a line containing `ready` once they listen. Clients print one
JSON line with what they observed, so that the Rust side makes the assertions. Every blocking
call carries a timeout: nothing here can hang a test.

The byte pattern is synack's: byte i of a stream is (i % 251).
"""

import argparse
import hashlib
import http.server
import json
import select
import socket
import socketserver
import sys
import threading
import time

PATTERN_PERIOD = 251
# A block of the pattern whose length is a multiple of its period, so that consecutive blocks
# continue the pattern.
BLOCK = bytes(i % PATTERN_PERIOD for i in range(PATTERN_PERIOD * 1024))


def pattern_chunks(total, offset=0):
    """Yields the pattern bytes [offset, offset + total) in blocks of at most len(BLOCK)."""
    sent = 0
    while sent < total:
        start = (offset + sent) % PATTERN_PERIOD
        n = min(len(BLOCK) - start, total - sent)
        yield memoryview(BLOCK)[start:start + n]
        sent += n


def pattern_sha256(total):
    h = hashlib.sha256()
    for chunk in pattern_chunks(total):
        h.update(chunk)
    return h.hexdigest()


def emit(obj):
    print(json.dumps(obj), flush=True)


def ready(what):
    print(f"ready {what}", flush=True)


# ---------------------------------------------------------------- servers (kernel stand-ins)

class EchoHandler(socketserver.BaseRequestHandler):
    """Echoes everything; after the peer's FIN (and everything echoed) closes its side."""

    def handle(self):
        sock = self.request
        sock.settimeout(self.server.io_timeout)
        try:
            while True:
                data = sock.recv(262144)
                if not data:
                    break
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class DiscardHandler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        sock.settimeout(self.server.io_timeout)
        try:
            while sock.recv(262144):
                pass
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class ThreadedTcpServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024
    io_timeout = 120


class HttpHandler(http.server.BaseHTTPRequestHandler):
    """synack's http app: `GET /N` answers N pattern bytes, any other path a small body."""

    protocol_version = "HTTP/1.1"
    server_version = "kernel-standin"

    def do_GET(self):
        fixed = self.server.fixed_body
        path = self.path
        if fixed is not None:
            body_len, chunks = len(fixed), [fixed]
        elif path.startswith("/") and path[1:].isdigit():
            body_len = int(path[1:])
            chunks = pattern_chunks(body_len)
        else:
            small = b"synack kernel stand-in\n"
            body_len, chunks = len(small), [small]
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(body_len))
        if self.headers.get("Connection", "").lower() == "close":
            # RFC 9112 9.6: the server SHOULD send "close" in its final response. wrk, for
            # one, reconnects only when it sees it, and counts a read error otherwise.
            self.send_header("Connection", "close")
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(chunk)

    def log_message(self, *args):
        pass


class ThreadedHttpServer(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024
    fixed_body = None


def serve(args):
    if args.kind == "http":
        server = ThreadedHttpServer((args.ip, args.port), HttpHandler)
        if args.fixed_body is not None:
            server.fixed_body = args.fixed_body.encode()
    elif args.kind == "echo":
        server = ThreadedTcpServer((args.ip, args.port), EchoHandler)
    else:
        server = ThreadedTcpServer((args.ip, args.port), DiscardHandler)
    ready(f"{args.kind} {args.ip}:{args.port}")
    server.serve_forever()


def echo_once(args):
    """Server side of `synack connect`: accepts one connection and records how it closed.

    client: echoes until the client's FIN, then closes (the client closed first).
    server: echoes exactly --bytes, checks that the client has not closed, closes first, then
    waits for the client's FIN.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.ip, args.port))
    listener.listen(8)
    listener.settimeout(args.timeout)
    ready(f"echo-once {args.ip}:{args.port}")
    result = {"received": 0, "sha256": None, "client_fin_first": None, "bytes_after_own_fin": 0,
              "eof": False, "error": None, "client": None}
    h = hashlib.sha256()
    try:
        sock, addr = listener.accept()
        result["client"] = f"{addr[0]}:{addr[1]}"
        sock.settimeout(args.timeout)
        deadline = time.monotonic() + args.timeout
        want = args.bytes if args.close_first == "server" else None
        while want is None or result["received"] < want:
            if time.monotonic() > deadline:
                raise TimeoutError("transfer did not finish in time")
            limit = 262144 if want is None else min(262144, want - result["received"])
            data = sock.recv(limit)
            if not data:
                result["eof"] = True
                break
            result["received"] += len(data)
            h.update(data)
            sock.sendall(data)
        if args.close_first == "client":
            result["client_fin_first"] = result["eof"]
            sock.shutdown(socket.SHUT_WR)
        else:
            # The client must wait for our FIN: nothing readable (no FIN) may be pending now.
            readable, _, _ = select.select([sock], [], [], 0.2)
            early_fin = False
            if readable:
                peek = sock.recv(1, socket.MSG_PEEK)
                early_fin = peek == b""
            result["client_fin_first"] = early_fin
            sock.shutdown(socket.SHUT_WR)
            while True:
                data = sock.recv(65536)
                if not data:
                    result["eof"] = True
                    break
                result["bytes_after_own_fin"] += len(data)
        sock.close()
    except Exception as e:  # noqa: BLE001 - reported to the Rust side
        result["error"] = f"{type(e).__name__}: {e}"
    result["sha256"] = h.hexdigest()
    emit(result)


# ---------------------------------------------------------------- clients

def echo_client(args):
    """Sends --bytes of the pattern while reading the echo, half-closes after sending, and reads
    until the server's FIN. The client closes first."""
    result = {"sent": 0, "received": 0, "sha256": None, "expected_sha256": None, "eof": False,
              "seconds": None, "error": None}
    start = time.monotonic()
    sock = socket.create_connection((args.ip, args.port), timeout=args.timeout)
    sock.settimeout(args.timeout)
    send_error = []

    def sender():
        try:
            for chunk in pattern_chunks(args.bytes):
                sock.sendall(chunk)
                result["sent"] += len(chunk)
            sock.shutdown(socket.SHUT_WR)
        except Exception as e:  # noqa: BLE001
            send_error.append(f"send: {type(e).__name__}: {e}")

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    h = hashlib.sha256()
    deadline = start + args.timeout
    try:
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"echo not complete after {args.timeout} s")
            data = sock.recv(262144)
            if not data:
                result["eof"] = True
                break
            result["received"] += len(data)
            h.update(data)
    except Exception as e:  # noqa: BLE001
        result["error"] = f"recv: {type(e).__name__}: {e}"
    t.join(max(0.0, deadline - time.monotonic()))
    if send_error:
        result["error"] = "; ".join(filter(None, [result["error"]] + send_error))
    sock.close()
    result["seconds"] = round(time.monotonic() - start, 3)
    result["sha256"] = h.hexdigest()
    result["expected_sha256"] = pattern_sha256(args.bytes)
    emit(result)


def echo_many(args):
    """--connections echo exchanges of --bytes each, at most --parallel at once: connect, send
    the pattern, half-close, read the echo to the server's FIN, compare. Reports how many
    succeeded and the first errors."""
    result = {"connections": args.connections, "ok": 0, "failed": 0, "errors": [], "seconds": None}
    expected = pattern_sha256(args.bytes)
    lock = threading.Lock()
    next_index = [0]
    start = time.monotonic()
    deadline = start + args.timeout

    def one():
        sock = socket.create_connection((args.ip, args.port), timeout=max(0.1, deadline - time.monotonic()))
        try:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            for chunk in pattern_chunks(args.bytes):
                sock.sendall(chunk)
            sock.shutdown(socket.SHUT_WR)
            h = hashlib.sha256()
            received = 0
            while True:
                data = sock.recv(262144)
                if not data:
                    break
                received += len(data)
                h.update(data)
            if received != args.bytes or h.hexdigest() != expected:
                raise ValueError(f"echo of {received} bytes differs from the {args.bytes} sent")
        finally:
            sock.close()

    def worker():
        while True:
            with lock:
                if next_index[0] >= args.connections:
                    return
                next_index[0] += 1
            try:
                one()
                ok = True
            except Exception as e:  # noqa: BLE001
                ok = False
                error = f"{type(e).__name__}: {e}"
            with lock:
                if ok:
                    result["ok"] += 1
                else:
                    result["failed"] += 1
                    if len(result["errors"]) < 5:
                        result["errors"].append(error)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(args.parallel, args.connections))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()) + 1)
    result["seconds"] = round(time.monotonic() - start, 3)
    result["errors"] = "; ".join(result["errors"]) or None
    emit(result)


def http_get(args):
    """One `GET path` with `Connection: close` over a raw socket: status, Content-Length, body
    length and sha256, and whether the server closed first (we never close before EOF)."""
    result = {"status": None, "content_length": None, "body_len": 0, "sha256": None,
              "server_closed_first": False, "seconds": None, "error": None}
    start = time.monotonic()
    h = hashlib.sha256()
    try:
        sock = socket.create_connection((args.ip, args.port), timeout=args.timeout)
        sock.settimeout(args.timeout)
        request = f"GET {args.path} HTTP/1.1\r\nHost: {args.ip}\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError(f"EOF inside the headers: {buf[:200]!r}")
            buf += data
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        result["status"] = int(lines[0].split()[1])
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                result["content_length"] = int(value.strip())
        h.update(rest)
        result["body_len"] = len(rest)
        deadline = start + args.timeout
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no EOF after {args.timeout} s")
            data = sock.recv(262144)
            if not data:
                result["server_closed_first"] = True
                break
            result["body_len"] += len(data)
            h.update(data)
        sock.close()
    except Exception as e:  # noqa: BLE001
        result["error"] = f"{type(e).__name__}: {e}"
    result["sha256"] = h.hexdigest()
    result["seconds"] = round(time.monotonic() - start, 3)
    emit(result)


def connect_probe(args):
    """One connect: prints refused, connected, timeout or the error."""
    start = time.monotonic()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(args.timeout)
    try:
        sock.connect((args.ip, args.port))
        outcome = "connected"
    except ConnectionRefusedError:
        outcome = "refused"
    except (socket.timeout, TimeoutError):
        outcome = "timeout"
    except OSError as e:
        outcome = f"error {type(e).__name__}: {e}"
    finally:
        sock.close()
    emit({"outcome": outcome, "seconds": round(time.monotonic() - start, 4)})


def wait_body(args):
    """After `go` on stdin, repeats a short GET until the body equals --expect; prints the time
    from `go` to the first such answer, or gives up after --within seconds."""
    ready("wait-body")
    line = sys.stdin.readline()
    if line.strip() != "go":
        emit({"answered": False, "error": f"expected go, got {line!r}"})
        return
    start = time.monotonic()
    expect = args.expect.encode()
    attempts, last = 0, None
    while time.monotonic() - start < args.within:
        attempts += 1
        try:
            sock = socket.create_connection((args.ip, args.port), timeout=args.attempt_timeout)
            sock.settimeout(args.attempt_timeout)
            sock.sendall(f"GET {args.path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            buf = b""
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                buf += data
            sock.close()
            body = buf.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in buf else b""
            last = f"body {body[:60]!r}"
            if body == expect:
                emit({"answered": True, "seconds": round(time.monotonic() - start, 4),
                      "attempts": attempts})
                return
        except Exception as e:  # noqa: BLE001
            last = f"{type(e).__name__}: {e}"
        time.sleep(0.002)
    emit({"answered": False, "attempts": attempts, "last": last,
          "seconds": round(time.monotonic() - start, 4)})


def connect_client(args):
    """Kernel stand-in for `synack connect`: same output lines, same close orders."""
    host, _, port = args.target.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(args.timeout)
    sock.bind((args.ip, 0))
    sock.connect((host, int(port)))
    errors = []

    def sender():
        try:
            for chunk in pattern_chunks(args.bytes):
                sock.sendall(chunk)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    h = hashlib.sha256()
    received = 0
    while received < args.bytes:
        data = sock.recv(min(262144, args.bytes - received))
        if not data:
            sys.exit(f"connection closed after {received} of {args.bytes} bytes")
        received += len(data)
        h.update(data)
    t.join(args.timeout)
    if errors:
        sys.exit(f"send failed: {errors[0]}")
    print(f"received {received} bytes sha256 {h.hexdigest()}", flush=True)
    if args.close_first == "client":
        sock.shutdown(socket.SHUT_WR)
        if sock.recv(1) != b"":
            sys.exit("data after our FIN")
    else:
        if sock.recv(1) != b"":
            sys.exit("data instead of the peer's FIN")
        sock.shutdown(socket.SHUT_WR)
    sock.close()
    print("closed", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("serve")
    s.add_argument("kind", choices=["echo", "http", "discard"])
    s.add_argument("--ip", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--fixed-body")
    s.set_defaults(func=serve)

    s = sub.add_parser("echo-once")
    s.add_argument("--ip", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--bytes", type=int, required=True)
    s.add_argument("--close-first", choices=["client", "server"], required=True,
                   help="which end closes first (synack's CloseFirst vocabulary)")
    s.add_argument("--timeout", type=float, default=30)
    s.set_defaults(func=echo_once)

    s = sub.add_parser("echo-client")
    s.add_argument("--ip", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--bytes", type=int, required=True)
    s.add_argument("--timeout", type=float, default=60)
    s.set_defaults(func=echo_client)

    s = sub.add_parser("echo-many")
    s.add_argument("--ip", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--connections", type=int, required=True)
    s.add_argument("--parallel", type=int, default=50)
    s.add_argument("--bytes", type=int, default=1000)
    s.add_argument("--timeout", type=float, default=60)
    s.set_defaults(func=echo_many)

    s = sub.add_parser("http-get")
    s.add_argument("--ip", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--path", required=True)
    s.add_argument("--timeout", type=float, default=60)
    s.set_defaults(func=http_get)

    s = sub.add_parser("connect-probe")
    s.add_argument("--ip", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--timeout", type=float, default=3)
    s.set_defaults(func=connect_probe)

    s = sub.add_parser("wait-body")
    s.add_argument("--ip", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--path", default="/")
    s.add_argument("--expect", required=True)
    s.add_argument("--within", type=float, default=3)
    s.add_argument("--attempt-timeout", type=float, default=0.1)
    s.set_defaults(func=wait_body)

    s = sub.add_parser("connect")
    s.add_argument("--ip", required=True)
    s.add_argument("--target", required=True)
    s.add_argument("--bytes", type=int, required=True)
    s.add_argument("--close-first", choices=["client", "server"], default="client")
    s.add_argument("--timeout", type=float, default=30)
    s.set_defaults(func=connect_client)

    s = sub.add_parser("pattern-sha256")
    s.add_argument("bytes", type=int)
    s.set_defaults(func=lambda a: print(pattern_sha256(a.bytes)))

    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
