// Capacities of the private arrays of the per-row flow kernels for flows of dim 33 to 128 (in
// place of lib/flow_limits.wgsl, see there): only the arrays that grow with the dim are larger.

const MAXD: u32 = 128u;      // dims (theta)
const MAXD4: u32 = 32u;      // theta blocks
const MAXE4: u32 = 32u;      // context blocks (context_dim <= 128)
const MAXH4: u32 = 32u;      // hidden blocks (hidden <= 128)
const MAXO4: u32 = 64u;      // output blocks handled at once: MAF NO4 (<= 64), NSF PS4 (<= 24)
