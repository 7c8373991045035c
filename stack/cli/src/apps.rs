//! The applications `synack serve` runs: echo, http and discard. Per-connection state lives
//! in arrays indexed by the connection's slab index, sized at start-up: nothing allocates
//! while serving.

use synack::iface::{App, ConnId, Interface};
use synack::tcp::CloseReason;
use synack::time::Instant;

use crate::idle::{Deadlines, Phase};

/// Echoes every byte back; closes after the peer's FIN once everything is echoed. A
/// connection that moves no byte for the idle timeout is closed.
pub struct Echo {
    peer_closed: Vec<bool>,
    deadlines: Deadlines,
}

impl Echo {
    pub fn new(max_connections: usize, deadlines: Deadlines) -> Echo {
        Echo { peer_closed: vec![false; max_connections], deadlines }
    }

    fn pump(&mut self, iface: &mut Interface, conn: ConnId) {
        if iface.splice(conn, conn, usize::MAX).is_ok_and(|n| n > 0) {
            self.deadlines.progress(iface, conn);
        }
        if self.peer_closed[conn.index() as usize] && iface.recv_queue_len(conn) == 0 {
            iface.close(conn);
        }
    }
}

impl App for Echo {
    fn on_accept(&mut self, iface: &mut Interface, conn: ConnId) {
        self.peer_closed[conn.index() as usize] = false;
        self.deadlines.progress(iface, conn);
    }
    fn on_closed(&mut self, _: &mut Interface, conn: ConnId, _: CloseReason) {
        self.deadlines.forget(conn);
    }
    fn on_poll(&mut self, iface: &mut Interface, now: Instant) {
        self.deadlines.sweep(iface, now, |_| Phase::Idle);
    }
    fn next_wakeup(&self) -> Option<Instant> {
        self.deadlines.next_wakeup()
    }
    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        self.pump(iface, conn);
    }
    fn on_writable(&mut self, iface: &mut Interface, conn: ConnId) {
        self.pump(iface, conn);
    }
    fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
        self.peer_closed[conn.index() as usize] = true;
        self.pump(iface, conn);
    }
}

/// Reads and drops everything; closes after the peer's FIN.
pub struct Discard;

impl App for Discard {
    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        let (a, b) = iface.recv_slices(conn);
        let n = a.len() + b.len();
        iface.recv_consume(conn, n);
    }
    fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
        self.on_readable(iface, conn);
        iface.close(conn);
    }
}

/// sockperf's message header: a sequence number (u64), flags (u16), the whole message's
/// length (u32), all big-endian; 14 bytes.
const SOCKPERF_HEADER: usize = 14;
const SOCKPERF_CLIENT: u16 = 1;
const SOCKPERF_PONG: u16 = 2;
const SOCKPERF_MAX_MESSAGE: usize = 65_536;

/// A sockperf-compatible server (what `sockperf server --tcp` does): every message that asks
/// for a pong is sent back with the client flag cleared; others are read and dropped. Pure
/// echo is not enough for sockperf: its client ignores its own (client-flagged) messages.
pub struct Sockperf {
    message: Vec<u8>,
}

impl Sockperf {
    pub fn new() -> Sockperf {
        Sockperf { message: vec![0; SOCKPERF_MAX_MESSAGE] }
    }

