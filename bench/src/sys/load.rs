//! Output of synack's own tools, read as the binary's `--json` lines (`synack_report`):
//! `synack load` (its seconds, summary and counters) and the `stats` lines of
//! `synack serve --stats-interval-s`.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use synack_report::Line;

pub use synack_report::{LoadSecond, LoadSummary, Stats as ServeStats};

/// Everything `synack load --json` printed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoadReport {
    /// The per-second lines.
    pub seconds: Vec<LoadSecond>,
    /// The summary.
    pub summary: LoadSummary,
}

/// The report lines of `output` (other lines are skipped).
fn lines(output: &str) -> Result<Vec<Line>> {
    synack_report::parse_lines(output).map_err(anyhow::Error::msg)
}

/// Reads `synack load --json` output: every `load_second` line and the `load_summary`.
pub fn parse_load(output: &str) -> Result<LoadReport> {
    let mut seconds = Vec::new();
    let mut summary = None;
    for line in lines(output)? {
        match line {
            Line::LoadSecond(s) => seconds.push(s),
            Line::LoadSummary(s) => summary = Some(s),
            _ => {}
        }
    }
    let Some(summary) = summary else {
        if output.contains("load summary: ") {
            bail!("synack load printed text: run it with --json");
        }
        bail!("synack load printed no `load_summary` line");
    };
    Ok(LoadReport { seconds, summary })
}

/// Reads every `stats` line of `synack serve --json` output.
pub fn parse_serve_stats(output: &str) -> Result<Vec<ServeStats>> {
    Ok(lines(output)
        .context("synack serve printed a line that is not a report")?
        .into_iter()
        .filter_map(|line| match line {
            Line::Stats(s) => Some(s),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synack_load_output_parses() {
        let report = parse_load(include_str!("testdata/synack_load.jsonl")).unwrap();
        assert_eq!(report.seconds.len(), 4);
        assert_eq!(
            report.seconds[2],
            LoadSecond {
                t: 3,
                conn_per_s: 57_323,
                req_per_s: 57_339,
                p50_us: 185,
                p99_us: 283,
                p999_us: 463,
                errors: 0,
                time_wait: 0,
                reused: 0
            }
        );
        assert_eq!(report.summary.connections, 162_856);
        assert_eq!(report.summary.conn_per_s, 54_285.3);
        assert_eq!(report.summary.max_in_flight, 16);
        assert!(parse_load(r#"{"type":"load_second","t":1,"conn_per_s":5}"#).is_err(), "not a whole line");
        assert!(parse_load("{not json}\n").is_err());
        let text = "load: t=1 conn/s=5\nload summary: {\"seconds\":1}\n";
        assert!(parse_load(text).unwrap_err().to_string().contains("--json"), "text is not read");
    }

    #[test]
    fn serve_stats_lines_parse() {
        let stats = parse_serve_stats(include_str!("testdata/synack_serve.jsonl")).unwrap();
        assert_eq!(stats.len(), 8);
        assert_eq!(
            stats[3],
            ServeStats {
                t: 4.0,
                connections: 16,
                time_wait: 64_496,
                accepted: 66_993,
                time_wait_entered: 66_993,
                time_wait_evicted: 0,
                rss_kb: 197_468
            }
        );
        assert!(parse_serve_stats("synack ready\n").unwrap().is_empty());
    }
}
