//! slcp (5 → 8) and slcp_distractors (5 → 100).
//!
//! Prior U(−3, 3)⁵; m = (θ1, θ2), s1 = θ3², s2 = θ4², ρ = tanh θ5,
//! S = [[s1², ρ s1 s2], [ρ s1 s2, s2²]] + 1e-6 I; x = four i.i.d. draws from N(m, S), flattened.
//! slcp_distractors appends 92 distractors from a uniform mixture of 20 multivariate
//! Student-t (df 2) components and permutes the columns: `x = concat(data, noise)[perm]`.
//! Its `log_likelihood` is None (see there); `log_likelihood_unnormalized` is the slcp
//! likelihood of the 8 data columns, which is all the posterior depends on.
//!
//! Reference posterior: tempered SMC on the exact likelihood (8 data columns). The likelihood
//! depends on θ3², θ4² only and the prior is symmetric, so the four sign modes have equal mass
//! exactly: SMC runs on θ3, θ4 ≥ 0 (reflected proposals) and the signs are drawn uniformly
//! at output (see [`crate::smc`]). The remaining structure (e.g. θ5 piling up at the box edge)
//! is handled by the tempering and many random-walk sweeps.

use serde::Deserialize;

use crate::distributions::std_normal;
use crate::linalg;
use crate::reference::smc_reference_for_task;
use crate::smc::SmcOptions;
use crate::{
    check_len, embedded, embedded_observation, parse_csv_row, simulate_rows, unif, Observation,
    Prior, Task, TaskError,
};
use rand::Rng;

const N_DRAWS: usize = 4;
const D_DATA: usize = 2 * N_DRAWS;
const D_NOISE: usize = 92;
const D_DISTRACT: usize = D_DATA + D_NOISE;

#[derive(Deserialize)]
struct DistractorJson {
    df: f64,
    mixture_probs: Vec<f64>,
    loc: Vec<Vec<f64>>,
    scale_tril: Vec<Vec<Vec<f64>>>,
    permutation_idx: Vec<usize>,
}

/// The distractor noise model of slcp_distractors.
pub struct Distractors {
    pub df: f64,
    /// Normalized mixture weights.
    pub probs: Vec<f64>,
    /// Component locations, 92 each.
    pub locs: Vec<Vec<f64>>,
    /// Lower-triangular scale factors, row-major 92×92 each (as stored: some diagonal entries are
    /// negative, which changes nothing for sampling; densities use |det L|).
    pub scale_trils: Vec<Vec<f64>>,
    /// `x[i] = concat(data, noise)[perm[i]]`.
    pub perm: Vec<usize>,
    /// `data_pos[j]` = the index i in x with `perm[i] = j` (j < 8).
    pub data_pos: [usize; D_DATA],
    /// `noise_pos[j]` = the index i in x with `perm[i] = 8 + j`.
    pub noise_pos: Vec<usize>,
}

impl Distractors {
    fn load() -> Result<Self, TaskError> {
        let j: DistractorJson = serde_json::from_str(embedded::SLCP_DISTRACTORS_JSON)
            .map_err(|e| TaskError::Data(format!("slcp_distractors/distractors.json: {e}")))?;
        let k = j.mixture_probs.len();
        let ok = j.loc.len() == k
            && j.scale_tril.len() == k
            && j.loc.iter().all(|l| l.len() == D_NOISE)
            && j.scale_tril
                .iter()
                .all(|s| s.len() == D_NOISE && s.iter().all(|r| r.len() == D_NOISE))
            && j.permutation_idx.len() == D_DISTRACT;
        if !ok {
            return Err(TaskError::Data(
                "slcp_distractors/distractors.json: unexpected shapes".into(),
            ));
        }
        let mut seen = [false; D_DISTRACT];
        for &p in &j.permutation_idx {
            if p >= D_DISTRACT || seen[p] {
                return Err(TaskError::Data(
                    "slcp_distractors: permutation_idx is not a permutation".into(),
                ));
            }
            seen[p] = true;
        }
        let mut data_pos = [0usize; D_DATA];
        let mut noise_pos = vec![0usize; D_NOISE];
        for (i, &p) in j.permutation_idx.iter().enumerate() {
            if p < D_DATA {
                data_pos[p] = i;
            } else {
                noise_pos[p - D_DATA] = i;
            }
        }
        let ps: f64 = j.mixture_probs.iter().sum();
        let scale_trils: Vec<Vec<f64>> = j
            .scale_tril
            .iter()
            .map(|m| {
                let mut f: Vec<f64> = m.iter().flat_map(|r| r.iter().cloned()).collect();
                // keep strictly lower-triangular + diagonal
                for r in 0..D_NOISE {
                    for c in r + 1..D_NOISE {
                        f[r * D_NOISE + c] = 0.0;
                    }
                }
                f
            })
            .collect();
        Ok(Self {
            df: j.df,
            probs: j.mixture_probs.iter().map(|p| p / ps).collect(),
            locs: j.loc,
            scale_trils,
            perm: j.permutation_idx,
            data_pos,
            noise_pos,
        })
    }

    fn sample<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f64]) {
        let u = unif(rng);
        let mut k = 0;
        let mut c = self.probs[0];
        while u >= c && k + 1 < self.probs.len() {
            k += 1;
            c += self.probs[k];
        }
        let z: Vec<f64> = (0..D_NOISE).map(|_| std_normal(rng)).collect();
        // chi-square(df) = Gamma(df/2, 2)
        let w: f64 =
            rand_distr::Distribution::sample(&rand_distr::ChiSquared::new(self.df).unwrap(), rng);
        let f = (self.df / w).sqrt();
        linalg::lower_mul(&self.scale_trils[k], D_NOISE, &z, out);
        for i in 0..D_NOISE {
            out[i] = self.locs[k][i] + f * out[i];
        }
    }
}

