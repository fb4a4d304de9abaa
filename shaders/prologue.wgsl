// The prologue of every shader in this folder: the registry (crates/nhl-kernels/src/shaders.rs)
// puts this file in front of each one at compile time, so the code that every kernel family
// shares is written once.

// Binding 0 of every kernel is its parameter block: one 32-byte slot of the host's uniform ring
// (eight 32-bit words, bound with a dynamic offset). Each shader declares the layout `Params`
// that names the words for its own kernels.
@group(0) @binding(0) var<uniform> p: Params;

// Invocations per workgroup of the 1-D and row kernels (the host's `WORKGROUP`).
const WORKGROUP: u32 = 256u;

// The index of a workgroup in the 2-D dispatch grid: the host lays a long run of workgroups out
// as rows of at most 65535 (the per-dimension limit), and every kernel bounds-checks the spares
// of the last row.
fn group_index(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.y * nwg.x + wg.x;
}

// The index of an invocation of a 1-D kernel over the same grid.
fn flat_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return group_index(wg, nwg) * WORKGROUP + lid;
}

// One pair of partial sums per invocation, for the workgroup reductions.
var<workgroup> partial: array<vec2<f32>, WORKGROUP>;

// Folds partial[0 .. WORKGROUP] into partial[0] in a fixed order (so a sum does not depend on
// scheduling); every invocation of the workgroup must call it.
fn tree_sum(lid: u32) {
    workgroupBarrier();
    for (var s = WORKGROUP / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
}

// tanh through e^(-2|x|), which never overflows (the naive quotient is NaN for large |x| on some
// drivers).
fn stable_tanh(v: f32) -> f32 {
    let t = exp(-2.0 * abs(v));
    return sign(v) * (1.0 - t) / (1.0 + t);
}
