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

/// One chart panel: where to draw, its title, and the value it shows.
type Panel<'a, 'b> = (
    &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    &'static str,
    fn(&Row) -> f64,
);

/// Draws round trips per second and p99 latency for every server and load
/// into an SVG file: one group of bars per load, one bar per server.
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
    let root = SVGBackend::new(path, (1100, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(400);
    let panels: [Panel; 2] = [
        (&top, "round trips per second (higher is better)", |r| {
            r.round_trips_per_sec
        }),
        (&bottom, "p99 latency in ms (lower is better)", |r| {
            r.p99_us as f64 / 1000.0
        }),
    ];
    let width = servers.len().max(1) as f64 + 1.0;
    for (area, title, value) in panels {
        let max = rows.iter().map(value).fold(0.0, f64::max).max(1e-9) * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..(loads.len() as f64 * width), 0.0..max)?;
        let label_loads = loads.clone();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(loads.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let index = (*x / width) as usize;
                match label_loads.get(index) {
                    Some((conns, size))
                        if (x / width).fract() > 0.3 && (x / width).fract() < 0.7 =>
                    {
                        format!("{conns} conns x {size} B")
                    }
                    _ => String::new(),
                }
            })
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
                    let x = l as f64 * width + 0.5 + s as f64;
                    Some(Rectangle::new(
                        [(x, 0.0), (x + 0.9, value(row))],
                        color.filled(),
                    ))
                })
                .collect();
            chart
                .draw_series(bars)?
                .label(*server)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
