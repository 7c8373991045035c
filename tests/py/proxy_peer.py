#!/usr/bin/env python3
"""Linux (kernel TCP) peers for the `synack proxy` end-to-end tests (tests/tests/e2e_proxy.rs).

Servers print a line containing `ready` once they listen; clients print one JSON line with what
they observed, and the Rust side asserts. Every blocking call has a timeout.
"""

import argparse
import json
import socket
import socketserver
import threading
import time

REQUEST = b"GET / HTTP/1.0\r\nHost: upstream\r\n\r\n"


def emit(obj):
    print(json.dumps(obj), flush=True)


def read_request(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def slow_server(args):
    """Answers each request (read up to its blank line) after --delay seconds with a 200 and
    --body-bytes of 'x', then closes."""
    body = b"x" * args.body_bytes
    head = b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.settimeout(30)
            read_request(self.request)
            time.sleep(args.delay)
            self.request.sendall(head + body)

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True
        request_queue_size = 1024

    server = Server((args.ip, args.port), Handler)
    print(f"ready slow-server {args.ip}:{args.port}", flush=True)
    server.serve_forever()


def one_request(ip, port, half_close, timeout, expect):
    """Sends the request (and FIN right behind it with half_close), reads until EOF. Returns
    (ok, detail)."""
    try:
        sock = socket.create_connection((ip, port), timeout=timeout)
        sock.settimeout(timeout)
        sock.sendall(REQUEST)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        sock.close()
    except Exception as e:  # noqa: BLE001
        return False, f"{type(e).__name__}: {e}"
    if not data.startswith(b"HTTP/1.") or b" 200 " not in data.split(b"\r\n", 1)[0]:
        return False, f"bad answer: {data[:80]!r}"
    body = data.split(b"\r\n\r\n", 1)[-1]
    if expect is not None and len(body) != expect:
        return False, f"body of {len(body)} bytes, want {expect}"
    return True, ""


def requests(args):
    """--count requests, --parallel at once; each on its own connection read to EOF."""
    result = {"ok": 0, "errors": 0, "first_errors": "", "seconds": None}
    errors = []
    lock = threading.Lock()
    start = time.monotonic()
    todo = list(range(args.count))

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                todo.pop()
            ok, detail = one_request(args.ip, args.port, args.half_close, args.timeout, args.expect_body)
            with lock:
                if ok:
                    result["ok"] += 1
                else:
                    result["errors"] += 1
                    if len(errors) < 5:
                        errors.append(detail)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.parallel)]
    for t in threads:
        t.start()
    print(f"started {args.parallel}", flush=True)
    for t in threads:
        t.join(args.timeout + 5)
    result["seconds"] = round(time.monotonic() - start, 3)
    result["first_errors"] = " | ".join(errors)
    emit(result)


def expect_reset(args):
    """Connects, sends the request and waits: `reset` when the connection is reset (how long
    after the connect), `eof`, `data` or `timeout` otherwise."""
    result = {"result": None, "seconds": None, "detail": ""}
    start = time.monotonic()
    try:
        sock = socket.create_connection((args.ip, args.port), timeout=args.timeout)
        start = time.monotonic()
        sock.settimeout(args.timeout)
        sock.sendall(REQUEST)
        data = sock.recv(65536)
        result["result"] = "data" if data else "eof"
        result["detail"] = repr(data[:80])
    except ConnectionResetError:
        result["result"] = "reset"
    except (socket.timeout, TimeoutError):
        result["result"] = "timeout"
    except Exception as e:  # noqa: BLE001
        result["result"] = "error"
        result["detail"] = f"{type(e).__name__}: {e}"
    result["seconds"] = round(time.monotonic() - start, 3)
    emit(result)


def stream_server(args):
    """Sends --bytes of 'x' on each connection after reading the request, then closes; with
    --bytes 0, sends without end and never reads the request (so that a killed server leaves
    unread data, and the kernel resets its connections)."""
    block = b"x" * 65536

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            sock = self.request
            sock.settimeout(60)
            if args.bytes:
                read_request(sock)
            sent = 0
            while args.bytes == 0 or sent < args.bytes:
                n = 65536 if args.bytes == 0 else min(65536, args.bytes - sent)
                sock.sendall(block[:n])
                sent += n

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    server = Server((args.ip, args.port), Handler)
    print(f"ready stream-server {args.ip}:{args.port}", flush=True)
    server.serve_forever()


