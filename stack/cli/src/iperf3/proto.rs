//! What iperf3 (3.x, TCP tests) sends on its control connection: a 37-byte cookie, one-byte
//! states, and JSON messages (the test's parameters, each side's results) behind a 4-byte
//! big-endian length. JSON is decoded and encoded on the control path only, once per test.

use serde_json::{json, Map, Value};

/// The cookie: 36 characters and a NUL. The client sends it first on the control connection
/// and on every data stream, which is how the server tells a test's streams from others.
pub const COOKIE_LEN: usize = 37;
/// Longest JSON message accepted (a client's parameters or results are a few hundred bytes).
pub const MAX_JSON: usize = 64 * 1024;
/// iperf3's limit on `-P`.
pub const MAX_STREAMS: u64 = 128;
/// iperf3's default TCP block (`len` when the client sets none).
pub const DEFAULT_BLOCK: u64 = 128 * 1024;

/// The one-byte states of the control connection (iperf_api.h), as signed bytes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    TestStart = 1,
    TestRunning = 2,
    TestEnd = 4,
    ParamExchange = 9,
    CreateStreams = 10,
    ServerTerminate = 11,
    ClientTerminate = 12,
    ExchangeResults = 13,
    DisplayResults = 14,
    IperfStart = 15,
    IperfDone = 16,
    AccessDenied = -1,
    ServerError = -2,
}

impl State {
    pub fn from_byte(b: u8) -> Option<State> {
        use State::*;
        Some(match b as i8 {
            1 => TestStart,
            2 => TestRunning,
            4 => TestEnd,
            9 => ParamExchange,
            10 => CreateStreams,
            11 => ServerTerminate,
            12 => ClientTerminate,
            13 => ExchangeResults,
            14 => DisplayResults,
            15 => IperfStart,
            16 => IperfDone,
            -1 => AccessDenied,
            -2 => ServerError,
            _ => return None,
        })
    }

    pub fn byte(self) -> u8 {
        self as i8 as u8
    }
}

/// Who sends on the data streams, seen from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The client sends, the server receives (the default).
    Forward,
    /// `-R`: the server sends.
    Reverse,
    /// `--bidir`: both; the first `parallel` streams carry client data, the next ones ours.
    Bidirectional,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Forward => "forward",
            Mode::Reverse => "reverse",
            Mode::Bidirectional => "bidir",
        }
    }
}

/// The parameters of a test, as the client sends them after PARAM_EXCHANGE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub mode: Mode,
    /// `-P`: streams per direction.
    pub parallel: u64,
    /// `-t` in seconds (0 with `-n` or `-k`).
    pub duration_s: u64,
    /// `-n`: bytes to send (0: no byte limit).
    pub bytes: u64,
    /// `-k`: blocks to send (0: no block limit).
    pub blocks: u64,
    /// `-l`: the block length.
    pub block_len: u64,
    /// `-O`: seconds left out of the results at the start.
    pub omit_s: u64,
}

impl Params {
    /// Streams the server receives on, then streams it sends on.
    pub fn streams(&self) -> (usize, usize) {
        let p = self.parallel as usize;
        match self.mode {
            Mode::Forward => (p, 0),
            Mode::Reverse => (0, p),
            Mode::Bidirectional => (p, p),
        }
    }

    /// The most bytes a sending side sends in all (`-n`, or `-k` blocks), if limited.
    pub fn send_limit(&self) -> Option<u64> {
        if self.bytes > 0 {
            Some(self.bytes)
        } else if self.blocks > 0 {
            Some(self.blocks.saturating_mul(self.block_len))
        } else {
            None
        }
    }
}

/// Why a parameter message is refused; each maps to the iperf3 error number sent after
/// SERVER_ERROR, which the client prints as its own message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamError {
    /// Not a JSON object.
    Malformed,
    /// UDP or SCTP: only TCP tests are served.
    NotTcp,
    /// More than [`MAX_STREAMS`] (or zero) streams.
    Streams,
}

