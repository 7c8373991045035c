//! Reads what `synack load --json` prints: a `load_second` line per second, the `load_summary`
//! and the counters at stop, as the binary's own types (`synack_report`).

use std::collections::HashMap;

pub use synack_report::LoadSecond as LoadLine;
use synack_report::{Line, LoadSummary, Stopped};

/// Everything `synack load --json` printed on stdout.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub lines: Vec<LoadLine>,
    /// The summary's numeric fields (nested objects flattened as `outer.inner`).
    pub summary: HashMap<String, f64>,
    /// The summary itself.
    pub totals: LoadSummary,
    /// The interfaces' and workers' counters at stop.
    pub stopped: Stopped,
}

impl LoadReport {
    /// Parses stdout of `synack load --json`; `Err` names a line that is not a report line, or
    /// a missing summary or stop report.
    pub fn parse(stdout: &str) -> Result<LoadReport, String> {
        let mut report = LoadReport::default();
        let (mut summary, mut stopped) = (None, None);
        for line in synack_report::parse_lines(stdout)? {
            match line {
                Line::LoadSecond(second) => report.lines.push(second),
                Line::LoadSummary(s) => summary = Some(s),
                Line::Stopped(s) => stopped = Some(s),
                other => return Err(format!("unexpected line from synack load: {other:?}")),
            }
        }
        let Some(totals) = summary else {
            return Err(if stdout.contains("load summary: ") {
                "no `load_summary` line: run synack load with --json".to_string()
            } else {
                "no `load_summary` line".to_string()
            });
        };
        report.stopped = stopped.ok_or("no `stopped` line")?;
        let value = serde_json::to_value(&totals).map_err(|e| e.to_string())?;
        flatten("", &value, &mut report.summary);
        report.totals = totals;
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

/// The numbers of a JSON object, nested objects' keys as `outer.inner`; strings are skipped.
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut HashMap<String, f64>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        serde_json::Value::Number(n) => {
            if let Some(n) = n.as_f64() {
                out.insert(prefix.to_string(), n);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synack_report::{LoadErrors, Queue};

    #[test]
    fn reads_the_json_lines() {
        let second = |t, reused| LoadLine { t, conn_per_s: 4999, reused, ..LoadLine::default() };
        let summary = LoadSummary {
            seconds: 2,
            connections: 5009,
            errors: 1,
            conn_per_s: 2504.5,
            errors_by_kind: LoadErrors { reset: 1, ..LoadErrors::default() },
            config: "a \"b\" c".into(),
            ..LoadSummary::default()
        };
        let mut stopped = Stopped::default();
        stopped.counters.insert("time_wait_reused".into(), 4000);
        stopped.queues.push(Queue::default());
        let lines = [
            Line::LoadSecond(second(1, 4000)),
            Line::LoadSecond(second(2, 0)),
            Line::LoadSummary(summary.clone()),
            Line::Stopped(stopped),
        ];
        let stdout: String = lines.iter().map(|l| l.to_json() + "\n").collect();
        let r = LoadReport::parse(&stdout).unwrap();
        assert_eq!(r.lines.len(), 2);
        assert_eq!((r.lines[0].conn_per_s, r.lines[0].reused, r.lines[1].t), (4999, 4000, 2));
        assert_eq!(r.get("conn_per_s"), 2504.5);
        assert_eq!(r.get("errors_by_kind.reset"), 1.0);
        assert!(!r.summary.contains_key("config"));
        assert_eq!(r.totals, summary);
        assert_eq!(r.stopped.counter("time_wait_reused"), 4000);
        let without_stop: String = lines[..3].iter().map(|l| l.to_json() + "\n").collect();
        assert!(LoadReport::parse(&without_stop).is_err());
        assert!(LoadReport::parse(&lines[0].to_json()).is_err(), "no summary");
        let text = "load: t=1 conn/s=1 req/s=1 p50_us=1 p99_us=1 p999_us=1 errors=0 time_wait=0 reused=0\n\
                    load summary: {\"seconds\":1}\n";
        assert!(LoadReport::parse(text).unwrap_err().contains("--json"));
        assert!(LoadReport::parse("{\"type\":\"load_second\",\"t\":1}\n").is_err());
    }
}
