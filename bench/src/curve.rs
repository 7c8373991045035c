//! A curve over time ([`Curve`]: one panel per column) or grouped bars ([`Bars`]: a figure
//! per case and series), written as CSV and drawn as a PNG by gnuplot (installed by
//! `scripts/deps.sh bench`).

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
        let mut s = script_start((1000, 200 + 220 * panels), png);
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
        run_gnuplot(&self.gnuplot_script(csv, png), png)
    }
}

/// Bars: one group per case (a row), one bar per series (a column); a missing or non-finite
/// figure is an empty bar (`NaN` in the CSV, which gnuplot skips).
#[derive(Debug, Clone, Default)]
pub struct Bars {
    /// Title of the picture.
    pub title: String,
    /// The y axis: what the bars measure (with [`Bars::panels`], each panel is titled with its
    /// series instead).
    pub unit: String,
    /// One panel per series, a bar per case in each (series of different units), instead of
    /// the series side by side in each case's group.
    pub panels: bool,
    /// Series names (the legend).
    pub series: Vec<String>,
    /// Cases: a label and one figure per series.
    pub groups: Vec<(String, Vec<Option<f64>>)>,
}

impl Bars {
    /// Empty bars with these series.
    pub fn new(title: &str, unit: &str, series: &[&str]) -> Bars {
        Bars {
            title: title.to_owned(),
            unit: unit.to_owned(),
            series: series.iter().map(|c| (*c).to_owned()).collect(),
            groups: Vec::new(),
            panels: false,
        }
    }

    /// The CSV text: `case` and the series as header, then one line per group.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("case");
        for series in &self.series {
            let _ = write!(out, ",{}", series.replace(',', ";"));
        }
        out.push('\n');
        for (label, figures) in &self.groups {
            out.push_str(&label.replace(',', ";"));
            for v in figures {
                out.push(',');
                out.push_str(&v.filter(|v| v.is_finite()).map_or("NaN".to_owned(), format_cell));
            }
            out.push('\n');
        }
        out
    }

    /// The gnuplot script that draws `csv` into `png`.
    pub fn gnuplot_script(&self, csv: &Path, png: &Path) -> String {
        if self.panels {
            return self.panels_script(csv, png);
        }
        let width = (400 + 110 * self.groups.len() * self.series.len().max(1) / 2).clamp(900, 2000);
        let mut s = bars_start((width, 600), png);
        let _ = writeln!(s, "set title '{}'", self.title.replace('\'', ""));
        let _ = writeln!(s, "set ylabel '{}'", self.unit.replace('\'', ""));
        let _ = writeln!(s, "set style data histogram");
        let _ = writeln!(s, "set style histogram clustered gap 1");
        let _ = writeln!(s, "set style fill solid 0.8 border -1");
        let _ = writeln!(s, "set key outside right top vertical");
        let _ = writeln!(s, "set xtics rotate by -20");
        let plots: Vec<String> = (0..self.series.len())
            .map(|i| {
                let file = if i == 0 { format!("'{}'", csv.display()) } else { "''".to_owned() };
                let xtic = if i == 0 { ":xtic(1)" } else { "" };
                format!("{file} using {}{xtic} title columnheader({})", i + 2, i + 2)
            })
            .collect();
        let _ = writeln!(s, "plot {}", plots.join(", "));
        s
    }

    fn panels_script(&self, csv: &Path, png: &Path) -> String {
        let panels = self.series.len().max(1);
        let mut s = bars_start((900, 180 + 200 * panels), png);
        let _ = writeln!(s, "set style fill solid 0.7 border -1");
        let _ = writeln!(s, "set boxwidth 0.6");
        let _ = writeln!(s, "set multiplot layout {panels},1 title '{}'", self.title.replace('\'', ""));
        for (i, series) in self.series.iter().enumerate() {
            let _ = writeln!(s, "set title '{}'", series.replace('\'', ""));
            let _ = writeln!(s, "plot '{}' skip 1 using 0:{}:xtic(1) with boxes notitle", csv.display(), i + 2);
        }
        let _ = writeln!(s, "unset multiplot");
        s
    }

    /// Writes `<base>.csv` and draws `<base>.png` (its directory made if need be); the CSV is
    /// written whatever gnuplot does. Returns the PNG's path.
    pub fn write(&self, base: &Path) -> Result<std::path::PathBuf, PlotError> {
        if let Some(dir) = base.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let (csv, png) = (base.with_extension("csv"), base.with_extension("png"));
        std::fs::write(&csv, self.to_csv())?;
        run_gnuplot(&self.gnuplot_script(&csv, &png), &png)?;
        Ok(png)
    }
}

/// The opening of every script here: a PNG of `(width, height)` pixels from a CSV file.
fn script_start((width, height): (usize, usize), png: &Path) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "set terminal pngcairo size {width},{height} noenhanced");
    let _ = writeln!(s, "set output '{}'", png.display());
    let _ = writeln!(s, "set datafile separator ','");
    s
}

/// The opening of a bar chart: missing values (NaN) drawn as none, bars from zero.
fn bars_start(size: (usize, usize), png: &Path) -> String {
    let mut s = script_start(size, png);
    let _ = writeln!(s, "set datafile missing 'NaN'");
    let _ = writeln!(s, "set grid ytics");
    let _ = writeln!(s, "set yrange [0:*]");
    s
}

/// Runs a gnuplot script (written next to `png`, removed after).
fn run_gnuplot(script_text: &str, png: &Path) -> Result<(), PlotError> {
    let script = png.with_extension("gnuplot");
    std::fs::write(&script, script_text)?;
    let output = Command::new("gnuplot").arg(&script).output().map_err(PlotError::NoGnuplot);
    let _ = std::fs::remove_file(&script);
    let output = output?;
    if !output.status.success() {
        return Err(PlotError::Failed(String::from_utf8_lossy(&output.stderr).trim().to_owned()));
    }
    Ok(())
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

    #[test]
    fn bars_write_missing_figures_as_nan_and_plot_every_series() {
        let mut b = Bars::new("bulk", "Gbit/s", &["kernel -> synack", "synack <-> synack"]);
        b.groups.push(("one way".into(), vec![Some(7.04), None]));
        b.groups.push(("-R, 1 conn".into(), vec![Some(4.5), Some(3.5)]));
        assert_eq!(b.to_csv(), "case,kernel -> synack,synack <-> synack\none way,7.040,NaN\n-R; 1 conn,4.500,3.500\n");
        let script = b.gnuplot_script(Path::new("/tmp/b.csv"), Path::new("/tmp/b.png"));
        assert!(script.contains("'/tmp/b.csv' using 2:xtic(1) title columnheader(2), '' using 3 title columnheader(3)"));
        assert!(script.contains("set datafile missing 'NaN'"));
        b.panels = true;
        let script = b.gnuplot_script(Path::new("/tmp/b.csv"), Path::new("/tmp/b.png"));
        assert!(script.contains("set multiplot layout 2,1"), "{script}");
        assert!(script.contains("set title 'synack <-> synack'\nplot '/tmp/b.csv' skip 1 using 0:3:xtic(1) with boxes"));
    }
}
