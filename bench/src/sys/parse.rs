//! Parsers for the text the load generators print: wrk's summary and sockperf's percentiles.
//!
//! Both tools print for humans; these functions read only the lines the benchmark needs and
//! say which one was missing when the output is not what they expect. The unit tests feed
//! them output captured on this machine (`testdata/`).

use std::fmt;

/// What a parser could not find or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Which tool's output.
    pub tool: &'static str,
    /// What was missing or malformed.
    pub what: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot read {} output: {}", self.tool, self.what)
    }
}

impl std::error::Error for ParseError {}

fn wrk_error(what: impl Into<String>) -> ParseError {
    ParseError { tool: "wrk", what: what.into() }
}

fn sockperf_error(what: impl Into<String>) -> ParseError {
    ParseError { tool: "sockperf", what: what.into() }
}

/// wrk's `Socket errors:` line; all zero when wrk printed none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WrkSocketErrors {
    /// Failed connects.
    pub connect: u64,
    /// Failed reads (including a peer closing before the response was complete).
    pub read: u64,
    /// Failed writes.
    pub write: u64,
    /// Requests that got no response within wrk's timeout.
    pub timeout: u64,
}

impl WrkSocketErrors {
    /// All errors together.
    pub fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout
    }
}

/// The figures of one wrk run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WrkReport {
    /// Completed requests (`N requests in ...`).
    pub requests: u64,
    /// Length of the run in seconds, as wrk measured it.
    pub seconds: f64,
    /// `Requests/sec:`.
    pub requests_per_s: f64,
    /// Mean latency (`Latency` row of `Thread Stats`), microseconds.
    pub latency_mean_us: f64,
    /// Latency percentiles from `--latency` (`Latency Distribution`), microseconds, in the
    /// order wrk prints them: 50, 75, 90, 99. Empty without `--latency`.
    pub latency_percentiles_us: Vec<(f64, f64)>,
    /// Socket errors.
    pub socket_errors: WrkSocketErrors,
    /// Responses with a status other than 2xx or 3xx.
    pub non_2xx_3xx: u64,
}

impl WrkReport {
    /// The latency at percentile `p` (50, 75, 90 or 99), when wrk printed it.
    pub fn latency_percentile_us(&self, p: f64) -> Option<f64> {
        self.latency_percentiles_us.iter().find(|(q, _)| (q - p).abs() < 1e-9).map(|&(_, v)| v)
    }
}

/// A duration as wrk prints it (`812.00us`, `1.42ms`, `1.20s`, `2.00m`), in microseconds.
pub fn parse_wrk_duration_us(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => return None,
    };
    Some(value * scale)
}

/// A count as wrk may print it in summaries (`6.31k`, `1.2M`, `18907`).
fn parse_wrk_count(text: &str) -> Option<f64> {
    let text = text.trim();
    let (number, scale) = match text.chars().last()? {
        'k' => (&text[..text.len() - 1], 1e3),
        'M' => (&text[..text.len() - 1], 1e6),
        'G' => (&text[..text.len() - 1], 1e9),
        _ => (text, 1.0),
    };
    Some(number.parse::<f64>().ok()? * scale)
}

