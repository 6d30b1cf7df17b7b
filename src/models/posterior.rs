//! A trained posterior (any of the three generalized-KL surrogates) as a directory: `config.json` (everything needed to rebuild the networks,
//! with a format version) and `model.safetensors` (the parameter arena and the z-score
//! statistics). Each file is written atomically, weights first, so a crash leaves either the old
//! model, or new weights beside an old config that `load` rejects as inconsistent — never a
//! half-written file. The directory may hold other files (metrics.jsonl) that saving keeps.

use crate::error::{Error, Result};
use crate::io::{atomic_write_bytes, read_safetensors, write_safetensors};
use crate::models::flow::FlowConfig;
use crate::models::mlp::MlpConfig;
use crate::training::npe::NpeSettings;
use crate::training::preprocess::{Preprocess, Standardize};
use crate::training::Method;
use gkl_tasks::Prior;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub const FORMAT_VERSION: u32 = 1;

/// A trained surrogate: flow (with its optional embedding net) and/or ratio network weights, plus
/// the data transform. NPE has a flow, the ratio model a ratio network, the hybrid both.
#[derive(Clone, Debug)]
pub struct NpeModel {
    pub format_version: u32,
    pub method: Method,
    pub task: Option<String>,
    pub dim_theta: usize,
    pub dim_x: usize,
    pub flow: Option<FlowConfig>,
    pub embedding: Option<MlpConfig>,
    /// The ratio network f(θ, x) on [θ, x] in network space (one output).
    pub ratio: Option<MlpConfig>,
    pub arena_align: usize,
    pub embedding_offset: Option<usize>,
    pub flow_offset: Option<usize>,
    pub ratio_offset: Option<usize>,
    pub preprocess: Preprocess,
    /// The parameter arena: [embedding | flow | ratio] at the offsets above.
    pub params: Vec<f32>,
    pub settings: NpeSettings,
}

/// What `config.json` holds (the arrays live in the safetensors file).
#[derive(Serialize, Deserialize)]
struct ConfigFile {
    format_version: u32,
    method: String,
    gkl_gpu_version: String,
    task: Option<String>,
    dim_theta: usize,
    dim_x: usize,
    prior: Prior,
    unconstrained: bool,
    flow: Option<FlowConfig>,
    embedding: Option<MlpConfig>,
    #[serde(default)]
    ratio: Option<MlpConfig>,
    arena_align: usize,
    arena_len: usize,
    embedding_offset: Option<usize>,
    flow_offset: Option<usize>,
    #[serde(default)]
    ratio_offset: Option<usize>,
    training: NpeSettings,
}

const TENSORS: [&str; 4] = ["theta_mean", "theta_std", "x_mean", "x_std"];

impl NpeModel {
    /// The hybrid's base flow on its own: the same weights read as an NPE model.
    pub fn base_flow(&self) -> NpeModel {
        NpeModel {
            method: Method::Npe,
            ratio: None,
            ratio_offset: None,
            ..self.clone()
        }
    }

