// Sums: of every element (two passes of `sum_partial`), of each row and of each column.
// Each is a workgroup tree reduction in workgroup memory with a fixed summation order, so a
// result does not depend on scheduling; the sums use the first component of the prologue's
// `partial` pairs.

// The words of the parameter block `p` (binding 0, declared in prologue.wgsl).
struct Params {
    rows: u32,
    cols: u32,
    // sum_partial: elements in x, and the number of workgroups sharing them.
    n: u32,
    groups: u32,
}

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

// out[g] = sum of x[i] for i = (g + j * groups) * WORKGROUP + lid: a grid-stride pass over n
// elements. With groups = 1 it is the whole sum; with more it leaves one partial per workgroup
// for a second pass.
@compute @workgroup_size(WORKGROUP)
fn sum_partial(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = wg.x;
    var acc = 0.0;
    for (var i = g * WORKGROUP + lid; i < p.n; i += p.groups * WORKGROUP) {
        acc += x[i];
    }
    partial[lid] = vec2<f32>(acc, 0.0);
    tree_sum(lid);
    if lid == 0u {
        out[g] = partial[0].x;
    }
}

// One workgroup per row (a 2-D grid of rows), striding over the columns.
@compute @workgroup_size(WORKGROUP)
fn row_sums(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = group_index(wg, nwg);
    if r >= p.rows {
        return;
    }
    var acc = 0.0;
    for (var c = lid; c < p.cols; c += WORKGROUP) {
        acc += x[r * p.cols + c];
    }
    partial[lid] = vec2<f32>(acc, 0.0);
    tree_sum(lid);
    if lid == 0u {
        out[r] = partial[0].x;
    }
}

// A workgroup covers 16 columns with 16 lanes each; lane ly sums rows ly, ly + 16, ... of its
// column, then the 16 lanes are folded.
@compute @workgroup_size(16, 16, 1)
fn col_sums(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let col = group_index(wg, nwg) * 16u + lid.x;
    var acc = 0.0;
    if col < p.cols {
        for (var r = lid.y; r < p.rows; r += 16u) {
            acc += x[r * p.cols + col];
        }
    }
    partial[lid.y * 16u + lid.x] = vec2<f32>(acc, 0.0);
    workgroupBarrier();
    for (var s = 8u; s > 0u; s >>= 1u) {
        if lid.y < s {
            partial[lid.y * 16u + lid.x] += partial[(lid.y + s) * 16u + lid.x];
        }
        workgroupBarrier();
    }
    if lid.y == 0u && col < p.cols {
        out[col] = partial[lid.x].x;
    }
}
