#![allow(dead_code)]
//! Helpers shared by the integration tests.

/// Column j of an n×d row-major matrix.
pub fn col(x: &[f64], d: usize, j: usize) -> Vec<f64> {
    x.iter().skip(j).step_by(d).cloned().collect()
}

pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

pub fn var(v: &[f64]) -> f64 {
    let m = mean(v);
    v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64
}

pub fn std(v: &[f64]) -> f64 {
    var(v).sqrt()
}

pub fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pos = q * (s.len() - 1) as f64;
    let i = pos.floor() as usize;
    let f = pos - i as f64;
    if i + 1 < s.len() {
        s[i] * (1.0 - f) + s[i + 1] * f
    } else {
        s[i]
    }
}

/// Path of an sbibm reference file if /work/shared is present (tests skip otherwise).
pub fn sbibm_reference_path(task: &str, k: usize) -> Option<std::path::PathBuf> {
    let p = std::path::PathBuf::from(format!(
        "/work/shared/sbibm/{task}/num_observation_{k}/reference_posterior_samples.csv.bz2"
    ));
    p.exists().then_some(p)
}

/// Reads an sbibm reference_posterior_samples.csv.bz2 via the `bzip2` tool (None if unavailable).
pub fn read_sbibm_reference(task: &str, k: usize) -> Option<(Vec<f64>, usize)> {
    let p = sbibm_reference_path(task, k)?;
    let out = std::process::Command::new("bzip2")
        .arg("-dc")
        .arg(&p)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?;
    let mut lines = s.lines();
    let d = lines.next()?.split(',').count();
    let mut v = Vec::new();
    for l in lines {
        if l.trim().is_empty() {
            continue;
        }
        for t in l.split(',') {
            v.push(t.trim().parse::<f64>().ok()?);
        }
    }
    Some((v, d))
}