    fn pump(&mut self, iface: &mut Interface, conn: ConnId) {
        loop {
            let (a, b) = iface.recv_slices(conn);
            if a.len() + b.len() < SOCKPERF_HEADER {
                return;
            }
            let mut header = [0u8; SOCKPERF_HEADER];
            copy_prefix(a, b, &mut header);
            let flags = u16::from_be_bytes([header[8], header[9]]);
            let len = u32::from_be_bytes([header[10], header[11], header[12], header[13]]) as usize;
            if !(SOCKPERF_HEADER..=SOCKPERF_MAX_MESSAGE).contains(&len) {
                iface.abort(conn); // not sockperf: a length no message has
                return;
            }
            if a.len() + b.len() < len {
                return;
            }
            if flags & SOCKPERF_PONG != 0 {
                if iface.send_capacity(conn) < len {
                    return; // resumed by on_writable
                }
                copy_prefix(a, b, &mut self.message[..len]);
                let cleared = (flags & !SOCKPERF_CLIENT).to_be_bytes();
                self.message[8..10].copy_from_slice(&cleared);
                iface.recv_consume(conn, len);
                let _ = iface.send(conn, &self.message[..len]);
            } else {
                iface.recv_consume(conn, len);
            }
        }
    }
}

/// Copies the first `out.len()` bytes of the two slices `a` then `b`.
fn copy_prefix(a: &[u8], b: &[u8], out: &mut [u8]) {
    let from_a = a.len().min(out.len());
    out[..from_a].copy_from_slice(&a[..from_a]);
    let rest = out.len() - from_a;
    out[from_a..].copy_from_slice(&b[..rest]);
}

impl App for Sockperf {
    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        self.pump(iface, conn);
    }
    fn on_writable(&mut self, iface: &mut Interface, conn: ConnId) {
        self.pump(iface, conn);
    }
    fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
        self.pump(iface, conn);
        iface.close(conn);
    }
}

/// Longest request head accepted.
const REQUEST_MAX: usize = 2048;
/// Body bytes: byte i of a body is `i % 251`; the array holds 64 KiB from any phase.
const BODY_CHUNK: usize = 64 * 1024;
static BODY: [u8; BODY_CHUNK + 251] = {
    let mut body = [0u8; BODY_CHUNK + 251];
    let mut i = 0;
    while i < body.len() {
        body[i] = (i % 251) as u8;
        i += 1;
    }
    body
};
/// The body of any path that is not `/N`.
const DEFAULT_BODY: u64 = 2;

#[derive(Clone, Copy, Default)]
struct HttpConn {
    /// Bytes of a request head buffered so far.
    head_len: usize,
    /// Body bytes still to send, and sent so far.
    body_left: u64,
    body_sent: u64,
    /// Close once the response is out (`Connection: close`, HTTP/1.0, or an error).
    close_after: bool,
    peer_closed: bool,
}

/// HTTP/1.1: `GET /N` answers 200 with N body bytes, any other path a 2-byte body.
/// Keep-alive is honoured; after a response to `Connection: close` the server closes first.
/// Each request head must arrive whole within the idle timeout of the accept or of the last
/// response (as nginx's `client_header_timeout`: bytes trickled in do not extend it, so a
/// slowloris is cut), and a response must keep draining: otherwise the connection is closed
/// (between requests) or aborted (mid-request).
pub struct Http {
    conns: Vec<HttpConn>,
    heads: Vec<u8>,
    deadlines: Deadlines,
}

impl Http {
    pub fn new(max_connections: usize, deadlines: Deadlines) -> Http {
        Http {
            conns: vec![HttpConn::default(); max_connections],
            heads: vec![0; max_connections * REQUEST_MAX],
            deadlines,
        }
    }