/// Reads wrk's output. `Requests/sec`, the `N requests in T` line and the mean latency are
/// required; the latency distribution and the error lines are read when present.
pub fn parse_wrk(output: &str) -> Result<WrkReport, ParseError> {
    let mut requests = None;
    let mut seconds = None;
    let mut requests_per_s = None;
    let mut latency_mean_us = None;
    let mut latency_percentiles_us = Vec::new();
    let mut socket_errors = WrkSocketErrors::default();
    let mut non_2xx_3xx = 0;
    let mut in_distribution = false;

    for line in output.lines() {
        let trimmed = line.trim();
        let words: Vec<&str> = trimmed.split_whitespace().collect();
        if in_distribution {
            // Rows like `50%    1.42ms`; the block ends at the first other line.
            if let [p, value] = words[..] {
                if let Some(p) = p.strip_suffix('%').and_then(|p| p.parse::<f64>().ok()) {
                    let value = parse_wrk_duration_us(value)
                        .ok_or_else(|| wrk_error(format!("latency percentile {trimmed:?}")))?;
                    latency_percentiles_us.push((p, value));
                    continue;
                }
            }
            in_distribution = false;
        }
        if trimmed == "Latency Distribution" {
            in_distribution = true;
        } else if let Some(rest) = trimmed.strip_prefix("Requests/sec:") {
            requests_per_s = Some(rest.trim().parse::<f64>().map_err(|_| wrk_error(format!("{trimmed:?}")))?);
        } else if words.first() == Some(&"Latency") && words.len() >= 2 && latency_mean_us.is_none() {
            latency_mean_us =
                Some(parse_wrk_duration_us(words[1]).ok_or_else(|| wrk_error(format!("mean latency {trimmed:?}")))?);
        } else if words.len() >= 4 && words[1] == "requests" && words[2] == "in" {
            // `18907 requests in 3.02s, 4.42MB read`
            requests = Some(parse_wrk_count(words[0]).ok_or_else(|| wrk_error(format!("{trimmed:?}")))? as u64);
            seconds = Some(
                parse_wrk_duration_us(words[3].trim_end_matches(','))
                    .ok_or_else(|| wrk_error(format!("{trimmed:?}")))?
                    / 1e6,
            );
        } else if let Some(rest) = trimmed.strip_prefix("Socket errors:") {
            // `Socket errors: connect 0, read 12, write 0, timeout 3`
            for part in rest.split(',') {
                let mut it = part.split_whitespace();
                let (Some(kind), Some(count)) = (it.next(), it.next()) else {
                    return Err(wrk_error(format!("{trimmed:?}")));
                };
                let count: u64 = count.parse().map_err(|_| wrk_error(format!("{trimmed:?}")))?;
                match kind {
                    "connect" => socket_errors.connect = count,
                    "read" => socket_errors.read = count,
                    "write" => socket_errors.write = count,
                    "timeout" => socket_errors.timeout = count,
                    _ => return Err(wrk_error(format!("{trimmed:?}"))),
                }
            }
        } else if let Some(rest) = trimmed.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx_3xx = rest.trim().parse().map_err(|_| wrk_error(format!("{trimmed:?}")))?;
        }
    }
    Ok(WrkReport {
        requests: requests.ok_or_else(|| wrk_error("no `N requests in T` line"))?,
        seconds: seconds.unwrap_or(0.0),
        requests_per_s: requests_per_s.ok_or_else(|| wrk_error("no `Requests/sec:` line"))?,
        latency_mean_us: latency_mean_us.ok_or_else(|| wrk_error("no `Latency` line"))?,
        latency_percentiles_us,
        socket_errors,
        non_2xx_3xx,
    })
}

/// The figures of one sockperf ping-pong run. sockperf reports **half round trips**
/// (round-trip time / 2) unless it is given `--full-rtt`; [`SockperfReport::full_rtt`] says
/// which.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SockperfReport {
    /// True when the figures are full round trips (`--full-rtt`), false for half round trips.
    pub full_rtt: bool,
    /// Observations in the valid part of the run (after warm-up).
    pub observations: u64,
    /// `avg-latency`, microseconds.
    pub avg_us: f64,
    /// `std-dev`, microseconds.
    pub std_dev_us: f64,
    /// Percentiles as printed (`(50.0, 29.78)`, ...), microseconds, highest first.
    pub percentiles_us: Vec<(f64, f64)>,
    /// `<MIN> observation`, microseconds.
    pub min_us: f64,
    /// `<MAX> observation`, microseconds.
    pub max_us: f64,
    /// Messages sent during the valid part of the run.
    pub sent: u64,
    /// Messages received during the valid part of the run.
    pub received: u64,
    /// `# dropped messages`.
    pub dropped: u64,
    /// `# duplicated messages`.
    pub duplicated: u64,
    /// `# out-of-order messages`.
    pub out_of_order: u64,
}

impl SockperfReport {
    /// The latency at percentile `p` (e.g. 50, 99, 99.9), when sockperf printed it.
    pub fn percentile_us(&self, p: f64) -> Option<f64> {
        self.percentiles_us.iter().find(|(q, _)| (q - p).abs() < 1e-6).map(|&(_, v)| v)
    }
}

/// Removes ANSI colour sequences (`ESC [ ... m`), which sockperf puts around some lines.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            // A control sequence ends with a byte in 0x40..=0x7e; bounded by the text.
            for c in chars.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Takes the number after `key=` in `text` (`SentMessages=21026;` gives 21026).
