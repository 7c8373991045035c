//! A curve over time: written as CSV, and drawn as a PNG by gnuplot (installed by
//! `scripts/deps.sh bench`) with one panel per column.

use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::process::Command;

/// Columns of numbers; the first is the x axis.
#[derive(Debug, Clone, Default)]
pub struct Curve {
    /// Title of the picture.
    pub title: String,
    /// Column names (CSV header and panel labels); the first is the x axis.
    pub columns: Vec<String>,
    /// Rows, one value per column.
    pub rows: Vec<Vec<f64>>,
}

/// Why no PNG was drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// gnuplot could not be started.
    #[error("gnuplot not found ({0}); install it with: bash scripts/deps.sh bench")]
    NoGnuplot(io::Error),
    /// gnuplot ran and failed.
    #[error("gnuplot failed: {0}")]
    Failed(String),
    /// The script could not be written.
    #[error("cannot write the gnuplot script: {0}")]
    Io(#[from] io::Error),
}

impl Curve {
    /// An empty curve with these columns.
    pub fn new(title: &str, columns: &[&str]) -> Curve {
        Curve { title: title.to_owned(), columns: columns.iter().map(|c| (*c).to_owned()).collect(), rows: Vec::new() }
    }

    /// The CSV text: a header, then one line per row.
    pub fn to_csv(&self) -> String {
        let mut out = self.columns.join(",");
        out.push('\n');
        for row in &self.rows {
            let cells: Vec<String> = row.iter().map(|v| format_cell(*v)).collect();
            out.push_str(&cells.join(","));
            out.push('\n');
        }
        out
    }

    /// Writes the CSV.
    pub fn write_csv(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, self.to_csv())
    }

    /// The gnuplot script that draws `csv` into `png`: one panel per column after the first.
    pub fn gnuplot_script(&self, csv: &Path, png: &Path) -> String {
        let panels = self.columns.len().saturating_sub(1).max(1);
        let mut s = String::new();
        let _ = writeln!(s, "set terminal pngcairo size 1000,{} noenhanced", 200 + 220 * panels);
        let _ = writeln!(s, "set output '{}'", png.display());
        let _ = writeln!(s, "set datafile separator ','");
        let _ = writeln!(s, "set grid");
        let _ = writeln!(s, "set multiplot layout {panels},1 title '{}'", self.title.replace('\'', ""));
        for (i, column) in self.columns.iter().enumerate().skip(1) {
            let _ = writeln!(s, "set xlabel '{}'", self.columns[0]);
            let _ = writeln!(s, "set ylabel '{column}'");
            let _ =
                writeln!(s, "plot '{}' skip 1 using 1:{} with linespoints pt 7 ps 0.4 notitle", csv.display(), i + 1);
        }
        let _ = writeln!(s, "unset multiplot");
        s
    }

    /// Draws the CSV already written at `csv` into `png` with gnuplot.
    pub fn plot_png(&self, csv: &Path, png: &Path) -> Result<(), PlotError> {
        let script = png.with_extension("gnuplot");
        std::fs::write(&script, self.gnuplot_script(csv, png))?;
        let output = Command::new("gnuplot").arg(&script).output().map_err(PlotError::NoGnuplot);
        let _ = std::fs::remove_file(&script);
        let output = output?;
        if !output.status.success() {
            return Err(PlotError::Failed(String::from_utf8_lossy(&output.stderr).trim().to_owned()));
        }
        Ok(())
    }
}

fn format_cell(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_script_name_every_column() {
        let mut c = Curve::new("TIME_WAIT churn", &["t_s", "time_wait", "rss_mib"]);
        c.rows.push(vec![0.0, 0.0, 35.5]);
        c.rows.push(vec![1.0, 18000.0, 36.25]);
        assert_eq!(c.to_csv(), "t_s,time_wait,rss_mib\n0,0,35.500\n1,18000,36.250\n");
        let script = c.gnuplot_script(Path::new("/tmp/x.csv"), Path::new("/tmp/x.png"));
        assert!(script.contains("set multiplot layout 2,1"));
        assert!(script.contains("using 1:2") && script.contains("using 1:3"));
        assert!(script.contains("set ylabel 'rss_mib'"));
    }
}