    /// Reads requests and answers them, one at a time (a pipelined request waits in the
    /// receive buffer until the response before it is queued).
    fn serve(&mut self, iface: &mut Interface, conn: ConnId) {
        let index = conn.index() as usize;
        loop {
            if !self.send_body(iface, conn) {
                return; // the send buffer is full: on_writable resumes
            }
            let state = &mut self.conns[index];
            if state.close_after {
                iface.close(conn);
                return;
            }
            // The common case: nothing buffered and the whole head in the ring's first slice,
            // read where it lies.
            if state.head_len == 0 {
                let (a, _) = iface.recv_slices(conn);
                if let Some(end) = find_head_end(&a[..a.len().min(REQUEST_MAX)]) {
                    let request = parse_head(&a[..end]);
                    iface.recv_consume(conn, end);
                    if !self.respond(iface, conn, &request) {
                        self.conns[index].close_after = true;
                    }
                    continue;
                }
            }
            let head = &mut self.heads[index * REQUEST_MAX..(index + 1) * REQUEST_MAX];
            // Take only as far as the end of one head, so that a pipelined request stays queued.
            let end = {
                let (a, b) = iface.recv_slices(conn);
                let start = state.head_len;
                let take_a = a.len().min(REQUEST_MAX - start);
                head[start..start + take_a].copy_from_slice(&a[..take_a]);
                let take_b = b.len().min(REQUEST_MAX - start - take_a);
                head[start + take_a..start + take_a + take_b].copy_from_slice(&b[..take_b]);
                let total = start + take_a + take_b;
                match find_head_end(&head[..total]) {
                    Some(end) => {
                        iface.recv_consume(conn, end - start);
                        Some(end)
                    }
                    None => {
                        iface.recv_consume(conn, total - start);
                        state.head_len = total;
                        if total == REQUEST_MAX {
                            None
                        } else {
                            Some(usize::MAX)
                        }
                    }
                }
            };
            let end = match end {
                Some(usize::MAX) => {
                    // No complete head yet.
                    if state.peer_closed {
                        iface.close(conn);
                    }
                    return;
                }
                Some(end) => end,
                None => {
                    state.close_after = true;
                    state.head_len = 0;
                    let _ = iface.send(conn, b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    continue;
                }
            };
            let request = parse_head(&head[..end]);
            self.conns[index].head_len = 0;
            if !self.respond(iface, conn, &request) {
                self.conns[index].close_after = true;
            }
        }
    }

    /// Starts the response to a whole request: its head queued, its body to follow. False
    /// when the head does not fit the send buffer.
    fn respond(&mut self, iface: &mut Interface, conn: ConnId, request: &Request) -> bool {
        // A whole request: the next one has a timeout from now.
        self.deadlines.progress(iface, conn);
        let state = &mut self.conns[conn.index() as usize];
        state.close_after = request.close;
        state.body_left = request.body_len;
        state.body_sent = 0;
        let mut header = [0u8; 96];
        let len = response_head(&mut header, request.body_len, request.close);
        if iface.send_capacity(conn) < len {
            // A response head is never split: the buffer is far larger, so this is a client
            // pipelining faster than it reads.
            return false;
        }
        let _ = iface.send(conn, &header[..len]);
        true
    }

    /// Queues as much of the current body as fits; true when it is all queued.
    fn send_body(&mut self, iface: &mut Interface, conn: ConnId) -> bool {
        let state = &mut self.conns[conn.index() as usize];
        while state.body_left > 0 {
            let phase = (state.body_sent % 251) as usize;
            let want = state.body_left.min(BODY_CHUNK as u64) as usize;
            match iface.send(conn, &BODY[phase..phase + want]) {
                Ok(n) if n > 0 => {
                    state.body_left -= n as u64;
                    state.body_sent += n as u64;
                }
                _ => return false,
            }
        }
        true
    }
}

struct Request {
    body_len: u64,
    close: bool,
}

fn find_head_end(bytes: &[u8]) -> Option<usize> {
    // A head is a few short lines: test each line end rather than build a substring searcher.
    memchr::memchr_iter(b'\n', bytes).find(|&p| p >= 3 && &bytes[p - 3..=p] == b"\r\n\r\n").map(|p| p + 1)
}

/// `HTTP/1.1 200 OK` with the body's length and whether the server closes after it, written
/// into `out` (96 bytes hold the longest); returns its length. By hand: `write!` costs more
/// than the rest of a keep-alive request's handling.
fn response_head(out: &mut [u8; 96], body_len: u64, close: bool) -> usize {
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        out[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(b"HTTP/1.1 200 OK\r\nContent-Length: ");
    let mut digits = [0u8; 20];
    let mut n = body_len;
    let mut first = digits.len();
    loop {
        first -= 1;
        digits[first] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    put(&digits[first..]);
    put(if close { b"\r\nConnection: close\r\n\r\n" } else { b"\r\nConnection: keep-alive\r\n\r\n" });
    at
}

fn parse_head(head: &[u8]) -> Request {
    let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(|&b| b == b' ');
    let _method = parts.next();
    let path = parts.next().unwrap_or_default();
    let version = parts.next().unwrap_or_default();
    let body_len = path
        .strip_prefix(b"/")
        .filter(|digits| !digits.is_empty() && digits.len() <= 12 && digits.iter().all(u8::is_ascii_digit))
        .map(|digits| digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
        .unwrap_or(DEFAULT_BODY);
    let mut close = version != b"HTTP/1.1";
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        if line[..colon].eq_ignore_ascii_case(b"connection") {
            let value = line[colon + 1..].trim_ascii();
            if value.eq_ignore_ascii_case(b"close") {
                close = true;
            } else if value.eq_ignore_ascii_case(b"keep-alive") {
                close = false;
            }
        }
    }
    Request { body_len, close }
}

impl App for Http {
    fn on_accept(&mut self, iface: &mut Interface, conn: ConnId) {
        self.conns[conn.index() as usize] = HttpConn::default();
        self.deadlines.progress(iface, conn);
    }
    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        self.serve(iface, conn);
    }
    fn on_writable(&mut self, iface: &mut Interface, conn: ConnId) {
        // The client reads what we send: progress.
        self.deadlines.progress(iface, conn);
        self.serve(iface, conn);
    }
    fn on_poll(&mut self, iface: &mut Interface, now: Instant) {
        let conns = &self.conns;
        self.deadlines.sweep(iface, now, |conn| {
            let c = &conns[conn.index() as usize];
            if c.head_len > 0 || c.body_left > 0 {
                Phase::Busy
            } else {
                Phase::Idle
            }
        });
    }
    fn next_wakeup(&self) -> Option<Instant> {
        self.deadlines.next_wakeup()
    }
    fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
        self.conns[conn.index() as usize].peer_closed = true;
        self.serve(iface, conn);
    }
    fn on_closed(&mut self, _: &mut Interface, conn: ConnId, _: CloseReason) {
        self.conns[conn.index() as usize] = HttpConn::default();
        self.deadlines.forget(conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads_are_parsed() {
        let r = parse_head(b"GET /123 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert_eq!((r.body_len, r.close), (123, true));
        let r = parse_head(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!((r.body_len, r.close), (DEFAULT_BODY, false));
        let r = parse_head(b"GET /5 HTTP/1.0\r\n\r\n");
        assert_eq!((r.body_len, r.close), (5, true));
        let r = parse_head(b"GET /5 HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n");
        assert!(!r.close);
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nGET"), Some(18));
        assert_eq!(BODY[251], 0);
        assert_eq!(BODY[252], 1);
    }

    #[test]
    fn head_ends_only_at_an_empty_line() {
        assert_eq!(find_head_end(b"\r\n\r\n"), Some(4));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\n"), None, "bare LFs are not a head end");
        assert_eq!(find_head_end(b"a\r\n\r"), None);
        assert_eq!(find_head_end(b"\n\r\n\r\n"), Some(5));
        assert_eq!(find_head_end(b""), None);
    }

    #[test]
    fn response_heads_are_written_by_hand_as_write_would() {
        for (len, close) in
            [(0u64, false), (2, false), (7, true), (10, true), (999_999_999_999, false), (u64::MAX, true)]
        {
            let mut out = [0u8; 96];
            let n = response_head(&mut out, len, close);
            let connection = if close { "close" } else { "keep-alive" };
            let want = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: {connection}\r\n\r\n");
            assert_eq!(&out[..n], want.as_bytes());
        }
    }
}
