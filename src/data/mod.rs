//! User data and user simulators: simulation files (`.npz`, `.npy` pairs, folders of shards),
//! prior files, external simulator programs, the handling of invalid simulations, and the
//! sharded, reproducible simulation of benchmark tasks.
//!
//! Every error is a [`DataError`] whose `Display` is one line naming the file (or the simulator
//! command) and the problem, e.g. `sims.npz: theta has 1000 rows but x has 999`.

mod error;
pub mod external;
mod invalid;
mod prior_file;
pub mod sequence;
mod shards;
mod simulations;

pub use error::{DataError, Result};
pub use external::{ExternalConfig, ExternalSimulator, FRAME_LIMIT};
pub use invalid::{
    online_source, FailureSlot, InvalidCount, InvalidPolicy, OnlineDraw, OnlineStats,
};
pub use prior_file::{prior_from_bytes, read_prior, MAX_PRIOR_FILE};
pub use sequence::{shard_range, simulate_task_rows, ShardSpec, SEQUENCE_BLOCK_ROWS};
pub use shards::{Shard, ShardFiles, ShardSet};
pub use simulations::{check_against_prior, load_npy_pair, load_npz, load_path, Simulations};