def stream_client(args):
    """Connects and sends the request; reads nothing for --pause seconds (printing `paused`
    first), then reads until EOF or an error, printing `receiving` after the first MB."""
    result = {"result": None, "bytes": 0, "seconds": None, "detail": ""}
    start = time.monotonic()
    try:
        sock = socket.create_connection((args.ip, args.port), timeout=args.timeout)
        sock.settimeout(args.timeout)
        sock.sendall(REQUEST)
        print("paused", flush=True)
        time.sleep(args.pause)
        if args.read_for > 0:
            # A slow reader: --read-chunk bytes every --read-every-ms for --read-for seconds,
            # then it stops (closing with data unread: the kernel resets).
            end = time.monotonic() + args.read_for
            print("reading", flush=True)
            while time.monotonic() < end:
                data = sock.recv(args.read_chunk)
                if not data:
                    result["result"] = "eof"
                    break
                result["bytes"] += len(data)
                time.sleep(args.read_every_ms / 1000)
            else:
                result["result"] = "stopped"
            result["seconds"] = round(time.monotonic() - start, 3)
            emit(result)
            return
        said = False
        while True:
            data = sock.recv(262144)
            if not data:
                result["result"] = "eof"
                break
            result["bytes"] += len(data)
            if not said and result["bytes"] >= 1 << 20:
                said = True
                print("receiving", flush=True)
    except ConnectionResetError:
        result["result"] = "reset"
    except (socket.timeout, TimeoutError):
        result["result"] = "timeout"
    except Exception as e:  # noqa: BLE001
        result["result"] = "error"
        result["detail"] = f"{type(e).__name__}: {e}"
    result["seconds"] = round(time.monotonic() - start, 3)
    emit(result)


def halfclose_server(args):
    """Answers the request (up to its blank line) with a 200 and half-closes at once, then
    reads what the client still sends until its FIN and prints {"after_fin": bytes} per
    connection: the upstream closes its side first."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            sock = self.request
            sock.settimeout(20)
            read_request(sock)
            sock.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
            sock.shutdown(socket.SHUT_WR)
            after = 0
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                after += len(data)
            emit({"after_fin": after})

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    server = Server((args.ip, args.port), Handler)
    print(f"ready halfclose-server {args.ip}:{args.port}", flush=True)
    server.serve_forever()


def talk_after_fin(args):
    """Sends the request, reads the answer up to the server's FIN, then sends --bytes more and
    closes: {"answer": text, "eof": bool, "sent_after": n, "error": ...}."""
    result = {"answer": "", "eof": False, "sent_after": 0, "error": None}
    try:
        sock = socket.create_connection((args.ip, args.port), timeout=args.timeout)
        sock.settimeout(args.timeout)
        sock.sendall(REQUEST)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                result["eof"] = True
                break
            data += chunk
        result["answer"] = data.decode(errors="replace")
        sock.sendall(b"y" * args.bytes)
        result["sent_after"] = args.bytes
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(args.timeout)
        sock.recv(1)
        sock.close()
    except Exception as e:  # noqa: BLE001
        result["error"] = f"{type(e).__name__}: {e}"
    emit(result)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("slow-server")
    s.add_argument("--ip", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--delay", type=float, default=1.0)
    s.add_argument("--body-bytes", type=int, default=1000)
    s.set_defaults(func=slow_server)
    s = sub.add_parser("requests")
    s.add_argument("--ip", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--count", type=int, default=1)
    s.add_argument("--parallel", type=int, default=1)
    s.add_argument("--half-close", action="store_true")
    s.add_argument("--expect-body", type=int)
    s.add_argument("--timeout", type=float, default=10)
    s.set_defaults(func=requests)
    s = sub.add_parser("expect-reset")
    s.add_argument("--ip", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--timeout", type=float, default=10)
    s.set_defaults(func=expect_reset)
    s = sub.add_parser("stream-server")
    s.add_argument("--ip", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--bytes", type=int, default=0)
    s.set_defaults(func=stream_server)
    s = sub.add_parser("stream-client")
    s.add_argument("--ip", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--pause", type=float, default=0)
    s.add_argument("--timeout", type=float, default=20)
    s.add_argument("--read-for", type=float, default=0)
    s.add_argument("--read-chunk", type=int, default=1024)
    s.add_argument("--read-every-ms", type=float, default=1)
    s.set_defaults(func=stream_client)
    s = sub.add_parser("halfclose-server")
    s.add_argument("--ip", required=True)
    s.add_argument("--port", type=int, required=True)
    s.set_defaults(func=halfclose_server)
    s = sub.add_parser("talk-after-fin")
    s.add_argument("--ip", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--bytes", type=int, default=100000)
    s.add_argument("--timeout", type=float, default=10)
    s.set_defaults(func=talk_after_fin)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
