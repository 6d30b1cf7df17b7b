//! results.csv, table.md and the figures, all regenerated from the journal's rows.

use super::grid::{BenchResult, GridConfig};
use super::journal::Row;
use super::published;
use crate::evaluation::c2st::C2stDevice;
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// Mean and sample standard deviation (0 for one value; NaN for none).
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let s = if v.len() > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
    } else {
        0.0
    };
    (m, s)
}

fn opt(v: Option<f64>) -> String {
    v.map_or(String::new(), |x| format!("{x}"))
}

/// CSV of the rows, one per task/method/K/budget/observation/seed.
pub fn csv(rows: &[Row]) -> String {
    let mut s = String::from("task,method,contrastive,budget,seed,observation,c2st,base_c2st,simulate_s,train_s,epochs,sample_s,c2st_s,samples,sampling_finished,acceptance_rate,log_z,proposals,error,finished_at,base_gradient,c2st_device,adapter\n");
    for r in rows {
        let err = r.error.as_deref().unwrap_or("").replace('"', "'");
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{:.3},{:.3},{},{:.3},{:.3},{},{},{},{},{},\"{}\",{:.3},{},{},{}",
            r.task,
            r.method,
            r.contrastive,
            r.budget,
            r.seed,
            r.observation,
            opt(r.c2st),
            opt(r.base_c2st),
            r.simulate_s,
            r.train_s,
            r.epochs,
            r.sample_s,
            r.c2st_s,
            r.samples,
            r.sampling_finished,
            opt(r.acceptance_rate),
            opt(r.log_z),
            r.proposals.map_or(String::new(), |p| p.to_string()),
            err,
            r.finished_at,
            r.base_gradient.name(),
            match r.c2st_device {
                C2stDevice::Gpu => "gpu",
                C2stDevice::Cpu => "cpu",
            },
            r.adapter
                .as_deref()
                .map_or(String::new(), |a| format!("\"{}\"", a.replace('"', "'")))
        );
    }
    s
}

/// A row label of the tables and figures: method, K where more than one K ran, and
/// "reparam." for a hybrid trained with `--base-gradient reparameterized`.
pub fn label(r: &Row, many_k: bool) -> String {
    let l: String = match r.method.as_str() {
        "sbi-npe" => "sbi NPE (NSF)".into(),
        "sbi-nre" => "sbi NRE".into(),
        m if many_k && m != "npe" => format!("{m} K={}", r.contrastive),
        m => m.into(),
    };
    match r.base_gradient {
        crate::training::BaseGradient::Reparameterized => format!("{l} reparam."),
        crate::training::BaseGradient::Detached => l,
    }
}

fn budget_name(b: usize) -> String {
    let e = (b as f64).log10();
    if (e - e.round()).abs() < 1e-9 {
        format!("10^{}", e.round() as i32)
    } else {
        b.to_string()
    }
}

/// Groups: (task, label, budget) → C2ST values, base-flow values, rows.
pub struct Groups<'a> {
    pub tasks: Vec<String>,
    pub labels: Vec<String>,
    pub budgets: Vec<usize>,
    pub rows: &'a [Row],
    many_k: bool,
}

impl<'a> Groups<'a> {
    pub fn new(rows: &'a [Row]) -> Self {
        let many_k = rows
            .iter()
            .map(|r| r.contrastive)
            .collect::<BTreeSet<_>>()
            .len()
            > 1;
        let mut tasks = Vec::new();
        let mut labels = Vec::new();
        for r in rows {
            if !tasks.contains(&r.task) {
                tasks.push(r.task.clone());
            }
            let l = label(r, many_k);
            if !labels.contains(&l) {
                labels.push(l);
            }
        }
        labels.sort_by_key(|l| (l.starts_with("sbi"), l.clone()));
        let budgets: Vec<usize> = rows
            .iter()
            .map(|r| r.budget)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        Groups {
            tasks,
            labels,
            budgets,
            rows,
            many_k,
        }
    }