    /// Writes `dir/model.safetensors`, then `dir/config.json`, each atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let cfg = ConfigFile {
            format_version: self.format_version,
            method: self.method.name().to_string(),
            gkl_gpu_version: env!("CARGO_PKG_VERSION").to_string(),
            task: self.task.clone(),
            dim_theta: self.dim_theta,
            dim_x: self.dim_x,
            prior: self.preprocess.prior.clone(),
            unconstrained: self.preprocess.unconstrained,
            flow: self.flow.clone(),
            embedding: self.embedding.clone(),
            ratio: self.ratio.clone(),
            arena_align: self.arena_align,
            arena_len: self.params.len(),
            embedding_offset: self.embedding_offset,
            flow_offset: self.flow_offset,
            ratio_offset: self.ratio_offset,
            training: self.settings.clone(),
        };
        let json = serde_json::to_string_pretty(&cfg).map_err(|e| Error::Model {
            path: dir.display().to_string(),
            problem: e.to_string(),
        })?;
        let p = &self.preprocess;
        let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
        let stats = [f(&p.theta.mean), f(&p.theta.std), f(&p.x.mean), f(&p.x.std)];
        let mut meta = BTreeMap::new();
        meta.insert("format_version".to_string(), FORMAT_VERSION.to_string());
        std::fs::create_dir_all(dir).map_err(|e| Error::Model {
            path: dir.display().to_string(),
            problem: format!("cannot create directory: {e}"),
        })?;
        let mut entries: Vec<(&str, Vec<usize>, &[f32])> =
            vec![("params", vec![self.params.len()], &self.params)];
        for (name, s) in TENSORS.iter().zip(&stats) {
            entries.push((name, vec![s.len()], s));
        }
        let refs: Vec<(&str, &[usize], &[f32])> = entries
            .iter()
            .map(|(n, s, d)| (*n, s.as_slice(), *d))
            .collect();
        write_safetensors(dir.join("model.safetensors"), &refs, &meta)?;
        atomic_write_bytes(dir.join("config.json"), json.as_bytes())?;
        Ok(())
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let bad = |problem: String| Error::Model {
            path: dir.display().to_string(),
            problem,
        };
        let cfg_path = dir.join("config.json");
        let text = read_capped(&cfg_path).map_err(bad)?;
        let cfg: ConfigFile =
            serde_json::from_str(&text).map_err(|e| bad(format!("config.json: {e}")))?;
        if cfg.format_version != FORMAT_VERSION {
            return Err(bad(format!(
                "model format version {} is not supported (this build reads {FORMAT_VERSION})",
                cfg.format_version
            )));
        }
        let method = Method::parse(&cfg.method).ok_or_else(|| {
            bad(format!(
                "method '{}' is not supported by this build",
                cfg.method
            ))
        })?;
        cfg.prior.validate()?;
        // A corrupted or hostile config.json must not make later steps overflow or allocate
        // without bound: check every size the networks are built from.
        check_config_bounds(&cfg).map_err(bad)?;
        if cfg.prior.dim() != cfg.dim_theta {
            return Err(bad(format!(
                "prior and dim_theta disagree ({}, {})",
                cfg.prior.dim(),
                cfg.dim_theta
            )));
        }
        if method.has_flow() != cfg.flow.is_some() || method.has_ratio() != cfg.ratio.is_some() {
            return Err(bad(format!(
                "a '{}' model needs {} flow and {} ratio network",
                cfg.method,
                if method.has_flow() { "a" } else { "no" },
                if method.has_ratio() { "a" } else { "no" }
            )));
        }
        if let Some(f) = &cfg.flow {
            if f.dim != cfg.dim_theta {
                return Err(bad(format!(
                    "flow and dim_theta disagree ({}, {})",
                    f.dim, cfg.dim_theta
                )));
            }
            f.validate().map_err(|e| bad(format!("flow: {e}")))?;
        }
        if let Some(r) = &cfg.ratio {
            if r.in_dim != cfg.dim_theta + cfg.dim_x
                || r.out_dim != 1
                || r.hidden == 0
                || r.hidden > 4096
                || r.blocks > 64
            {
                return Err(bad(format!(
                    "ratio network {}→{} (hidden {}, {} blocks) does not fit θ of {} and x of {}",
                    r.in_dim, r.out_dim, r.hidden, r.blocks, cfg.dim_theta, cfg.dim_x
                )));
            }
        }
        if !cfg.arena_align.is_power_of_two() || cfg.arena_align > 1 << 16 {
            return Err(bad(format!(
                "arena_align {} must be a power of two",
                cfg.arena_align
            )));
        }
        let w = read_safetensors(dir.join("model.safetensors"))?;
        let params = w.tensor("params", &[cfg.arena_len])?.to_vec();
        let dims = [cfg.dim_theta, cfg.dim_theta, cfg.dim_x, cfg.dim_x];
        let mut stats = vec![];
        for (name, n) in TENSORS.iter().zip(dims) {
            stats.push(
                w.tensor(name, &[n])?
                    .iter()
                    .map(|&v| v as f64)
                    .collect::<Vec<f64>>(),
            );
        }
        if stats[1]
            .iter()
            .chain(&stats[3])
            .any(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err(bad(
                "z-score standard deviations must be positive and finite".into(),
            ));
        }
        let preprocess = Preprocess {
            prior: cfg.prior,
            unconstrained: cfg.unconstrained,
            theta: Standardize {
                mean: stats[0].clone(),
                std: stats[1].clone(),
            },
            x: Standardize {
                mean: stats[2].clone(),
                std: stats[3].clone(),
            },
        };
        let blocks = [
            (
                "flow",
                cfg.flow.as_ref().map(|f| f.arena_len(cfg.arena_align)),
                cfg.flow_offset,
            ),
            (
                "ratio network",
                cfg.ratio
                    .as_ref()
                    .map(|r| crate::models::mlp::Mlp::model_len(r, cfg.arena_align)),
                cfg.ratio_offset,
            ),
            (
                "embedding network",
                cfg.embedding
                    .as_ref()
                    .map(|e| crate::models::mlp::Mlp::model_len(e, cfg.arena_align)),
                cfg.embedding_offset,
            ),
        ];
        for (what, len, off) in blocks {
            if let Some(len) = len {
                let off = off.ok_or_else(|| bad(format!("no offset for the {what}")))?;
                if off.checked_add(len).is_none_or(|end| end > params.len())
                    || off % cfg.arena_align != 0
                {
                    return Err(bad(format!(
                        "parameter arena does not hold the {what} at offset {off}"
                    )));
                }
            }
        }
        Ok(NpeModel {
            format_version: cfg.format_version,
            method,
            task: cfg.task,
            dim_theta: cfg.dim_theta,
            dim_x: cfg.dim_x,
            flow: cfg.flow,
            embedding: cfg.embedding,
            ratio: cfg.ratio,
            arena_align: cfg.arena_align,
            embedding_offset: cfg.embedding_offset,
            flow_offset: cfg.flow_offset,
            ratio_offset: cfg.ratio_offset,
            preprocess,
            params,
            settings: cfg.training,
        })
    }
}