impl ParamError {
    /// iperf3's `i_errno` for it (iperf_api.h): IERECVPARAMS, IEPROTOCOL, IENUMSTREAMS.
    pub fn iperf_errno(self) -> i32 {
        match self {
            ParamError::Malformed => 114,
            ParamError::NotTcp => 131,
            ParamError::Streams => 6,
        }
    }
}

/// iperf3's IEMESSAGE: an unknown state byte on the control connection.
pub const IE_MESSAGE: i32 = 110;
/// iperf3's IESENDRESULTS: the results could not be sent.
pub const IE_SEND_RESULTS: i32 = 116;

fn uint(object: &Map<String, Value>, key: &str) -> u64 {
    object.get(key).and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f.max(0.0) as u64))).unwrap_or(0)
}

/// Reads the parameter message (iperf_api.c `get_parameters`: a key's presence is what sets a
/// flag such as `reverse`).
pub fn parse_params(json: &[u8]) -> Result<Params, ParamError> {
    let value: Value = serde_json::from_slice(json).map_err(|_| ParamError::Malformed)?;
    let object = value.as_object().ok_or(ParamError::Malformed)?;
    if object.contains_key("udp") || object.contains_key("sctp") {
        return Err(ParamError::NotTcp);
    }
    let parallel = match object.get("parallel") {
        None => 1,
        Some(_) => uint(object, "parallel"),
    };
    if !(1..=MAX_STREAMS).contains(&parallel) {
        return Err(ParamError::Streams);
    }
    let mode = if object.contains_key("bidirectional") {
        Mode::Bidirectional
    } else if object.contains_key("reverse") {
        Mode::Reverse
    } else {
        Mode::Forward
    };
    let block_len = match uint(object, "len") {
        0 => DEFAULT_BLOCK,
        n => n,
    };
    Ok(Params {
        mode,
        parallel,
        duration_s: uint(object, "time"),
        bytes: uint(object, "num"),
        blocks: uint(object, "blockcount"),
        block_len,
        omit_s: uint(object, "omit"),
    })
}

/// One stream's line of the server's results.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamResult {
    pub id: u32,
    /// Bytes the server sent (a sending stream) or received, after the omitted seconds.
    pub bytes: u64,
    /// Seconds the counts cover.
    pub seconds: f64,
}

/// The server's results message (iperf_api.c `send_results`): CPU use in percent (total,
/// user, system), whether retransmissions are reported (-1: the server only received, else 0:
/// synack does not count them per stream), the congestion control, and the streams.
pub fn results_json(cpu: [f64; 3], server_sent: bool, streams: &[StreamResult]) -> Vec<u8> {
    let streams: Vec<Value> = streams
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "bytes": s.bytes,
                "retransmits": -1,
                "jitter": 0,
                "errors": 0,
                "packets": 0,
                "start_time": 0,
                "end_time": s.seconds,
            })
        })
        .collect();
    let results = json!({
        "cpu_util_total": cpu[0],
        "cpu_util_user": cpu[1],
        "cpu_util_system": cpu[2],
        "sender_has_retransmits": if server_sent { 0 } else { -1 },
        "congestion_used": "newreno",
        "streams": streams,
    });
    serde_json::to_vec(&results).unwrap_or_default()
}

/// The per-stream byte counts of the client's results message, by stream id.
pub fn parse_client_results(json: &[u8]) -> Option<Vec<(u32, u64)>> {
    let value: Value = serde_json::from_slice(json).ok()?;
    let streams = value.get("streams")?.as_array()?;
    streams
        .iter()
        .map(|s| {
            let s = s.as_object()?;
            let id = s.get("id")?.as_u64()?;
            Some((u32::try_from(id).ok()?, uint(s, "bytes")))
        })
        .collect()
}

