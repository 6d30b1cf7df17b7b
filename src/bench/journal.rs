//! The benchmark's journal: one JSON line per finished (cell, observation), appended with a
//! single `write` and an fsync, so a run killed at any moment leaves whole lines plus at most one
//! torn last line, which the next run cuts off before it appends. `results.csv` is regenerated
//! from the journal (written to a temporary file and renamed into place).

use crate::evaluation::c2st::C2stDevice;
use crate::training::BaseGradient;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// One finished (cell, observation): ours (method npe, ratio, hybrid) or the peer's (sbi-npe,
/// sbi-nre).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Row {
    pub task: String,
    pub method: String,
    /// Contrastive θ' per x (K) of ratio and hybrid; 1 for the others.
    pub contrastive: usize,
    /// Hybrid: whether the partition term trained the base flow (`--base-gradient`); detached
    /// for every other method (and for rows of journals written before the option existed).
    #[serde(default)]
    pub base_gradient: BaseGradient,
    pub budget: usize,
    pub seed: u64,
    pub observation: usize,
    /// C2ST against the reference posterior; `None` when there was nothing to score (see `error`).
    pub c2st: Option<f64>,
    /// Hybrid with `--hybrid-base-c2st`: C2ST of the base flow's own samples.
    #[serde(default)]
    pub base_c2st: Option<f64>,
    pub simulate_s: f64,
    pub train_s: f64,
    pub epochs: usize,
    pub sample_s: f64,
    pub c2st_s: f64,
    /// Where the C2ST classifiers trained (`--c2st-device`); rows of journals written before the
    /// option existed were all scored on the GPU.
    #[serde(default)]
    pub c2st_device: C2stDevice,
    /// The wgpu adapter that trained and sampled this row (for peer rows: where their Python ran);
    /// `None` in journals written before it was recorded.
    #[serde(default)]
    pub adapter: Option<String>,
    /// Samples scored (fewer than asked when a rejection sampler hit its time budget).
    pub samples: usize,
    /// Ratio and hybrid: the rejection sampler's acceptance rate and ln Z(x_o).
    pub acceptance_rate: Option<f64>,
    pub log_z: Option<f64>,
    pub proposals: Option<u64>,
    /// Whether sampling produced every sample asked for.
    pub sampling_finished: bool,
    /// Why this row has no C2ST (training or sampling failed; recorded so it is not retried).
    pub error: Option<String>,
    /// Unix time (s) when the row was written.
    pub finished_at: f64,
}

impl Row {
    /// Identity of a row: at most one per key in a journal.
    pub fn key(&self) -> String {
        row_key(
            &self.task,
            &self.method,
            self.contrastive,
            self.base_gradient,
            self.budget,
            self.seed,
            self.observation,
        )
    }
}

/// A detached hybrid (and every other method) keeps the key of journals from before
/// `--base-gradient`; a reparameterized hybrid's key says so.
pub fn row_key(
    task: &str,
    method: &str,
    k: usize,
    base_gradient: BaseGradient,
    budget: usize,
    seed: u64,
    obs: usize,
) -> String {
    let bg = match base_gradient {
        BaseGradient::Detached => "",
        BaseGradient::Reparameterized => "|reparam",
    };
    format!("{task}|{method}|K{k}{bg}|n{budget}|s{seed}|o{obs}")
}

/// Errors of the journal: where, and what.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The `std::io::Error` is folded into the message, not exposed as a `source()` (see
    /// [`BenchError::File`](super::grid::BenchError)).
    #[error("{path}: {what}: {err}")]
    Io {
        path: PathBuf,
        what: &'static str,
        err: std::io::Error,
    },
    #[error("{path}: line {line}: {problem}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        problem: String,
    },
}

/// An open journal: the rows read at start plus those appended since.
pub struct Journal {
    path: PathBuf,
    file: File,
    pub rows: Vec<Row>,
}

