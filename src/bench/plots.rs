//! PNG figures of the benchmark (plotters, bitmap backend). Text is drawn with DejaVu Sans,
//! embedded in the binary (assets/fonts/, Bitstream Vera licence: redistributable), so the
//! figures need no system fonts.

use super::grid::{cell_name, BenchError, BenchResult, GridConfig};
use super::journal::Row;
use super::published;
use super::report::{mean_sd, Groups};
use crate::io::read_samples;
use crate::training::BaseGradient;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::path::{Path, PathBuf};

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

fn fonts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Fails only for bytes that are not a font; the file is part of the source tree.
        let _ = register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn plot_err(path: &Path) -> impl Fn(String) -> BenchError + '_ {
    move |problem| BenchError::Plot {
        path: path.to_path_buf(),
        problem,
    }
}

/// Every figure: C2ST against budget per task; a pair plot per task and method.
pub fn write_figures(cfg: &GridConfig, rows: &[Row]) -> BenchResult<Vec<PathBuf>> {
    fonts();
    let g = Groups::new(rows);
    let mut out = Vec::new();
    for task in &g.tasks {
        let p = cfg.out.join(format!("c2st_{task}.png"));
        c2st_figure(&g, task, &p).map_err(plot_err(&p))?;
        out.push(p);
        out.extend(pair_plots(cfg, rows, task)?);
    }
    Ok(out)
}

fn c2st_figure(g: &Groups, task: &str, path: &Path) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let root = BitMapBackend::new(path, (800, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let pubs: Vec<(&str, Vec<published::PublishedPoint>)> = ["NPE", "NRE"]
        .iter()
        .map(|a| (*a, published::published(task, a)))
        .filter(|p| !p.1.is_empty())
        .collect();
    let papers: Vec<(&str, Vec<(usize, f64)>)> = ["NPE", "NRE"]
        .iter()
        .map(|a| (*a, published::paper(task, a)))
        .filter(|p| !p.1.is_empty())
        .collect();
    // The axis spans our budgets; reference points outside it would stretch it for nothing.
    let xs: Vec<f64> = g.budgets.iter().map(|&b| b as f64).collect();
    let (lo, hi) = xs
        .iter()
        .fold((f64::INFINITY, 0f64), |(a, b), &x| (a.min(x), b.max(x)));
    let (lo, hi) = (lo / 1.6, hi * 1.6);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{task}: C2ST against simulation budget (0.5 is perfect)"),
            (FAMILY, 20),
        )
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d((lo..hi).log_scale(), 0.45f64..1.0)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("simulations")
        .y_desc("C2ST")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .label_style((FAMILY, 14))
        .draw()
        .map_err(|x| e(&x))?;
    for (i, l) in g.labels.iter().enumerate() {
        let pts: Vec<(f64, f64, f64)> = g
            .budgets
            .iter()
            .filter_map(|&b| {
                let v = g.c2st(task, l, b);
                let (m, s) = mean_sd(&v);
                m.is_finite().then_some((b as f64, m, s))
            })
            .collect();
        if pts.is_empty() {
            continue;
        }
        let c = COLORS[i % COLORS.len()];
        let dashed = l.starts_with("sbi");
        let line: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, p.1)).collect();
        let series = if dashed {
            chart
                .draw_series(DashedLineSeries::new(line, 8, 5, c.stroke_width(2)))
                .map_err(|x| e(&x))?
        } else {
            chart
                .draw_series(LineSeries::new(line, c.stroke_width(2)))
                .map_err(|x| e(&x))?
        };
        series
            .label(l.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(
                pts.iter()
                    .map(|&(x, y, _)| Circle::new((x, y), 4, c.filled())),
            )
            .map_err(|x| e(&x))?;
        chart
            .draw_series(pts.iter().filter(|p| p.2 > 0.0).map(|&(x, m, s)| {
                PathElement::new(vec![(x, m - s), (x, m + s)], c.stroke_width(1))
            }))
            .map_err(|x| e(&x))?;
    }
    for (j, (alg, pts)) in pubs.iter().enumerate() {
        let c = COLORS[(g.labels.len() + j) % COLORS.len()];
        chart
            .draw_series(
                pts.iter()
                    .filter(|p| g.budgets.contains(&p.0))
                    .map(|&(b, m, _, _)| TriangleMarker::new((b as f64, m), 7, c.stroke_width(2))),
            )
            .map_err(|x| e(&x))?
            .label(format!("sbi {alg}, published (sbi 0.23 rerun)"))
            .legend(move |(x, y)| TriangleMarker::new((x + 10, y), 6, c.stroke_width(2)));
    }
    for (j, (alg, pts)) in papers.iter().enumerate() {
        let c = COLORS[(g.labels.len() + pubs.len() + j) % COLORS.len()];
        chart
            .draw_series(
                pts.iter()
                    .filter(|p| g.budgets.contains(&p.0))
                    .map(|&(b, m)| Cross::new((b as f64, m), 6, c.stroke_width(2))),
            )
            .map_err(|x| e(&x))?
            .label(format!("sbibm {alg}, paper"))
            .legend(move |(x, y)| Cross::new((x + 10, y), 5, c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))
}

