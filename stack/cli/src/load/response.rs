//! A streaming reader of one HTTP/1.1 response: fed the bytes as they arrive, in any pieces,
//! it says when the response is complete (at Content-Length, or at EOF without one). Its state
//! is a few dozen bytes, kept per connection in an array sized at start.

/// Longest header line prefix kept: `Content-Length: ` and 16 digits.
const LINE_KEEP: usize = 32;
/// Longest response head accepted.
const HEAD_MAX: u32 = 16 * 1024;

/// Why a response is not one this reader accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadResponse {
    /// The status line is not `HTTP/1.x NNN`.
    StatusLine,
    /// A status outside 200-399.
    Status(u16),
    /// A Content-Length that is not a number.
    ContentLength,
    /// Transfer-Encoding (chunked) is not supported.
    TransferEncoding,
    /// The head is longer than 16 KiB.
    HeadTooLong,
    /// The connection ended before the response did.
    Truncated,
}

/// What the bytes fed so far amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// More to come.
    Incomplete,
    /// The response is complete; the first `consumed` bytes of the last piece were its end.
    Complete { consumed: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Phase {
    #[default]
    StatusLine,
    Headers,
    Body,
    UntilEof,
    Done,
}

/// The reader's state for one response.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseReader {
    phase: Phase,
    status: u16,
    /// The start of the current line, lowercased, and its length so far.
    line: [u8; LINE_KEEP],
    line_len: u32,
    head_len: u32,
    content_length: Option<u64>,
    body_left: u64,
    /// The server will close after this response (`Connection: close`, or HTTP/1.0).
    closes: bool,
}

impl ResponseReader {
    /// Ready for a new response.
    pub fn reset(&mut self) {
        *self = ResponseReader::default();
    }

    /// Whether the server said it closes after this response.
    pub fn closes(&self) -> bool {
        self.closes
    }

    /// The status code, once the status line is in.
    #[cfg(test)]
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Takes the next bytes of the response.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Progress, BadResponse> {
        let mut i = 0;
        while i < bytes.len() {
            match self.phase {
                Phase::StatusLine | Phase::Headers => {
                    // A line at a time: memchr finds its end; only its first LINE_KEEP bytes
                    // are looked at.
                    let rest = &bytes[i..];
                    let (line, ended) = match memchr::memchr(b'\n', rest) {
                        Some(at) => (&rest[..at], true),
                        None => (rest, false),
                    };
                    let taken = line.len() + usize::from(ended);
                    i += taken;
                    self.head_len = self.head_len.saturating_add(u32::try_from(taken).unwrap_or(u32::MAX));
                    if self.head_len > HEAD_MAX {
                        return Err(BadResponse::HeadTooLong);
                    }
                    self.keep(line);
                    if ended {
                        self.end_of_line()?;
                        if self.phase == Phase::Done {
                            return Ok(Progress::Complete { consumed: i });
                        }
                    }
                }
                Phase::Body => {
                    let take = (bytes.len() - i).min(self.body_left.min(usize::MAX as u64) as usize);
                    i += take;
                    self.body_left -= take as u64;
                    if self.body_left == 0 {
                        self.phase = Phase::Done;
                        return Ok(Progress::Complete { consumed: i });
                    }
                }
                Phase::UntilEof => i = bytes.len(),
                Phase::Done => return Ok(Progress::Complete { consumed: 0 }),
            }
        }
        Ok(Progress::Incomplete)
    }

    /// The connection ended (the peer's FIN): completes a response delimited by EOF.
    pub fn eof(&mut self) -> Result<Progress, BadResponse> {
        match self.phase {
            Phase::UntilEof => {
                self.phase = Phase::Done;
                Ok(Progress::Complete { consumed: 0 })
            }
            Phase::Done => Ok(Progress::Complete { consumed: 0 }),
            _ => Err(BadResponse::Truncated),
        }
    }

    /// Adds a piece of the current line: its first LINE_KEEP bytes are kept, lowercased (a
    /// copy and an in-place pass, not a loop carrying the length through memory: this is a
    /// load generator's hottest code). Past those only the length matters.
    fn keep(&mut self, piece: &[u8]) {
        let len = self.line_len as usize;
        if len < LINE_KEEP {
            let n = piece.len().min(LINE_KEEP - len);
            let kept = &mut self.line[len..len + n];
            kept.copy_from_slice(&piece[..n]);
            kept.make_ascii_lowercase();
        }
        // Bounded by HEAD_MAX, checked before: no overflow.
        self.line_len += piece.len() as u32;
    }

