//! Medians, the printed table and the time stamps of the result files.

use std::time::{SystemTime, UNIX_EPOCH};

/// The median of `values` (the mean of the two middle ones for an even count); `None` when
/// empty. NaNs are ignored.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 { sorted[mid] } else { (sorted[mid - 1] + sorted[mid]) / 2.0 })
}

/// A figure for the table: thousands separated, decimals only for small values
/// (`135,000`, `29.8`, `0.57`).
pub fn format_figure(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    if value.abs().round() >= 1000.0 {
        let rounded = value.round() as i64;
        let digits = rounded.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if rounded < 0 {
            out.insert(0, '-');
        }
        out
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// A ratio for the table: `1.23x`.
pub fn format_ratio(ratio: Option<f64>) -> String {
    match ratio {
        Some(r) if r.is_finite() => format!("{r:.2}x"),
        _ => "-".into(),
    }
}

/// Renders rows as a left-aligned text table with a header and a rule under it.
pub fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (columns - 1)));
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// Civil date (year, month, day) of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// UTC time stamps of `unix_seconds`: (`2026-11-25T04:52:47Z`, `20261125T045247Z`).
pub fn utc_stamps(unix_seconds: u64) -> (String, String) {
    let days = (unix_seconds / 86_400) as i64;
    let rest = unix_seconds % 86_400;
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s) = (rest / 3600, rest / 60 % 60, rest % 60);
    (format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"), format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z"))
}

/// The load averages over 1, 5 and 15 minutes (`/proc/loadavg`), for figures taken on a
/// shared machine; `?` when unreadable.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 2.0]), Some(2.0));
    }

    #[test]
    fn figures() {
        assert_eq!(format_figure(135_000.4), "135,000");
        assert_eq!(format_figure(1_234_567.0), "1,234,567");
        assert_eq!(format_figure(999.6), "1,000");
        assert_eq!(format_figure(29.78), "29.8");
        assert_eq!(format_figure(0.571), "0.57");
        assert_eq!(format_ratio(Some(1.234)), "1.23x");
        assert_eq!(format_ratio(None), "-");
    }

    #[test]
    fn time_stamps() {
        assert_eq!(utc_stamps(0).0, "1970-01-01T00:00:00Z");
        // 2000-02-29 12:34:56 UTC, a leap day.
        assert_eq!(utc_stamps(951_827_696).0, "2000-02-29T12:34:56Z");
        assert_eq!(utc_stamps(1_795_582_367).1, "20261125T045247Z");
    }

    #[test]
    fn tables_align() {
        let table = render_table(
            &["case", "synack"],
            &[vec!["connection rate".into(), "n/a".into()], vec!["x".into(), "1".into()]],
        );
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "case             synack");
        assert_eq!(lines[2], "connection rate  n/a");
        assert_eq!(lines[3], "x                1");
    }
}