/// Largest `config.json` read (real ones are a few KiB).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

fn read_capped(path: &Path) -> std::result::Result<String, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read config.json: {e}"))?;
    let mut bytes = Vec::new();
    f.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read config.json: {e}"))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!(
            "config.json is larger than {MAX_CONFIG_BYTES} bytes"
        ));
    }
    String::from_utf8(bytes).map_err(|e| format!("config.json is not UTF-8: {e}"))
}

/// Bounds on a loaded config that keep every size derived from it small and overflow-free.
fn check_config_bounds(cfg: &ConfigFile) -> std::result::Result<(), String> {
    let within = |what: &str, v: usize, lo: usize, hi: usize| {
        if (lo..=hi).contains(&v) {
            Ok(())
        } else {
            Err(format!("config.json: {what} = {v} is outside {lo}..={hi}"))
        }
    };
    within("dim_theta", cfg.dim_theta, 1, 4096)?;
    within("dim_x", cfg.dim_x, 1, 1 << 20)?;
    within("arena_align", cfg.arena_align, 1, 1 << 16)?;
    within("arena_len", cfg.arena_len, 1, 1 << 31)?;
    if let Some(f) = &cfg.flow {
        within("flow.dim", f.dim, 1, 4096)?;
        within("flow.transforms", f.transforms, 1, 256)?;
        within("flow.hidden", f.hidden, 1, 1 << 14)?;
        within("flow.hidden_layers", f.hidden_layers, 1, 64)?;
        within("flow.bins", f.bins, 1, 1024)?;
        if !(f.tail_bound.is_finite() && f.tail_bound > 0.0) {
            return Err(format!(
                "config.json: flow.tail_bound = {} must be finite and positive",
                f.tail_bound
            ));
        }
    }
    if let Some(r) = &cfg.ratio {
        within("ratio.hidden", r.hidden, 1, 1 << 14)?;
        within("ratio.blocks", r.blocks, 0, 64)?;
        let off = cfg
            .ratio_offset
            .ok_or("config.json: ratio network without ratio_offset")?;
        let len = crate::models::mlp::Mlp::model_len(r, cfg.arena_align);
        if off.checked_add(len).is_none_or(|end| end > cfg.arena_len) {
            return Err(
                "config.json: the ratio network does not fit in the parameter arena".into(),
            );
        }
    }
    let context = match &cfg.embedding {
        Some(e) => {
            if e.in_dim != cfg.dim_x {
                return Err(format!(
                    "config.json: embedding.in_dim = {} but dim_x = {}",
                    e.in_dim, cfg.dim_x
                ));
            }
            within("embedding.out_dim", e.out_dim, 1, 1 << 14)?;
            within("embedding.hidden", e.hidden, 1, 1 << 14)?;
            within("embedding.blocks", e.blocks, 0, 64)?;
            let off = cfg
                .embedding_offset
                .ok_or("config.json: embedding without embedding_offset")?;
            let len = crate::models::mlp::Mlp::model_len(e, cfg.arena_align);
            if off.checked_add(len).is_none_or(|end| end > cfg.arena_len) {
                return Err(
                    "config.json: the embedding does not fit in the parameter arena".into(),
                );
            }
            e.out_dim
        }
        None => {
            if cfg.embedding_offset.is_some() {
                return Err("config.json: embedding_offset without an embedding".into());
            }
            cfg.dim_x
        }
    };
    if let Some(f) = &cfg.flow {
        if f.context_dim != context {
            return Err(format!(
                "config.json: flow.context_dim = {} but the flow's context has {context} values",
                f.context_dim
            ));
        }
        let off = cfg
            .flow_offset
            .ok_or("config.json: flow without flow_offset")?;
        let flow_len = f.arena_len(cfg.arena_align);
        if off
            .checked_add(flow_len)
            .is_none_or(|end| end > cfg.arena_len)
        {
            return Err("config.json: the flow does not fit in the parameter arena".into());
        }
    }
    Ok(())
}