    fn end_of_line(&mut self) -> Result<(), BadResponse> {
        let kept = (self.line_len as usize).min(LINE_KEEP);
        let mut line = &self.line[..kept];
        // The line's CR (kept only when the whole line fits).
        if let Some(stripped) = line.strip_suffix(b"\r").filter(|_| kept == self.line_len as usize) {
            line = stripped;
        }
        let empty = line.is_empty();
        self.line_len = 0;
        match self.phase {
            Phase::StatusLine => {
                // `HTTP/1.1 200 OK`
                if line.len() < 12 || !line.starts_with(b"http/1.") || line[8] != b' ' {
                    return Err(BadResponse::StatusLine);
                }
                let digits = &line[9..12];
                if !digits.iter().all(u8::is_ascii_digit) {
                    return Err(BadResponse::StatusLine);
                }
                self.status = digits.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
                if !(200..400).contains(&self.status) {
                    return Err(BadResponse::Status(self.status));
                }
                self.closes = line.starts_with(b"http/1.0");
                self.phase = Phase::Headers;
            }
            Phase::Headers if empty => {
                // RFC 9112 6.3: 204 and 304 have no body; otherwise Content-Length, or EOF.
                let no_body = self.status == 204 || self.status == 304;
                match self.content_length {
                    _ if no_body => self.phase = Phase::Done,
                    Some(0) => self.phase = Phase::Done,
                    Some(n) => {
                        self.body_left = n;
                        self.phase = Phase::Body;
                    }
                    None => self.phase = Phase::UntilEof,
                }
            }
            Phase::Headers => {
                if let Some(value) = line.strip_prefix(b"content-length:") {
                    let value = value.trim_ascii();
                    if value.is_empty() || value.len() > 16 || !value.iter().all(u8::is_ascii_digit) {
                        return Err(BadResponse::ContentLength);
                    }
                    self.content_length = Some(value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')));
                } else if line.starts_with(b"transfer-encoding:") {
                    return Err(BadResponse::TransferEncoding);
                } else if let Some(value) = line.strip_prefix(b"connection:") {
                    match value.trim_ascii() {
                        b"close" => self.closes = true,
                        b"keep-alive" => self.closes = false,
                        _ => {}
                    }
                }
            }
            Phase::Body | Phase::UntilEof | Phase::Done => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NGINX: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 25 Nov 2026 07:00:00 GMT\r\n\
        Content-Type: text/plain\r\nContent-Length: 15\r\nConnection: keep-alive\r\n\r\nhello, synack!\n";

    #[test]
    fn complete_at_content_length_in_any_split() {
        for split in 0..NGINX.len() {
            let mut r = ResponseReader::default();
            let first = r.feed(&NGINX[..split]).unwrap();
            assert_eq!(first, Progress::Incomplete, "split {split}");
            assert_eq!(r.feed(&NGINX[split..]), Ok(Progress::Complete { consumed: NGINX.len() - split }));
            assert_eq!(r.status(), 200);
            assert!(!r.closes());
        }
        // Byte by byte.
        let mut r = ResponseReader::default();
        let mut done = 0;
        for (i, b) in NGINX.iter().enumerate() {
            if r.feed(std::slice::from_ref(b)).unwrap() != Progress::Incomplete {
                done = i + 1;
                break;
            }
        }
        assert_eq!(done, NGINX.len());
    }

    #[test]
    fn bytes_after_the_response_are_not_consumed() {
        let mut r = ResponseReader::default();
        let mut two = NGINX.to_vec();
        two.extend_from_slice(NGINX);
        assert_eq!(r.feed(&two), Ok(Progress::Complete { consumed: NGINX.len() }));
        r.reset();
        assert_eq!(r.feed(&two[NGINX.len()..]), Ok(Progress::Complete { consumed: NGINX.len() }));
    }

    #[test]
    fn eof_delimited_bodies_and_empty_ones() {
        let mut r = ResponseReader::default();
        assert_eq!(r.feed(b"HTTP/1.0 200 OK\r\n\r\nsome body"), Ok(Progress::Incomplete));
        assert_eq!(r.eof(), Ok(Progress::Complete { consumed: 0 }));
        assert!(r.closes(), "HTTP/1.0");
        let mut r = ResponseReader::default();
        let text = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx";
        assert_eq!(r.feed(text), Ok(Progress::Complete { consumed: text.len() }));
        assert!(r.closes(), "Connection: close");
        let mut r = ResponseReader::default();
        assert_eq!(r.feed(b"HTTP/1.1 204 No Content\r\n\r\n"), Ok(Progress::Complete { consumed: 27 }));
        let mut r = ResponseReader::default();
        assert_eq!(r.feed(b"HTTP/1.1 200 OK\r\ncontent-length:0\r\n\r\n"), Ok(Progress::Complete { consumed: 37 }));
    }

    #[test]
    fn bad_responses_are_named() {
        let bad = |text: &[u8]| ResponseReader::default().feed(text);
        assert_eq!(bad(b"SSH-2.0-OpenSSH\r\n"), Err(BadResponse::StatusLine));
        assert_eq!(bad(b"HTTP/1.1 2x0 OK\r\n"), Err(BadResponse::StatusLine));
        assert_eq!(bad(b"HTTP/1.1 503 Busy\r\n"), Err(BadResponse::Status(503)));
        assert_eq!(bad(b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n"), Err(BadResponse::ContentLength));
        assert_eq!(bad(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"), Err(BadResponse::TransferEncoding));
        assert_eq!(bad(&[b'x'; 20_000]), Err(BadResponse::HeadTooLong));
        let mut r = ResponseReader::default();
        assert_eq!(r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"), Ok(Progress::Incomplete));
        assert_eq!(r.eof(), Err(BadResponse::Truncated));
    }
}
