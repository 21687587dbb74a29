//! The scaling chart, drawn from the benchmark's own figures: wall time of harden's
//! apply and of the plain SDK loop against N. SVG with plotters (no fonts needed:
//! text stays text), turned into PNG by headless Chromium when `HARDEN_CHROMIUM` names
//! it (`make browser` installs it).

use std::path::Path;
use std::process::Command;

use plotters::prelude::*;

use super::Point;

pub(crate) fn draw(points: &[Point], svg: &Path, png: &Path) {
    let (width, height) = (900u32, 540u32);
    {
        let root = SVGBackend::new(svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).expect("background");
        let max_n = points.iter().map(|p| p.groups).max().unwrap_or(1) as f64;
        let max_s = points
            .iter()
            .flat_map(|p| [p.harden.wall_s, p.sdk_loop.wall_s])
            .fold(1.0, f64::max);
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "apply of restrict-sg-egress on moto: wall time against security groups",
                ("sans-serif", 20),
            )
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_n * 1.05, 0.0..max_s * 1.15)
            .expect("axes");
        chart
            .configure_mesh()
            .x_desc("security groups (N)")
            .y_desc("wall time (s)")
            .draw()
            .expect("mesh");
        for (label, color, seconds) in [
            (
                "harden apply (saved plan)",
                RED,
                Box::new(|p: &Point| p.harden.wall_s) as Box<dyn Fn(&Point) -> f64>,
            ),
            (
                "plain sequential SDK loop",
                BLUE,
                Box::new(|p: &Point| p.sdk_loop.wall_s),
            ),
        ] {
            let series: Vec<(f64, f64)> = points
                .iter()
                .map(|p| (p.groups as f64, seconds(p)))
                .collect();
            chart
                .draw_series(LineSeries::new(series.clone(), color.stroke_width(2)))
                .expect("line")
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(
                    series
                        .into_iter()
                        .map(|xy| Circle::new(xy, 4, color.filled())),
                )
                .expect("points");
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .expect("legend");
        root.present().expect("svg written");
    }
    println!("chart: {}", svg.display());
    let Some(chromium) = std::env::var_os("HARDEN_CHROMIUM") else {
        println!("HARDEN_CHROMIUM is not set: no PNG (make browser installs Chromium)");
        return;
    };
    let absolute = std::fs::canonicalize(svg).expect("svg path");
    let status = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("file://{}", absolute.display()))
        .output()
        .expect("chromium runs");
    if status.status.success() && png.exists() {
        println!("chart: {}", png.display());
    } else {
        println!(
            "chromium did not draw the PNG: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    }
}
