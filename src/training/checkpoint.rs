//! Training checkpoints: everything needed to continue a run exactly where it stopped.
//!
//! A checkpoint is the directory `RUN/checkpoint/`, replaced atomically as a whole
//! ([`atomic_write_dir`]), holding
//!
//! - `state.json`: the epoch reached, the early-stopping record (best validation loss as exact
//!   bits, its epoch, epochs since), the metrics history, the training settings, the batch size
//!   and its micro-batch split, fingerprints of the data and of the z-score statistics, and the
//!   caller's own record (`cli`: the command-line arguments of `gkl-gpu train`);
//! - `tensors.safetensors`: the parameters, the best parameters, Adam's m and v, and Adam's
//!   4-word state (step counter, clip scale, gradient norm; stored as the f32 bit patterns of
//!   the u32 words).
//!
//! The shuffling RNG has no state to store: each epoch's data order (the rotation and visiting
//! order of the training blocks, and the row order within each block) is drawn from a generator
//! seeded by (seed, epoch). The train/validation split and the z-scores are re-derived from the
//! seed and the data, and checked against the stored fingerprints; the data position is always
//! an epoch boundary.

use super::error::{TrainError, TrainResult};
use super::npe::{EpochMetrics, NpeSettings};
use crate::io::{atomic_write_dir, read_safetensors, safetensors_bytes, IoError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const CHECKPOINT_DIR: &str = "checkpoint";
pub const CHECKPOINT_VERSION: u32 = 1;
/// Largest `state.json` read back (the history of a long run is a few MB).
const MAX_STATE_BYTES: u64 = 256 << 20;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointState {
    pub format_version: u32,
    pub gkl_gpu_version: String,
    /// Epochs completed.
    pub epoch: usize,
    /// The run ended (early stop or `max_epochs`) at `epoch`.
    pub stopped_early: bool,
    /// Best validation loss so far, as `f64::to_bits` (exact; +∞ before the first).
    pub best_val_bits: u64,
    pub best_epoch: usize,
    pub since_best: usize,
    /// The learning rate for the next epoch (plateau schedule), as `f32::to_bits`.
    #[serde(default)]
    pub lr_bits: Option<u32>,
    /// Training seconds so far (the metrics' clock continues from here).
    pub seconds: f64,
    pub adam_step: u32,
    pub history: Vec<EpochMetrics>,
    /// (train, validation) loss of each epoch as `f64::to_bits`: JSON numbers may not read back
    /// to the same bits, and a resumed run returns the same history as an uninterrupted one.
    #[serde(default)]
    pub history_bits: Vec<[u64; 2]>,
    pub settings: NpeSettings,
    /// The batch size trained with.
    pub batch_size: usize,
    /// Micro-batches per optimizer step (gradient accumulation when the batch exceeds the
    /// adapter's binding limit); a resumed run with another split continues the same
    /// optimization, not bit for bit.
    #[serde(default = "one")]
    pub micro_batches: usize,
    pub n_train: usize,
    pub n_val: usize,
    pub arena_len: usize,
    /// Hex fingerprints of the data (every row read) and of the z-score statistics.
    pub data_fingerprint: String,
    pub preprocess_fingerprint: String,
    /// Whatever the caller stores (the CLI: its arguments).
    #[serde(default)]
    pub cli: Option<serde_json::Value>,
}

fn one() -> usize {
    1
}

/// A checkpoint in memory.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub state: CheckpointState,
    pub params: Vec<f32>,
    pub best: Vec<f32>,
    pub adam_m: Vec<f32>,
    pub adam_v: Vec<f32>,
    pub adam_state: [u32; 4],
}

fn bad(path: &Path, problem: impl Into<String>) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

impl Checkpoint {
    /// The checkpoint directory of a run directory.
    pub fn dir_of(run: &Path) -> PathBuf {
        run.join(CHECKPOINT_DIR)
    }