/// Pair plots of our samples (colour) over the reference (grey) for the first observation, seed
/// 0 and the largest budget with samples: up to the first 4 dimensions of θ.
fn pair_plots(cfg: &GridConfig, rows: &[Row], task: &str) -> BenchResult<Vec<PathBuf>> {
    let Some(&obs) = cfg.observations.first() else {
        return Ok(vec![]);
    };
    let mut out = Vec::new();
    let mut methods: Vec<(String, BaseGradient, usize)> = rows
        .iter()
        .filter(|r| r.task == task && !r.method.starts_with("sbi"))
        .map(|r| (r.method.clone(), r.base_gradient, r.contrastive))
        .collect();
    methods.sort_by_key(|(m, bg, k)| (m.clone(), bg.name(), *k));
    methods.dedup();
    let mut done = Vec::new();
    for (m, bg, k) in methods {
        if done.contains(&(m.clone(), bg)) {
            continue;
        }
        let mut budgets: Vec<usize> = rows
            .iter()
            .filter(|r| {
                r.task == task
                    && r.method == m
                    && r.base_gradient == bg
                    && r.contrastive == k
                    && r.seed == 0
                    && r.observation == obs
            })
            .map(|r| r.budget)
            .collect();
        budgets.sort_unstable();
        let Some(path_b) = budgets
            .iter()
            .rev()
            .map(|b| {
                (
                    b,
                    cfg.out
                        .join("samples")
                        .join(task)
                        .join(format!("{}_obs{obs}.npy", cell_name(&m, k, bg, *b, 0))),
                )
            })
            .find(|(_, p)| p.exists())
        else {
            continue;
        };
        let refs = cfg
            .out
            .join("references")
            .join(task)
            .join(format!("obs{obs}_n{}.npy", cfg.num_samples));
        if !refs.exists() {
            continue;
        }
        // A sampler that accepted nothing leaves an empty (or no) sample file: nothing to draw.
        let (Ok(ours), Ok(reference)) = (read_samples(&path_b.1), read_samples(&refs)) else {
            continue;
        };
        if ours.shape()[0] < 2 || ours.shape()[1] != reference.shape()[1] {
            continue;
        }
        let (suffix, variant) = match bg {
            BaseGradient::Reparameterized => ("_reparam", " (reparameterized base gradient)"),
            BaseGradient::Detached => ("", ""),
        };
        let p = cfg.out.join(format!("pairs_{task}_{m}{suffix}.png"));
        let title = format!("{task}, {m}{}{variant}, {} simulations, observation {obs}: ours (colour) over the reference (grey)", if m == "npe" { String::new() } else { format!(" K={k}") }, path_b.0);
        pair_figure(
            &title,
            &reference.data,
            &ours.data,
            reference.shape()[1],
            &p,
        )
        .map_err(plot_err(&p))?;
        out.push(p);
        done.push((m, bg));
    }
    Ok(out)
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn pair_figure(
    title: &str,
    reference: &[f64],
    ours: &[f64],
    d: usize,
    path: &Path,
) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let k = d.min(4);
    let size = 230 * k as u32;
    let root = BitMapBackend::new(path, (size.max(760), size + 40)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let (top, body) = root.split_vertically(40);
    top.draw_text(title, &(FAMILY, 13).into_font().color(&BLACK), (8, 12))
        .map_err(|x| e(&x))?;
    let col = |s: &[f64], j: usize| -> Vec<f64> { s.iter().skip(j).step_by(d).copied().collect() };
    let ranges: Vec<(f64, f64)> = (0..k)
        .map(|j| {
            let mut all = col(reference, j);
            all.extend(col(ours, j));
            let (a, b) = (quantile(&mut all, 0.002), quantile(&mut all, 0.998));
            let pad = 0.05 * (b - a).max(1e-9);
            (a - pad, b + pad)
        })
        .collect();
    let cells = body.split_evenly((k, k));
    let ours_c = RGBColor(31, 119, 180);
    let take = 2000;
    for (idx, area) in cells.iter().enumerate() {
        let (i, j) = (idx / k, idx % k);
        if j > i {
            continue;
        }
        let (xr, yr) = (ranges[j], ranges[i]);
        if i == j {
            let bins = 40usize;
            let hist = |v: Vec<f64>| {
                let mut h = vec![0f64; bins];
                for x in &v {
                    let b = (((x - xr.0) / (xr.1 - xr.0)) * bins as f64).floor();
                    if b >= 0.0 && (b as usize) < bins {
                        h[b as usize] += 1.0;
                    }
                }
                let s: f64 = h.iter().sum::<f64>().max(1.0);
                h.iter().map(|c| c / s).collect::<Vec<f64>>()
            };
            let (hr, ho) = (hist(col(reference, j)), hist(col(ours, j)));
            let top = hr.iter().chain(&ho).fold(0f64, |a, &b| a.max(b)) * 1.1;
            let mut ch = ChartBuilder::on(area)
                .margin(4)
                .caption(format!("θ{}", j + 1), (FAMILY, 13))
                .x_label_area_size(18)
                .build_cartesian_2d(xr.0..xr.1, 0f64..top.max(1e-9))
                .map_err(|x| e(&x))?;
            ch.configure_mesh()
                .disable_mesh()
                .y_labels(0)
                .x_labels(3)
                .label_style((FAMILY, 10))
                .draw()
                .map_err(|x| e(&x))?;
            let w = (xr.1 - xr.0) / bins as f64;
            let step = |h: &[f64]| -> Vec<(f64, f64)> {
                h.iter()
                    .enumerate()
                    .flat_map(|(b, &v)| [(xr.0 + b as f64 * w, v), (xr.0 + (b + 1) as f64 * w, v)])
                    .collect()
            };
            ch.draw_series(LineSeries::new(
                step(&hr),
                RGBColor(120, 120, 120).stroke_width(2),
            ))
            .map_err(|x| e(&x))?;
            ch.draw_series(LineSeries::new(step(&ho), ours_c.stroke_width(2)))
                .map_err(|x| e(&x))?;
        } else {
            let mut ch = ChartBuilder::on(area)
                .margin(4)
                .x_label_area_size(18)
                .y_label_area_size(30)
                .build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)
                .map_err(|x| e(&x))?;
            ch.configure_mesh()
                .disable_mesh()
                .x_labels(3)
                .y_labels(3)
                .label_style((FAMILY, 10))
                .draw()
                .map_err(|x| e(&x))?;
            let pts = |s: &[f64]| -> Vec<(f64, f64)> {
                let n = s.len() / d;
                let stride = (n / take).max(1);
                (0..n)
                    .step_by(stride)
                    .map(|r| (s[r * d + j], s[r * d + i]))
                    .filter(|&(x, y)| x >= xr.0 && x <= xr.1 && y >= yr.0 && y <= yr.1)
                    .collect()
            };
            ch.draw_series(
                pts(reference)
                    .into_iter()
                    .map(|p| Circle::new(p, 1, RGBColor(150, 150, 150).mix(0.5).filled())),
            )
            .map_err(|x| e(&x))?;
            ch.draw_series(
                pts(ours)
                    .into_iter()
                    .map(|p| Circle::new(p, 1, ours_c.mix(0.35).filled())),
            )
            .map_err(|x| e(&x))?;
        }
    }
    root.present().map_err(|x| e(&x))
}