    pub fn select(&self, task: &str, lab: &str, budget: usize) -> Vec<&'a Row> {
        self.rows
            .iter()
            .filter(|r| r.task == task && r.budget == budget && label(r, self.many_k) == lab)
            .collect()
    }

    pub fn c2st(&self, task: &str, lab: &str, budget: usize) -> Vec<f64> {
        self.select(task, lab, budget)
            .iter()
            .filter_map(|r| r.c2st)
            .collect()
    }
}

fn cell(v: &[f64], bold: bool) -> String {
    if v.is_empty() {
        return "–".into();
    }
    let (m, s) = mean_sd(v);
    let t = format!("{m:.3} ± {s:.3} ({})", v.len());
    if bold {
        format!("**{t}**")
    } else {
        t
    }
}

/// For each of our methods and budgets: on how many tasks its mean C2ST is at or below the sbibm
/// paper's NPE (the bar of the benchmark issue), naming the tasks either way.
fn against_paper(g: &Groups) -> String {
    let mut s = String::new();
    for l in g.labels.iter().filter(|l| !l.starts_with("sbi")) {
        for &b in &g.budgets {
            let (mut at_or_below, mut above) = (Vec::new(), Vec::new());
            for task in &g.tasks {
                let m = mean_sd(&g.c2st(task, l, b)).0;
                let paper = published::paper(task, "NPE").into_iter().find(|p| p.0 == b);
                if let (true, Some((_, p))) = (m.is_finite(), paper) {
                    let entry = format!("{task} {m:.3} vs {p:.3}");
                    if m <= p {
                        at_or_below.push(entry);
                    } else {
                        above.push(entry);
                    }
                }
            }
            let n = at_or_below.len() + above.len();
            if n > 0 {
                let _ = writeln!(
                    s,
                    "| {l} | {} | {} of {n} | {} | {} |",
                    budget_name(b),
                    at_or_below.len(),
                    at_or_below.join("; "),
                    above.join("; ")
                );
            }
        }
    }
    if s.is_empty() {
        return s;
    }
    format!(
        "\nAgainst sbibm's NPE ({}): tasks where our mean C2ST is at or below it.\n\n| method | budget | at or below | those tasks (ours vs paper) | above |\n|---|---:|---:|---|---|\n{s}",
        published::PAPER_SOURCE
    )
}

/// What a table cell's mean leaves out: rows without a C2ST, and rows scored on fewer samples
/// than asked for (the sampler's time budget ran out), which a C2ST on a few hundred samples
/// cannot be compared with.
fn flags(rows: &[&Row]) -> String {
    let unscored = rows.iter().filter(|r| r.c2st.is_none()).count();
    let partial = rows
        .iter()
        .filter(|r| r.c2st.is_some() && !r.sampling_finished)
        .count();
    let mut f = String::new();
    if unscored > 0 {
        f.push_str(&format!(" [{unscored} not scored]"));
    }
    if partial > 0 {
        f.push_str(&format!(" [{partial} on fewer samples]"));
    }
    f
}

