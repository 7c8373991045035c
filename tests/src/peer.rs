//! Linux peers: `tests/py/peer.py` (kernel TCP clients and servers) and its results.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::netns::Host;
use crate::process::{Output, Proc};

/// The python3 interpreter: `$SYNACK_PYTHON`, else Debian's `/usr/bin/python3`, else `python3`.
pub fn python() -> String {
    if let Ok(p) = std::env::var("SYNACK_PYTHON") {
        if !p.is_empty() {
            return p;
        }
    }
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3".to_string()
    } else {
        "python3".to_string()
    }
}

/// Path of `peer.py`.
pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("py/peer.py")
}

fn py_args(sub: &str, args: &[String]) -> Vec<String> {
    let mut v = vec![script().to_string_lossy().into_owned(), sub.to_string()];
    v.extend(args.iter().cloned());
    v
}

/// Runs `peer.py <sub> <args>` in `host` with a time limit.
pub fn run(host: &Host, sub: &str, args: &[String], timeout: Duration) -> Output {
    host.run(&python(), &py_args(sub, args), timeout)
}

/// Starts `peer.py <sub> <args>` in `host` in the background.
pub fn spawn(host: &Host, sub: &str, args: &[String]) -> Proc {
    host.spawn(&python(), &py_args(sub, args))
}

/// Starts a kernel server (`echo`, `http` or `discard`) on `ip:port` in `host`; an http
/// server with `fixed_body` answers that body to every request. Call `wait_for_line("ready")`.
pub fn spawn_server(host: &Host, kind: &str, ip: Ipv4Addr, port: u16, fixed_body: Option<&str>) -> Proc {
    let mut args = vec![kind.to_string(), "--ip".into(), ip.to_string(), "--port".into(), port.to_string()];
    if let Some(body) = fixed_body {
        args.push("--fixed-body".into());
        args.push(body.to_string());
    }
    spawn(host, "serve", &args)
}

/// SHA-256 (hex) of the first `len` bytes of the pattern (byte i = i % 251).
pub fn pattern_sha256(len: u64) -> String {
    let out = std::process::Command::new(python()).arg(script()).arg("pattern-sha256").arg(len.to_string()).output();
    let out = out.expect("run peer.py pattern-sha256");
    assert!(out.status.success(), "pattern-sha256 failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A flat JSON object as printed by `peer.py` (values: strings, numbers, booleans, null).
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub fields: BTreeMap<String, String>,
    pub raw: String,
}

impl Report {
    /// Parses the last line of `out.stdout` that is a JSON object; panics with the output if
    /// there is none.
    #[track_caller]
    pub fn from_output(out: &Output) -> Report {
        let line = out.stdout.lines().rev().find(|l| l.trim_start().starts_with('{'));
        match line.and_then(parse_flat_json) {
            Some(fields) => Report { fields, raw: line.unwrap().to_string() },
            None => panic!("no JSON report from the peer: {}", out.describe()),
        }
    }

    /// The value of `key` (`null` for JSON null), or `None` if absent.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    #[track_caller]
    pub fn str(&self, key: &str) -> &str {
        self.get(key).unwrap_or_else(|| panic!("report lacks `{key}`: {}", self.raw))
    }

    #[track_caller]
    pub fn u64(&self, key: &str) -> u64 {
        let v = self.str(key);
        v.parse().unwrap_or_else(|_| panic!("`{key}` is not an integer in {}", self.raw))
    }

    #[track_caller]
    pub fn f64(&self, key: &str) -> f64 {
        let v = self.str(key);
        v.parse().unwrap_or_else(|_| panic!("`{key}` is not a number in {}", self.raw))
    }

    #[track_caller]
    pub fn bool(&self, key: &str) -> bool {
        match self.str(key) {
            "true" => true,
            "false" => false,
            other => panic!("`{key}` is {other}, not a boolean, in {}", self.raw),
        }
    }

    /// `None` for a JSON null or a missing key.
    pub fn opt(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| *v != "null")
    }
}

/// Parses a flat JSON object into key -> value text (strings unescaped).
pub fn parse_flat_json(line: &str) -> Option<BTreeMap<String, String>> {
    let mut chars = line.trim().chars().peekable();
    let mut map = BTreeMap::new();
    if chars.next()? != '{' {
        return None;
    }
    fn skip_ws(c: &mut std::iter::Peekable<std::str::Chars>) {
        while c.peek().is_some_and(|ch| ch.is_whitespace()) {
            c.next();
        }
    }
    fn string(c: &mut std::iter::Peekable<std::str::Chars>) -> Option<String> {
        if c.next()? != '"' {
            return None;
        }
        let mut s = String::new();
        loop {
            match c.next()? {
                '"' => return Some(s),
                '\\' => match c.next()? {
                    'n' => s.push('\n'),
                    't' => s.push('\t'),
                    'r' => s.push('\r'),
                    'u' => {
                        let hex: String = (0..4).filter_map(|_| c.next()).collect();
                        s.push(u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32).unwrap_or('?'));
                    }
                    other => s.push(other),
                },
                ch => s.push(ch),
            }
        }
    }
    loop {
        skip_ws(&mut chars);
        match chars.peek()? {
            '}' => return Some(map),
            ',' => {
                chars.next();
                continue;
            }
            _ => {}
        }
        let key = string(&mut chars)?;
        skip_ws(&mut chars);
        if chars.next()? != ':' {
            return None;
        }
        skip_ws(&mut chars);
        let value = if chars.peek()? == &'"' {
            string(&mut chars)?
        } else {
            let mut v = String::new();
            while let Some(&ch) = chars.peek() {
                if ch == ',' || ch == '}' {
                    break;
                }
                v.push(ch);
                chars.next();
            }
            v.trim().to_string()
        };
        map.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_json() {
        let m = parse_flat_json(r#"{"a": 1, "b": "x\"y", "c": null, "d": true, "e": 0.5}"#).unwrap();
        assert_eq!(m["a"], "1");
        assert_eq!(m["b"], "x\"y");
        assert_eq!(m["c"], "null");
        assert_eq!(m["d"], "true");
        assert_eq!(m["e"], "0.5");
        assert!(parse_flat_json("not json").is_none());
    }
}