/// slcp / slcp_distractors.
pub struct Slcp {
    prior: Prior,
    distractors: Option<Distractors>,
}

impl Slcp {
    pub fn new(with_distractors: bool) -> Result<Self, TaskError> {
        Ok(Self {
            prior: Prior::BoxUniform {
                low: vec![-3.0; 5],
                high: vec![3.0; 5],
            },
            distractors: if with_distractors {
                Some(Distractors::load()?)
            } else {
                None
            },
        })
    }

    /// The distractor model (slcp_distractors only).
    pub fn distractors(&self) -> Option<&Distractors> {
        self.distractors.as_ref()
    }

    /// The 8 slcp data columns of an observation of this task.
    pub fn data_columns(&self, x: &[f64]) -> Vec<f64> {
        match &self.distractors {
            None => x.to_vec(),
            Some(d) => d.data_pos.iter().map(|&i| x[i]).collect(),
        }
    }

    /// (m1, m2, L11, L21, L22): mean and Cholesky factor of S.
    fn params(theta: &[f64]) -> (f64, f64, f64, f64, f64) {
        let s1 = theta[2] * theta[2];
        let s2 = theta[3] * theta[3];
        let rho = theta[4].tanh();
        let s11 = s1 * s1 + 1e-6;
        let s22 = s2 * s2 + 1e-6;
        let s12 = rho * s1 * s2;
        let l11 = s11.sqrt();
        let l21 = s12 / l11;
        let l22 = (s22 - l21 * l21).max(0.0).sqrt();
        (theta[0], theta[1], l11, l21, l22)
    }

    /// Exact log-likelihood of the 8 data numbers.
    pub fn log_likelihood_data(theta: &[f64], data: &[f64]) -> f64 {
        let (m1, m2, l11, l21, l22) = Self::params(theta);
        let mut ll = 0.0;
        let log_det_half = l11.ln() + l22.ln();
        for j in 0..N_DRAWS {
            let z1 = (data[2 * j] - m1) / l11;
            let z2 = (data[2 * j + 1] - m2 - l21 * z1) / l22;
            ll += -0.5 * (z1 * z1 + z2 * z2) - log_det_half - (2.0 * std::f64::consts::PI).ln();
        }
        ll
    }
}

impl Task for Slcp {
    fn name(&self) -> &'static str {
        if self.distractors.is_some() {
            "slcp_distractors"
        } else {
            "slcp"
        }
    }
    fn dim_theta(&self) -> usize {
        5
    }
    fn dim_x(&self) -> usize {
        if self.distractors.is_some() {
            D_DISTRACT
        } else {
            D_DATA
        }
    }
    fn prior(&self) -> &Prior {
        &self.prior
    }
    fn simulate(&self, theta: &[f64], seed: u64) -> Vec<f64> {
        let dx = self.dim_x();
        simulate_rows(theta, 5, dx, seed, |t, x, rng| {
            let (m1, m2, l11, l21, l22) = Self::params(t);
            let mut data = [0.0; D_DATA];
            for j in 0..N_DRAWS {
                let z1 = std_normal(rng);
                let z2 = std_normal(rng);
                data[2 * j] = m1 + l11 * z1;
                data[2 * j + 1] = m2 + l21 * z1 + l22 * z2;
            }
            match &self.distractors {
                None => x.copy_from_slice(&data),
                Some(d) => {
                    let mut noise = [0.0; D_NOISE];
                    d.sample(rng, &mut noise);
                    for (i, &p) in d.perm.iter().enumerate() {
                        x[i] = if p < D_DATA {
                            data[p]
                        } else {
                            noise[p - D_DATA]
                        };
                    }
                }
            }
        })
    }
    fn log_likelihood(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
        let data = self.data_columns(x);
        let ll = Self::log_likelihood_data(theta, &data);
        match &self.distractors {
            None => Some(ll),
            // The distractor density is θ-free but numerically meaningless in f64: the stored
            // scale_tril factors have condition numbers up to ~1e18, so the 92-dim Student-t
            // mixture is nearly degenerate and L⁻¹(x − loc) is dominated by rounding.
            Some(_) => None,
        }
    }
    /// The slcp likelihood of the 8 data columns: exact up to the θ-free distractor density.
    fn log_likelihood_unnormalized(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
        Some(Self::log_likelihood_data(theta, &self.data_columns(x)))
    }
    fn observation(&self, k: usize) -> Result<Observation, TaskError> {
        let mut obs = embedded_observation("slcp", self.name(), k)?;
        if self.distractors.is_some() {
            obs.x = parse_csv_row(
                embedded::SLCP_DISTRACTORS[k - 1],
                &format!("slcp/num_observation_{k}/observation_distractors.csv"),
            )?;
        }
        Ok(obs)
    }
    fn reference_posterior(&self, x_o: &[f64], n: usize, seed: u64) -> Result<Vec<f64>, TaskError> {
        check_len("x_o", x_o, self.dim_x())?;
        let opts = slcp_smc_options();
        let (s, _) = smc_reference_for_task(self, x_o, n, seed, &opts)?;
        Ok(s)
    }
    fn reference_is_exact(&self) -> bool {
        false
    }
}

/// SMC settings used for the slcp reference.
pub fn slcp_smc_options() -> SmcOptions {
    SmcOptions {
        n_particles: 4_000,
        ess_fraction: 0.5,
        min_sweeps: 5,
        max_sweeps: 60,
        stay_probability: 0.01,
        final_sweeps: 100,
        max_stages: 400,
        sign_symmetric: vec![2, 3],
    }
}
