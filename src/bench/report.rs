//! Presenting bench results: an aligned table, JSON, and an SVG chart of
//! throughput and p99 latency per server.

use std::fmt::Write;
use std::path::Path;

use plotters::prelude::*;

use super::Row;

/// The rows as an aligned text table.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<22} {:>6} {:>7} {:>12} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8} {:>10}",
        "server",
        "conns",
        "size",
        "rt/s",
        "MB/s",
        "p50 us",
        "p99 us",
        "p99.9 us",
        "errors",
        "starved",
        "RSS KiB"
    );
    for row in rows {
        let rss = row
            .rss_kib
            .map_or_else(|| "-".to_owned(), |r| r.to_string());
        let _ = writeln!(
            out,
            "{:<22} {:>6} {:>7} {:>12.0} {:>9.1} {:>9} {:>9} {:>9} {:>7} {:>8} {:>10}",
            row.server,
            row.conns,
            row.size,
            row.round_trips_per_sec,
            row.megabytes_per_sec,
            row.p50_us,
            row.p99_us,
            row.p999_us,
            row.errors,
            row.starved,
            rss
        );
    }
    out
}

/// One chart panel: where to draw, its title, the value it shows, and how
/// its axis prints that value.
type Panel<'a, 'b> = (
    &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    &'static str,
    fn(&Row) -> f64,
    fn(&f64) -> String,
);

/// Room on the right of each panel for the legend.
const LEGEND_WIDTH: u32 = 220;

/// Draws round trips per second and p99 latency for every server and load
/// into an SVG file: one group of bars per load, one bar per server, the
/// legend beside the bars.
///
/// # Errors
/// The file cannot be written.
pub fn chart(rows: &[Row], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let mut servers: Vec<&str> = Vec::new();
    let mut loads: Vec<(usize, usize)> = Vec::new();
    for row in rows {
        if !servers.contains(&row.server.as_str()) {
            servers.push(&row.server);
        }
        if !loads.contains(&(row.conns, row.size)) {
            loads.push((row.conns, row.size));
        }
    }
    let root = SVGBackend::new(path, (1300, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(400);
    let panels: [Panel; 2] = [
        (
            &top,
            "round trips per second (higher is better)",
            |r| r.round_trips_per_sec,
            |v| format!("{v:.0}"),
        ),
        (
            &bottom,
            "p99 latency in ms (lower is better)",
            |r| r.p99_us as f64 / 1000.0,
            |v| format!("{v:.1}"),
        ),
    ];
    // Load `l` is the group of bars centred on x = l, so the axis's whole
    // numbers fall in the middle of the groups and carry their names.
    let bar_width = 1.0 / (servers.len() as f64 + 1.0);
    for (area, title, value, format_value) in panels {
        let max = rows.iter().map(value).fold(0.0, f64::max).max(1e-9) * 1.1;
        let (plot, legend) = area.split_horizontally(area.dim_in_pixel().0 - LEGEND_WIDTH);
        let mut chart = ChartBuilder::on(&plot)
            .caption(title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5..(loads.len() as f64 - 0.5), 0.0..max)?;
        let label_loads = loads.clone();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(loads.len())
            .x_label_formatter(&|x| {
                let nearest = x.round();
                match label_loads.get(nearest as usize) {
                    Some((conns, size)) if (x - nearest).abs() < 1e-6 && nearest >= 0.0 => {
                        format!("{conns} conns x {size} B")
                    }
                    _ => String::new(),
                }
            })
            .y_label_formatter(&format_value)
            .draw()?;
        for (s, server) in servers.iter().enumerate() {
            let color = Palette99::pick(s).to_rgba();
            let bars: Vec<Rectangle<(f64, f64)>> = loads
                .iter()
                .enumerate()
                .filter_map(|(l, load)| {
                    let row = rows
                        .iter()
                        .find(|r| r.server == *server && (r.conns, r.size) == *load)?;
                    let x = l as f64 - 0.5 + bar_width * (s as f64 + 0.5);
                    Some(Rectangle::new(
                        [(x, 0.0), (x + bar_width * 0.9, value(row))],
                        color.filled(),
                    ))
                })
                .collect();
            chart.draw_series(bars)?;
            let y = 40 + 20 * s as i32;
            legend.draw(&Rectangle::new([(10, y), (22, y + 12)], color.filled()))?;
            legend.draw(&Text::new(*server, (30, y), ("sans-serif", 14)))?;
        }
    }
    root.present()?;
    Ok(())
}