fn value_after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let start = text.find(key)? + key.len();
    let rest = &text[start..];
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Reads the output of `sockperf ping-pong` (or `under-load`) for one server. `full_rtt` is
/// whether sockperf was given `--full-rtt` (its output does not say).
pub fn parse_sockperf(output: &str, full_rtt: bool) -> Result<SockperfReport, ParseError> {
    let output = strip_ansi(output);
    let mut observations = None;
    let mut avg = None;
    let mut percentiles = Vec::new();
    let (mut min, mut max) = (None, None);
    let (mut sent, mut received) = (None, None);
    let mut losses = None;
    let number = |text: &str, what: &str| -> Result<f64, ParseError> {
        text.trim().parse::<f64>().map_err(|_| sockperf_error(format!("{what}: {text:?}")))
    };

    for line in output.lines() {
        let line = line.trim();
        let Some(body) = line.strip_prefix("sockperf:") else {
            continue;
        };
        let body = body.trim();
        if let Some(rest) = body.strip_prefix("[Valid Duration]") {
            sent = value_after(rest, "SentMessages=").map(|v| number(v, "SentMessages")).transpose()?;
            received = value_after(rest, "ReceivedMessages=").map(|v| number(v, "ReceivedMessages")).transpose()?;
        } else if let Some(rest) = body.strip_prefix("====> avg-latency=") {
            // `====> avg-latency=60.634 (std-dev=205.938)`
            let (mean, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            let std_dev = value_after(rest, "std-dev=").unwrap_or("0");
            avg = Some((number(mean, "avg-latency")?, number(std_dev, "std-dev")?));
        } else if let Some(rest) = body.strip_prefix("Total ") {
            // `Total 21026 observations; each percentile contains 210.26 observations`
            if let Some(count) = rest.split_whitespace().next() {
                observations = Some(number(count, "observations")? as u64);
            }
        } else if let Some(rest) = body.strip_prefix("---> percentile ") {
            // `---> percentile 99.900 = 2120.177`
            let (p, value) = rest.split_once('=').ok_or_else(|| sockperf_error(format!("percentile line {line:?}")))?;
            percentiles.push((number(p, "percentile")?, number(value, "percentile value")?));
        } else if let Some(rest) = body.strip_prefix("---> <MAX> observation =") {
            max = Some(number(rest, "<MAX>")?);
        } else if let Some(rest) = body.strip_prefix("---> <MIN> observation =") {
            min = Some(number(rest, "<MIN>")?);
        } else if body.starts_with("# dropped messages") {
            // `# dropped messages = 0; # duplicated messages = 0; # out-of-order messages = 0`
            let mut counts = body
                .split(';')
                .map(|part| part.split_once('=').map(|(_, v)| v.trim().parse::<u64>().unwrap_or(u64::MAX)));
            let (Some(Some(d)), Some(Some(u)), Some(Some(o))) = (counts.next(), counts.next(), counts.next()) else {
                return Err(sockperf_error(format!("loss line {line:?}")));
            };
            losses = Some((d, u, o));
        }
    }
    let (avg_us, std_dev_us) = avg.ok_or_else(|| sockperf_error("no `avg-latency` line"))?;
    if percentiles.is_empty() {
        return Err(sockperf_error("no `percentile` lines"));
    }
    let (dropped, duplicated, out_of_order) = losses.unwrap_or((0, 0, 0));
    Ok(SockperfReport {
        full_rtt,
        observations: observations.ok_or_else(|| sockperf_error("no `Total N observations`"))?,
        avg_us,
        std_dev_us,
        percentiles_us: percentiles,
        min_us: min.ok_or_else(|| sockperf_error("no `<MIN> observation`"))?,
        max_us: max.ok_or_else(|| sockperf_error("no `<MAX> observation`"))?,
        sent: sent.unwrap_or(0.0) as u64,
        received: received.unwrap_or(0.0) as u64,
        dropped,
        duplicated,
        out_of_order,
    })
}

/// The body length of an HTTP/1.1 response (from `Content-Length`, else what follows the
/// header), or `None` when `response` is not one.
pub fn http_body_len(response: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(response).ok()?;
    if !text.starts_with("HTTP/1.") {
        return None;
    }
    let (head, body) = text.split_once("\r\n\r\n")?;
    for line in head.lines().skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                return value.trim().parse().ok();
            }
        }
    }
    Some(body.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK_CLOSE: &str = include_str!("testdata/wrk_connection_close.txt");
    const WRK_KEEPALIVE: &str = include_str!("testdata/wrk_keepalive_latency.txt");
    const WRK_ERRORS: &str = include_str!("testdata/wrk_errors.txt");
    const SOCKPERF: &str = include_str!("testdata/sockperf_ping_pong.txt");

    #[test]
    fn wrk_durations() {
        assert_eq!(parse_wrk_duration_us("812.00us"), Some(812.0));
        assert_eq!(parse_wrk_duration_us("1.42ms"), Some(1420.0));
        assert_eq!(parse_wrk_duration_us("3.02s"), Some(3_020_000.0));
        assert_eq!(parse_wrk_duration_us("2.00m"), Some(120e6));
        assert_eq!(parse_wrk_duration_us("12"), None);
        assert_eq!(parse_wrk_duration_us("1.0xs"), None);
    }

    #[test]
    fn wrk_connection_close_run() {
        let report = parse_wrk(WRK_CLOSE).unwrap();
        assert_eq!(report.requests, 18907);
        assert!((report.seconds - 3.02).abs() < 1e-9);
        assert!((report.requests_per_s - 6268.97).abs() < 1e-9);
        assert!((report.latency_mean_us - 5620.0).abs() < 1e-6);
        assert!(report.latency_percentiles_us.is_empty());
        assert_eq!(report.socket_errors.total(), 0);
        assert_eq!(report.non_2xx_3xx, 0);
    }

    #[test]
    fn wrk_keepalive_run_with_latency_distribution() {
        let report = parse_wrk(WRK_KEEPALIVE).unwrap();
        assert_eq!(report.requests, 47536);
        assert!((report.requests_per_s - 15770.73).abs() < 1e-9);
        assert_eq!(report.latency_percentiles_us.len(), 4);
        assert!((report.latency_percentile_us(50.0).unwrap() - 1420.0).abs() < 1e-6);
        assert!((report.latency_percentile_us(99.0).unwrap() - 8920.0).abs() < 1e-6);
        assert_eq!(report.latency_percentile_us(99.9), None);
    }

    #[test]
    fn wrk_errors_are_read() {
        let report = parse_wrk(WRK_ERRORS).unwrap();
        assert_eq!(report.socket_errors, WrkSocketErrors { connect: 0, read: 1245, write: 0, timeout: 7 });
        assert_eq!(report.non_2xx_3xx, 13069);
        assert!((report.latency_percentile_us(50.0).unwrap() - 5870.0).abs() < 1e-6);
    }

    #[test]
    fn wrk_garbage_is_an_error() {
        let error = parse_wrk("unable to connect to 198.18.7.1:8080 Connection refused\n").unwrap_err();
        assert!(error.to_string().contains("wrk"), "{error}");
    }

    #[test]
    fn sockperf_ping_pong_run() {
        let report = parse_sockperf(SOCKPERF, false).unwrap();
        assert!(!report.full_rtt);
        assert_eq!(report.observations, 21026);
        assert_eq!((report.sent, report.received), (21026, 21026));
        assert!((report.avg_us - 60.634).abs() < 1e-9);
        assert!((report.std_dev_us - 205.938).abs() < 1e-9);
        assert!((report.percentile_us(50.0).unwrap() - 29.780).abs() < 1e-9);
        assert!((report.percentile_us(99.0).unwrap() - 1424.473).abs() < 1e-9);
        assert!((report.percentile_us(99.9).unwrap() - 2120.177).abs() < 1e-9);
        assert!((report.min_us - 16.189).abs() < 1e-9);
        assert!((report.max_us - 2928.054).abs() < 1e-9);
        assert_eq!((report.dropped, report.duplicated, report.out_of_order), (0, 0, 0));
    }

    #[test]
    fn sockperf_without_results_is_an_error() {
        let text = "sockperf: == version #3.7-no.git ==\nsockperf: ERROR: Connection refused\n";
        assert!(parse_sockperf(text, false).is_err());
    }

    #[test]
    fn ansi_sequences_are_removed() {
        assert_eq!(strip_ansi("a\u{1b}[2;35mb\u{1b}[0mc"), "abc");
    }

    #[test]
    fn http_body_lengths() {
        let nginx = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nContent-Length: 15\r\n\r\nhello, synack!\n";
        assert_eq!(http_body_len(nginx), Some(15));
        assert_eq!(http_body_len(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nok"), Some(2));
        assert_eq!(http_body_len(b"SSH-2.0-OpenSSH\r\n"), None);
    }
}