/// table.md: C2ST per task × method and budget; times; the peer's time ratio; published values.
pub fn table(cfg: &GridConfig, rows: &[Row]) -> String {
    let g = Groups::new(rows);
    let mut s = String::new();
    let _ = writeln!(s, "# gkl-gpu bench\n");
    let _ = writeln!(
        s,
        "C2ST against the reference posterior (0.5 is perfect), mean ± sd over observations × seeds (count in parentheses), {} samples per observation. Bold: the best (lowest) mean of each task and budget. [k not scored]: k rows without a C2ST; [k on fewer samples]: k rows scored on the samples found before the sampler's time budget ran out.\n",
        cfg.num_samples
    );
    let _ = write!(s, "| task | method |");
    for b in &g.budgets {
        let _ = write!(s, " {} |", budget_name(*b));
    }
    let _ = write!(s, "\n|---|---|");
    for _ in &g.budgets {
        let _ = write!(s, "---:|");
    }
    s.push('\n');
    for task in &g.tasks {
        let best: Vec<f64> = g
            .budgets
            .iter()
            .map(|&b| {
                g.labels
                    .iter()
                    .map(|l| mean_sd(&g.c2st(task, l, b)).0)
                    .filter(|m| m.is_finite())
                    .fold(f64::INFINITY, f64::min)
            })
            .collect();
        for l in &g.labels {
            if g.budgets.iter().all(|&b| g.select(task, l, b).is_empty()) {
                continue;
            }
            let _ = write!(s, "| {task} | {l} |");
            for (i, &b) in g.budgets.iter().enumerate() {
                let v = g.c2st(task, l, b);
                let m = mean_sd(&v).0;
                let mut c = cell(&v, m.is_finite() && m == best[i]);
                c.push_str(&flags(&g.select(task, l, b)));
                let _ = write!(s, " {c} |");
            }
            s.push('\n');
            let base: Vec<Vec<f64>> = g
                .budgets
                .iter()
                .map(|&b| {
                    g.select(task, l, b)
                        .iter()
                        .filter_map(|r| r.base_c2st)
                        .collect()
                })
                .collect();
            if base.iter().any(|v| !v.is_empty()) {
                let _ = write!(s, "| {task} | {l}: base flow alone |");
                for v in &base {
                    let _ = write!(s, " {} |", cell(v, false));
                }
                s.push('\n');
            }
        }
        for alg in ["NPE", "NRE"] {
            let paper = published::paper(task, alg);
            if paper.is_empty() {
                continue;
            }
            let _ = write!(s, "| {task} | *sbibm {alg} (paper)* |");
            for b in &g.budgets {
                match paper.iter().find(|p| p.0 == *b) {
                    Some(p) => {
                        let _ = write!(s, " *{:.3}* |", p.1);
                    }
                    None => s.push_str(" – |"),
                }
            }
            s.push('\n');
        }
    }
    s.push_str(&against_paper(&g));
    // Times.
    let _ = writeln!(s, "\nWall times (s, mean over cells; sample and C2ST per observation). Ratio and hybrid: rejection sampler's acceptance rate and ln Z(x_o), mean over observations. `vs sbi`: our training time / sbi's for the same task, budget and seeds (npe against sbi NPE, ratio against sbi NRE).\n");
    let _ = writeln!(s, "| task | method | budget | simulate | train | epochs | sample | C2ST | acceptance | ln Z | train vs sbi |");
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for task in &g.tasks {
        for l in &g.labels {
            for &b in &g.budgets {
                let sel = g.select(task, l, b);
                if sel.is_empty() {
                    continue;
                }
                let f = |get: &dyn Fn(&Row) -> Option<f64>| {
                    mean_sd(
                        &sel.iter()
                            .filter_map(|r| get(r))
                            .filter(|v| v.is_finite())
                            .collect::<Vec<_>>(),
                    )
                    .0
                };
                let fmt = |v: f64, p: usize| {
                    if v.is_finite() {
                        format!("{v:.p$}")
                    } else {
                        "–".into()
                    }
                };
                let train = f(&|r| Some(r.train_s));
                let peer = match l.as_str() {
                    "npe" => Some("sbi NPE (NSF)"),
                    l if l.starts_with("ratio") => Some("sbi NRE"),
                    _ => None,
                };
                let ratio = peer
                    .map(|p| {
                        let ps = g.select(task, p, b);
                        let pt = mean_sd(&ps.iter().map(|r| r.train_s).collect::<Vec<_>>()).0;
                        if pt.is_finite() && pt > 0.0 {
                            format!("{:.2}", train / pt)
                        } else {
                            "–".into()
                        }
                    })
                    .unwrap_or_else(|| "–".into());
                let _ = writeln!(
                    s,
                    "| {task} | {l} | {b} | {} | {} | {} | {} | {} | {} | {} | {ratio} |",
                    fmt(f(&|r| Some(r.simulate_s)), 2),
                    fmt(train, 1),
                    fmt(f(&|r| Some(r.epochs as f64)), 0),
                    fmt(f(&|r| Some(r.sample_s)), 2),
                    fmt(f(&|r| Some(r.c2st_s)), 1),
                    fmt(f(&|r| r.acceptance_rate), 4),
                    fmt(f(&|r| r.log_z), 3),
                );
            }
        }
    }
    let errors: Vec<&Row> = rows.iter().filter(|r| r.error.is_some()).collect();
    if !errors.is_empty() {
        let _ = writeln!(s, "\nRows with a problem (first per task and method):\n");
        let mut seen = BTreeSet::new();
        for r in errors {
            if seen.insert((r.task.clone(), r.method.clone(), r.budget)) {
                let _ = writeln!(
                    s,
                    "- {} {} n={}: {}",
                    r.task,
                    r.method,
                    r.budget,
                    r.error.as_deref().unwrap_or("")
                );
            }
        }
    }
    let mut pubs = String::new();
    for task in &g.tasks {
        for alg in ["NPE", "NRE"] {
            for (b, m, sd, k) in published::published(task, alg) {
                let _ = writeln!(
                    pubs,
                    "| {task} | sbi {alg} (published) | {b} | {m:.3} ± {sd:.3} ({k}) |"
                );
            }
        }
    }
    if !pubs.is_empty() {
        let _ = writeln!(s, "\nPublished reference values ({}):\n\n| task | method | budget | C2ST |\n|---|---|---:|---:|\n{pubs}", published::SOURCE);
    }
    s
}