    /// Writes `dir` (normally `RUN/checkpoint`) atomically: readers see the old checkpoint or
    /// the complete new one.
    pub fn save(&self, dir: &Path) -> TrainResult<()> {
        let json =
            serde_json::to_string_pretty(&self.state).map_err(|e| bad(dir, e.to_string()))?;
        let n = self.params.len();
        let st: Vec<f32> = self.adam_state.iter().map(|w| f32::from_bits(*w)).collect();
        let shape = [n];
        let tensors: Vec<(&str, &[usize], &[f32])> = vec![
            ("params", &shape, &self.params),
            ("best", &shape, &self.best),
            ("adam_m", &shape, &self.adam_m),
            ("adam_v", &shape, &self.adam_v),
            ("adam_state", &[4], &st),
        ];
        let meta = BTreeMap::from([("format_version".to_string(), CHECKPOINT_VERSION.to_string())]);
        let bytes = safetensors_bytes(&tensors, &meta, dir.join("tensors.safetensors"))?;
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| IoError::io(parent, "create directory", e))?;
        }
        atomic_write_dir(dir, |tmp| {
            std::fs::write(tmp.join("tensors.safetensors"), &bytes)
                .map_err(|e| IoError::io(tmp.join("tensors.safetensors"), "write", e))?;
            std::fs::write(tmp.join("state.json"), json.as_bytes())
                .map_err(|e| IoError::io(tmp.join("state.json"), "write", e))?;
            Ok(())
        })?;
        Ok(())
    }

    /// Reads a checkpoint directory, checking every size against `state.json`.
    pub fn load(dir: &Path) -> TrainResult<Self> {
        let sp = dir.join("state.json");
        let meta =
            std::fs::metadata(&sp).map_err(|e| bad(dir, format!("cannot read state.json: {e}")))?;
        if meta.len() > MAX_STATE_BYTES {
            return Err(bad(
                dir,
                format!(
                    "state.json has {} bytes, more than the {MAX_STATE_BYTES} allowed",
                    meta.len()
                ),
            ));
        }
        let text = std::fs::read_to_string(&sp)
            .map_err(|e| bad(dir, format!("cannot read state.json: {e}")))?;
        let mut state: CheckpointState =
            serde_json::from_str(&text).map_err(|e| bad(dir, format!("state.json: {e}")))?;
        if state.history_bits.len() == state.history.len() {
            for (m, [t, v]) in state.history.iter_mut().zip(&state.history_bits) {
                m.train_loss = f64::from_bits(*t);
                m.val_loss = f64::from_bits(*v);
            }
        }
        if state.format_version != CHECKPOINT_VERSION {
            return Err(bad(
                dir,
                format!(
                    "checkpoint format {} is not supported (this build reads {CHECKPOINT_VERSION})",
                    state.format_version
                ),
            ));
        }
        let w = read_safetensors(dir.join("tensors.safetensors"))?;
        let n = state.arena_len;
        let t = |name: &str| -> TrainResult<Vec<f32>> { Ok(w.tensor(name, &[n])?.to_vec()) };
        let st = w.tensor("adam_state", &[4])?;
        let adam_state = [
            st[0].to_bits(),
            st[1].to_bits(),
            st[2].to_bits(),
            st[3].to_bits(),
        ];
        if state.history.len() != state.epoch || state.best_epoch > state.epoch {
            return Err(bad(
                dir,
                format!(
                    "state.json is inconsistent: epoch {}, {} history entries, best epoch {}",
                    state.epoch,
                    state.history.len(),
                    state.best_epoch
                ),
            ));
        }
        Ok(Checkpoint {
            params: t("params")?,
            best: t("best")?,
            adam_m: t("adam_m")?,
            adam_v: t("adam_v")?,
            adam_state,
            state,
        })
    }
}

/// Tidies a run directory after a crash: an interrupted atomic write leaves a hidden
/// `.NAME.tmp-*` file, or `checkpoint.tmp-*` / `checkpoint.old-*` directories; if the kill came
/// between moving the old checkpoint aside and moving the new one in, the old one is put back.
/// Returns the names removed or restored.
pub fn recover_run_dir(run: &Path) -> TrainResult<Vec<String>> {
    let mut done = vec![];
    let entries = match std::fs::read_dir(run) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(done),
        Err(e) => return Err(IoError::io(run, "list", e).into()),
    };
    let mut names: Vec<(String, bool)> = vec![];
    for e in entries {
        let e = e.map_err(|e| IoError::io(run, "list", e))?;
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        names.push((e.file_name().to_string_lossy().into_owned(), is_dir));
    }
    names.sort();
    let ck = run.join(CHECKPOINT_DIR);
    let old_prefix = format!("{CHECKPOINT_DIR}.old-");
    let tmp_prefix = format!("{CHECKPOINT_DIR}.tmp-");
    if !ck.exists() {
        // The old checkpoint is complete (it was moved aside whole); the new one may not be.
        if let Some((old, _)) = names.iter().find(|(n, d)| *d && n.starts_with(&old_prefix)) {
            std::fs::rename(run.join(old), &ck)
                .map_err(|e| IoError::io(&ck, "restore the previous checkpoint", e))?;
            done.push(format!("{old} → {CHECKPOINT_DIR}"));
        }
    }
    for (n, is_dir) in names {
        let p = run.join(&n);
        if !p.exists() {
            continue;
        }
        if is_dir && (n.starts_with(&old_prefix) || n.starts_with(&tmp_prefix)) {
            std::fs::remove_dir_all(&p).map_err(|e| IoError::io(&p, "remove", e))?;
            done.push(n);
        } else if !is_dir && n.starts_with('.') && n.contains(".tmp-") {
            std::fs::remove_file(&p).map_err(|e| IoError::io(&p, "remove", e))?;
            done.push(n);
        }
    }
    Ok(done)
}

/// A 64-bit FNV-1a style fingerprint over words.
#[derive(Clone, Copy, Debug)]
pub struct Fingerprint(u64);

impl Default for Fingerprint {
    fn default() -> Self {
        Fingerprint(0xcbf2_9ce4_8422_2325)
    }
}

impl Fingerprint {
    pub fn word(&mut self, w: u64) {
        self.0 = (self.0 ^ w).wrapping_mul(0x0000_0100_0000_01b3);
        self.0 ^= self.0 >> 29;
    }
    pub fn f64s(&mut self, v: &[f64]) {
        for x in v {
            self.word(x.to_bits());
        }
    }
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}