impl Journal {
    /// Opens (or creates) the journal at `path`. A torn last line (no trailing newline) is cut
    /// off; any other unreadable line is an error (the file is not ours, or was edited).
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let io = |what: &'static str| {
            move |err| JournalError::Io {
                path: path.to_path_buf(),
                what,
                err,
            }
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io("open"))?;
        let mut text = Vec::new();
        file.read_to_end(&mut text).map_err(io("read"))?;
        let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if whole < text.len() {
            file.set_len(whole as u64)
                .map_err(io("cut a torn last line"))?;
            file.sync_all().map_err(io("fsync"))?;
        }
        let mut rows = Vec::new();
        for (i, line) in text[..whole].split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let row: Row = serde_json::from_slice(line).map_err(|e| JournalError::Corrupt {
                path: path.to_path_buf(),
                line: i + 1,
                problem: e.to_string(),
            })?;
            rows.push(row);
        }
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            rows,
        })
    }

    pub fn contains(&self, key: &str) -> bool {
        self.rows.iter().any(|r| r.key() == key)
    }

    /// Appends `row` as one line (one `write` call, then fsync).
    pub fn append(&mut self, row: Row) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(&row).map_err(|e| JournalError::Corrupt {
            path: self.path.clone(),
            line: self.rows.len() + 1,
            problem: e.to_string(),
        })?;
        line.push(b'\n');
        let path = self.path.clone();
        let io = move |what: &'static str| {
            let path = path.clone();
            move |err| JournalError::Io { path, what, err }
        };
        self.file.write_all(&line).map_err(io("append"))?;
        self.file.sync_data().map_err(io("fsync"))?;
        self.rows.push(row);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(obs: usize) -> Row {
        Row {
            task: "two_moons".into(),
            method: "npe".into(),
            contrastive: 1,
            base_gradient: BaseGradient::Detached,
            budget: 1000,
            seed: 0,
            observation: obs,
            c2st: Some(0.6),
            base_c2st: None,
            simulate_s: 0.1,
            train_s: 2.0,
            epochs: 10,
            sample_s: 0.5,
            c2st_s: 1.0,
            c2st_device: C2stDevice::Gpu,
            adapter: Some("llvmpipe (vulkan, Cpu)".into()),
            samples: 500,
            acceptance_rate: None,
            log_z: None,
            proposals: None,
            sampling_finished: true,
            error: None,
            finished_at: 1.0,
        }
    }

    #[test]
    fn a_reparameterized_hybrid_has_its_own_key_and_old_rows_read_as_detached() {
        let mut r = row(1);
        r.method = "hybrid".into();
        assert_eq!(
            r.key(),
            "two_moons|hybrid|K1|n1000|s0|o1",
            "the key of journals before the option"
        );
        let old = serde_json::to_value(&r).unwrap();
        let mut v = old.clone();
        v.as_object_mut().unwrap().remove("base_gradient");
        let back: Row = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
        r.base_gradient = BaseGradient::Reparameterized;
        assert_eq!(r.key(), "two_moons|hybrid|K1|reparam|n1000|s0|o1");
        assert_eq!(
            serde_json::to_value(&r).unwrap()["base_gradient"],
            "reparameterized"
        );
        let csv = crate::bench::report::csv(&[row(1), r]);
        let lines: Vec<&str> = csv.lines().collect();
        let col = lines[0]
            .split(',')
            .position(|c| c == "base_gradient")
            .unwrap();
        let field = |l: &str| l.split(',').nth(col).unwrap().to_string();
        assert_eq!(field(lines[1]), "detached", "{csv}");
        assert_eq!(field(lines[2]), "reparameterized", "{csv}");
    }

    #[test]
    fn rows_record_the_c2st_device_and_old_rows_read_as_gpu() {
        let mut r = row(1);
        r.c2st_device = C2stDevice::Cpu;
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["c2st_device"], "cpu");
        assert_eq!(serde_json::from_value::<Row>(v.clone()).unwrap(), r);
        let mut old = v;
        old.as_object_mut().unwrap().remove("c2st_device");
        let back: Row = serde_json::from_value(old).unwrap();
        assert_eq!(back.c2st_device, C2stDevice::Gpu);
        assert_eq!(
            back.key(),
            r.key(),
            "the device is not part of a row's identity"
        );
    }

    #[test]
    fn rows_record_the_adapter_and_old_rows_read_as_unknown() {
        let r = row(1);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["adapter"], "llvmpipe (vulkan, Cpu)");
        let mut old = v;
        old.as_object_mut().unwrap().remove("adapter");
        let back: Row = serde_json::from_value(old).unwrap();
        assert_eq!(back.adapter, None);
        assert_eq!(
            back.key(),
            r.key(),
            "the adapter is not part of a row's identity"
        );
        let csv = crate::bench::report::csv(&[r, back]);
        let lines: Vec<&str> = csv.lines().collect();
        assert!(lines[0].ends_with(",c2st_device,adapter"), "{}", lines[0]);
        assert!(
            lines[1].ends_with(",gpu,\"llvmpipe (vulkan, Cpu)\""),
            "{}",
            lines[1]
        );
        assert!(lines[2].ends_with(",gpu,"), "{}", lines[2]);
    }

    #[test]
    fn torn_last_line_is_cut_and_rows_survive() {
        let dir = std::env::temp_dir().join(format!("gkl-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("journal.jsonl");
        let _ = std::fs::remove_file(&p);
        let mut j = Journal::open(&p).unwrap();
        j.append(row(1)).unwrap();
        j.append(row(2)).unwrap();
        drop(j);
        // A kill in the middle of the third append.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"task\":\"two_mo").unwrap();
        drop(f);
        let mut j = Journal::open(&p).unwrap();
        assert_eq!(j.rows, vec![row(1), row(2)]);
        assert!(j.contains(&row(2).key()) && !j.contains(&row(3).key()));
        j.append(row(3)).unwrap();
        drop(j);
        let j = Journal::open(&p).unwrap();
        assert_eq!(j.rows, vec![row(1), row(2), row(3)]);
        // A line that is not a row is an error, not silently dropped.
        std::fs::write(&p, "{\"task\": 1}\n").unwrap();
        assert!(matches!(
            Journal::open(&p),
            Err(JournalError::Corrupt { line: 1, .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