/// Appends `json` behind its 4-byte big-endian length.
pub fn frame(json: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(json);
}

/// The id iperf3 gives the `n`-th stream of a test (0-based): 1, then 3, 4, 5, ... (its
/// `iperf_add_stream` numbers from 2 plus the streams already there, and keeps that quirk
/// for compatibility). Results name streams by these ids.
pub fn stream_id(n: usize) -> u32 {
    if n == 0 {
        1
    } else {
        n as u32 + 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_parameter_message_is_read() {
        // What iperf 3.12 sends for `-c X -t 2 -P 4 -R -J`.
        let json = br#"{"tcp":true,"omit":0,"time":2,"num":0,"blockcount":0,"parallel":4,"reverse":true,"len":131072,"pacing_timer":1000,"client_version":"3.12"}"#;
        let p = parse_params(json).unwrap();
        assert_eq!(
            p,
            Params {
                mode: Mode::Reverse,
                parallel: 4,
                duration_s: 2,
                bytes: 0,
                blocks: 0,
                block_len: 131072,
                omit_s: 0
            }
        );
        assert_eq!(p.streams(), (0, 4));
        assert_eq!(p.send_limit(), None);
        let bidir = parse_params(br#"{"tcp":true,"num":52428800,"parallel":2,"bidirectional":true}"#).unwrap();
        assert_eq!((bidir.mode, bidir.streams(), bidir.send_limit()), (Mode::Bidirectional, (2, 2), Some(52428800)));
        assert_eq!(parse_params(br#"{"tcp":true,"blockcount":3,"len":1000}"#).unwrap().send_limit(), Some(3000));
        assert_eq!(parse_params(br#"{"udp":true}"#), Err(ParamError::NotTcp));
        assert_eq!(parse_params(br#"{"tcp":true,"parallel":129}"#), Err(ParamError::Streams));
        assert_eq!(parse_params(br#"{"tcp":true,"parallel":0}"#), Err(ParamError::Streams));
        assert_eq!(parse_params(b"[1]"), Err(ParamError::Malformed));
        assert_eq!(parse_params(b"{\"tcp\":"), Err(ParamError::Malformed));
    }

    #[test]
    fn results_carry_what_the_client_requires() {
        let out = results_json([1.5, 1.0, 0.5], true, &[StreamResult { id: 3, bytes: 1 << 40, seconds: 2.5 }]);
        let v: Value = serde_json::from_slice(&out).unwrap();
        // iperf_api.c `get_results` fails the test without any of these.
        for key in ["cpu_util_total", "cpu_util_user", "cpu_util_system", "sender_has_retransmits", "streams"] {
            assert!(v.get(key).is_some(), "{key}");
        }
        let s = &v["streams"][0];
        for key in ["id", "bytes", "retransmits", "jitter", "errors", "packets", "start_time", "end_time"] {
            assert!(s.get(key).is_some(), "{key}");
        }
        assert_eq!(
            (s["id"].as_u64(), s["bytes"].as_u64(), s["end_time"].as_f64()),
            (Some(3), Some(1 << 40), Some(2.5))
        );
        assert_eq!(parse_client_results(&out), Some(vec![(3, 1 << 40)]));
        assert_eq!(parse_client_results(br#"{"streams":[{"id":-1,"bytes":2}]}"#), None);
        let mut framed = Vec::new();
        frame(b"{}", &mut framed);
        assert_eq!(framed, [0, 0, 0, 2, b'{', b'}']);
    }

    #[test]
    fn states_and_stream_ids_match_iperf3() {
        assert_eq!(State::ServerError.byte(), 0xfe);
        assert_eq!(State::from_byte(0xff), Some(State::AccessDenied));
        assert_eq!(State::from_byte(16), Some(State::IperfDone));
        assert_eq!(State::from_byte(3), None);
        assert_eq!((0..4).map(stream_id).collect::<Vec<_>>(), [1, 3, 4, 5]);
    }
}