/// Writes results.csv, table.md and (with `cfg.plots`) the figures.
pub fn write_all(cfg: &GridConfig, rows: &[Row], log: &mut dyn FnMut(&str)) -> BenchResult<()> {
    crate::io::atomic_write_bytes(cfg.out.join("results.csv"), csv(rows).as_bytes())?;
    crate::io::atomic_write_bytes(cfg.out.join("table.md"), table(cfg, rows).as_bytes())?;
    log(&format!(
        "wrote {} and {}",
        cfg.out.join("results.csv").display(),
        cfg.out.join("table.md").display()
    ));
    if cfg.plots {
        for p in super::plots::write_figures(cfg, rows)? {
            log(&format!("wrote {}", p.display()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sd() {
        assert_eq!(mean_sd(&[1.0]), (1.0, 0.0));
        let (m, s) = mean_sd(&[1.0, 2.0, 3.0]);
        assert!((m - 2.0).abs() < 1e-12 && (s - 1.0).abs() < 1e-12);
        assert!(mean_sd(&[]).0.is_nan());
        assert_eq!(budget_name(10_000), "10^4");
        assert_eq!(budget_name(2000), "2000");
    }

    fn row(task: &str, method: &str, c2st: f64) -> Row {
        serde_json::from_value(serde_json::json!({
            "task": task, "method": method, "contrastive": 1, "budget": 10000, "seed": 0,
            "observation": 1, "c2st": c2st, "simulate_s": 0.0, "train_s": 1.0, "epochs": 1,
            "sample_s": 0.0, "c2st_s": 0.0, "samples": 10000, "acceptance_rate": null,
            "log_z": null, "proposals": null, "sampling_finished": true, "error": null,
            "finished_at": 0.0
        }))
        .unwrap()
    }

    #[test]
    fn cells_flag_unscored_rows_and_rows_scored_on_fewer_samples() {
        let full = row("sir", "hybrid", 0.6);
        let mut partial = row("sir", "hybrid", 0.7);
        partial.sampling_finished = false;
        partial.samples = 534;
        let mut unscored = row("sir", "hybrid", 0.0);
        unscored.c2st = None;
        unscored.sampling_finished = false;
        assert_eq!(flags(&[&full]), "");
        assert_eq!(
            flags(&[&full, &partial, &unscored, &unscored]),
            " [2 not scored] [1 on fewer samples]"
        );
    }

    #[test]
    fn the_comparison_with_the_paper_counts_tasks_at_or_below_its_npe() {
        // Paper NPE at 10^4: two_moons 0.606, slcp 0.901, gaussian_linear 0.552.
        let rows = [
            row("two_moons", "hybrid", 0.55),
            row("slcp", "hybrid", 0.95),
            row("gaussian_linear", "hybrid", 0.552),
        ];
        let text = against_paper(&Groups::new(&rows));
        let line = text.lines().find(|l| l.starts_with("| hybrid |")).unwrap();
        assert!(line.contains("| 2 of 3 |"), "{line}");
        assert!(line.ends_with("| slcp 0.950 vs 0.901 |"), "{line}");
        assert!(line.contains("two_moons 0.550 vs 0.606"), "{line}");
    }
}
