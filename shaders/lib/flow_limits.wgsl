// Capacities of the private arrays of the per-row flow kernels (flow_rows.wgsl; WGSL cannot size
// private arrays with override constants). This piece serves flows of dim <= 32; the shader
// registry builds flow_rows a second time with lib/flow_limits_wide.wgsl in its place for wider
// flows (runtime::pipeline, ShaderDef::wide), so small flows keep small private arrays.

const MAXD: u32 = 32u;       // dims (theta)
const MAXD4: u32 = 8u;       // theta blocks
const MAXE4: u32 = 32u;      // context blocks (context_dim <= 128)
const MAXH4: u32 = 32u;      // hidden blocks (hidden <= 128)
const MAXO4: u32 = 24u;      // output blocks handled at once: MAF NO4 (<= 16), NSF PS4 (<= 24)
