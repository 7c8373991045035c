//! Reads what `synack load` prints: a `load: t=...` line per second and a final
//! `load summary: {json}` line (its output contract, README "Load generator").

use std::collections::HashMap;

/// One `load: t=<s> conn/s=<n> req/s=<n> p50_us=<n> p99_us=<n> p999_us=<n> errors=<n>
/// time_wait=<n> reused=<n>` line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadLine {
    pub t: u64,
    pub conn_per_s: u64,
    pub req_per_s: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub errors: u64,
    pub time_wait: u64,
    pub reused: u64,
}

/// Everything `synack load` printed on stdout.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub lines: Vec<LoadLine>,
    /// The summary's numeric fields (nested objects flattened as `outer.inner`).
    pub summary: HashMap<String, f64>,
}

impl LoadReport {
    /// Parses stdout; `Err` names the first line that breaks the contract, or a missing summary.
    pub fn parse(stdout: &str) -> Result<LoadReport, String> {
        let mut report = LoadReport::default();
        let mut summary = None;
        for line in stdout.lines() {
            if let Some(rest) = line.strip_prefix("load: ") {
                report.lines.push(parse_line(rest).ok_or_else(|| format!("bad per-second line: {line:?}"))?);
            } else if let Some(json) = line.strip_prefix("load summary: ") {
                summary = Some(parse_flat_json(json).ok_or_else(|| format!("bad summary: {line:?}"))?);
            }
        }
        report.summary = summary.ok_or("no `load summary:` line")?;
        Ok(report)
    }

    /// A numeric summary field (panics with the summary if it is missing).
    #[track_caller]
    pub fn get(&self, key: &str) -> f64 {
        match self.summary.get(key) {
            Some(&v) => v,
            None => panic!("summary has no {key:?}: {:?}", self.summary),
        }
    }
}

fn parse_line(rest: &str) -> Option<LoadLine> {
    let mut fields = rest.split_whitespace().map(|f| f.split_once('='));
    let mut next = |name: &str| -> Option<u64> {
        let (k, v) = fields.next()??;
        (k == name).then(|| v.parse().ok())?
    };
    let line = LoadLine {
        t: next("t")?,
        conn_per_s: next("conn/s")?,
        req_per_s: next("req/s")?,
        p50_us: next("p50_us")?,
        p99_us: next("p99_us")?,
        p999_us: next("p999_us")?,
        errors: next("errors")?,
        time_wait: next("time_wait")?,
        reused: next("reused")?,
    };
    fields.next().is_none().then_some(line)
}

/// The numbers of a JSON object whose values are numbers, strings or such objects (what the
/// summary holds); strings are skipped. `None` if it is not such an object.
fn parse_flat_json(text: &str) -> Option<HashMap<String, f64>> {
    let bytes = text.trim().as_bytes();
    let mut out = HashMap::new();
    let mut i = 0;
    let end = object(bytes, &mut i, "", &mut out)?;
    (end == bytes.len()).then_some(out)
}

fn skip_ws(b: &[u8], i: &mut usize) {
    while *i < b.len() && b[*i].is_ascii_whitespace() {
        *i += 1;
    }
}

fn string(b: &[u8], i: &mut usize) -> Option<String> {
    if b.get(*i) != Some(&b'"') {
        return None;
    }
    *i += 1;
    let start = *i;
    while *i < b.len() && b[*i] != b'"' {
        if b[*i] == b'\\' {
            *i += 1;
        }
        *i += 1;
    }
    let s = String::from_utf8_lossy(b.get(start..*i)?).into_owned();
    *i += 1;
    Some(s)
}

fn object(b: &[u8], i: &mut usize, prefix: &str, out: &mut HashMap<String, f64>) -> Option<usize> {
    skip_ws(b, i);
    if b.get(*i) != Some(&b'{') {
        return None;
    }
    *i += 1;
    loop {
        skip_ws(b, i);
        if b.get(*i) == Some(&b'}') {
            *i += 1;
            return Some(*i);
        }
        let key = string(b, i)?;
        let key = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
        skip_ws(b, i);
        if b.get(*i) != Some(&b':') {
            return None;
        }
        *i += 1;
        skip_ws(b, i);
        match b.get(*i)? {
            b'{' => {
                object(b, i, &key, out)?;
            }
            b'"' => {
                string(b, i)?;
            }
            _ => {
                let start = *i;
                while *i < b.len() && !matches!(b[*i], b',' | b'}') {
                    *i += 1;
                }
                let n: f64 = std::str::from_utf8(&b[start..*i]).ok()?.trim().parse().ok()?;
                out.insert(key, n);
            }
        }
        skip_ws(b, i);
        match b.get(*i)? {
            b',' => *i += 1,
            b'}' => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_output_contract() {
        let stdout =
            "load: t=1 conn/s=4999 req/s=5000 p50_us=158 p99_us=6357 p999_us=9044 errors=0 time_wait=999 reused=4000\n\
            load: t=2 conn/s=10 req/s=10 p50_us=1 p99_us=2 p999_us=3 errors=1 time_wait=0 reused=0\n\
            load summary: {\"seconds\":2,\"connections\":5009,\"errors\":1,\"conn_per_s\":2504.5,\
            \"errors_by_kind\":{\"reset\":1,\"refused\":0},\"config\":\"a \\\"b\\\" c\"}\n";
        let r = LoadReport::parse(stdout).unwrap();
        assert_eq!(r.lines.len(), 2);
        assert_eq!(r.lines[0].conn_per_s, 4999);
        assert_eq!(r.lines[0].reused, 4000);
        assert_eq!(r.lines[1].errors, 1);
        assert_eq!(r.get("conn_per_s"), 2504.5);
        assert_eq!(r.get("errors_by_kind.reset"), 1.0);
        assert!(!r.summary.contains_key("config"));
        assert!(LoadReport::parse("load: t=1 conn/s=x\n").is_err());
        assert!(LoadReport::parse(
            "load: t=1 conn/s=1 req/s=1 p50_us=1 p99_us=1 p999_us=1 errors=0 time_wait=0 reused=0\n"
        )
        .is_err());
        assert!(LoadReport::parse("load summary: {\"a\":1,}x\n").is_err());
    }
}
