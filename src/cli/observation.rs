//! Which observation(s) a command works on: an embedded sbibm observation, values on the command
//! line, or a file with one observation per row.

use anyhow::{bail, Context, Result};
use clap::Args;
use gkl_gpu::io::read_observation_rows;
use gkl_tasks::Task;
use std::path::PathBuf;

#[derive(Args, Clone, Debug)]
#[group(required = true, multiple = false)]
pub struct ObservationArgs {
    /// sbibm observation number (1-5, embedded in the program)
    #[arg(long)]
    pub observation: Option<usize>,
    /// The observation's values, comma-separated
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub x: Option<Vec<f64>>,
    /// sbibm CSV (header + one row) or .npy (1-D: one observation; 2-D: one per row)
    #[arg(long)]
    pub observation_file: Option<PathBuf>,
}

impl ObservationArgs {
    /// The observations as rows of length `dim_x`, each checked.
    pub fn rows(&self, dim_x: usize, task: Option<&dyn Task>) -> Result<Vec<Vec<f64>>> {
        let rows: Vec<Vec<f64>> = if let Some(k) = self.observation {
            let t = task.context(
                "--observation needs a benchmark task; give --x or --observation-file instead",
            )?;
            vec![t.observation(k)?.x]
        } else if let Some(x) = &self.x {
            vec![x.clone()]
        } else if let Some(f) = &self.observation_file {
            let a = read_observation_rows(f)?;
            a.data.chunks(a.cols).map(<[f64]>::to_vec).collect()
        } else {
            bail!("give one of --observation, --x or --observation-file");
        };
        for (i, r) in rows.iter().enumerate() {
            if r.len() != dim_x {
                bail!(
                    "observation {} has {} values; this model needs {dim_x}",
                    i + 1,
                    r.len()
                );
            }
            if let Some(v) = r.iter().find(|v| !v.is_finite()) {
                bail!("observation {} contains {v}", i + 1);
            }
        }
        Ok(rows)
    }
}
