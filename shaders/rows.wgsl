// Row kernels: L2 row normalisation and its backward, column slices and the scaled prefix add,
// and the row gather / scatter-add / set used by embedding tables and memory banks.
//
// Index vectors carry, besides the indices, a grouping computed on the host when they are
// uploaded: the positions sorted by target row (stable, so in index order), the start of each
// distinct row's group and the distinct rows. The u32 buffer is laid out as
// [idx: n][perm: n][offsets: u + 1][uniq: u]. With it, scatter-add sums each row's sources in
// index order without atomics (deterministic), and set_rows lets the last duplicate win.

// The words of the parameter block `p` (binding 0, declared in prologue.wgsl).
struct Params {
    rows: u32,
    // Columns of the output (slice: the slice length; gather/scatter: the row width).
    cols: u32,
    // Columns of the other operand (slice: of the source; add_prefix: of the output).
    src_cols: u32,
    // First column of the slice or prefix.
    start: u32,
    // add_prefix: alpha; row_normalize: eps.
    alpha: f32,
    // Index vectors: n indices and u distinct rows (add_prefix_weighted: n_idx is the weight's
    // index).
    n_idx: u32,
    n_uniq: u32,
    pad: u32,
}

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> idx: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// y_i = x_i / max(||x_i||, eps), one workgroup per row.
@compute @workgroup_size(WORKGROUP)
fn row_normalize(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = group_index(wg, nwg);
    if r >= p.rows {
        return;
    }
    let base = r * p.cols;
    var ss = 0.0;
    for (var c = lid; c < p.cols; c += WORKGROUP) {
        let v = x[base + c];
        ss += v * v;
    }
    partial[lid] = vec2<f32>(ss, 0.0);
    tree_sum(lid);
    let d = max(sqrt(partial[0].x), p.alpha);
    for (var c = lid; c < p.cols; c += WORKGROUP) {
        out[base + c] = x[base + c] / d;
    }
}

// With n = ||x_i|| and y_i = x_i / n: dx_i = (dy_i - y_i <y_i, dy_i>) / n when n > eps, else
// dy_i / eps (the clamped branch is linear in x). One workgroup per row; the norm and <x, dy>
// are reduced together.
@compute @workgroup_size(WORKGROUP)
fn row_normalize_bwd(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = group_index(wg, nwg);
    if r >= p.rows {
        return;
    }
    let base = r * p.cols;
    var acc = vec2<f32>(0.0, 0.0);
    for (var c = lid; c < p.cols; c += WORKGROUP) {
        let v = x[base + c];
        acc += vec2<f32>(v * v, v * dy[base + c]);
    }
    partial[lid] = acc;
    tree_sum(lid);
    let n = sqrt(partial[0].x);
    if n > p.alpha {
        // <y, dy> = <x, dy> / n
        let ydy = partial[0].y / n;
        for (var c = lid; c < p.cols; c += WORKGROUP) {
            out[base + c] = (dy[base + c] - x[base + c] / n * ydy) / n;
        }
    } else {
        for (var c = lid; c < p.cols; c += WORKGROUP) {
            out[base + c] = dy[base + c] / p.alpha;
        }
    }
}

// out[r, c] = x[r, start + c] for c < cols (= the slice length).
@compute @workgroup_size(WORKGROUP)
fn slice_cols(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wg, nwg, lid);
    if i >= p.rows * p.cols {
        return;
    }
    let r = i / p.cols;
    let c = i % p.cols;
    out[i] = x[r * p.src_cols + p.start + c];
}

// out[r, start + c] += scale x[r, c] for element i of x (rows x cols; out is rows x src_cols).
fn add_prefix_at(i: u32, scale: f32) {
    if i >= p.rows * p.cols {
        return;
    }
    let r = i / p.cols;
    let c = i % p.cols;
    out[r * p.src_cols + p.start + c] += scale * x[i];
}

// out[r, start + c] += alpha x[r, c].
@compute @workgroup_size(WORKGROUP)
fn add_prefix(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    add_prefix_at(flat_index(wg, nwg, lid), p.alpha);
}

// out[r, start + c] += dy[n_idx] x[r, c]: add_prefix with the scale read from a weight row on
// the device (dy holds the weights, n_idx the weight's index).
@compute @workgroup_size(WORKGROUP)
fn add_prefix_weighted(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    add_prefix_at(flat_index(wg, nwg, lid), dy[p.n_idx]);
}

// out[i, c] = x[idx[i], c] for i < n_idx.
@compute @workgroup_size(WORKGROUP)
fn gather_rows(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wg, nwg, lid);
    if i >= p.n_idx * p.cols {
        return;
    }
    let r = i / p.cols;
    let c = i % p.cols;
    out[i] = x[idx[r] * p.cols + c];
}

// For each distinct target row u: out[uniq[u], c] = sum of x[perm[j], c] over its group, in
// index order. Rows no index names are left as they are (the caller zero-fills first).
@compute @workgroup_size(WORKGROUP)
fn scatter_add_rows(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wg, nwg, lid);
    if i >= p.n_uniq * p.cols {
        return;
    }
    let u = i / p.cols;
    let c = i % p.cols;
    let perm = p.n_idx;
    let offsets = 2u * p.n_idx;
    let uniq = offsets + p.n_uniq + 1u;
    var acc = 0.0;
    for (var j = idx[offsets + u]; j < idx[offsets + u + 1u]; j++) {
        acc += x[idx[perm + j] * p.cols + c];
    }
    out[idx[uniq + u] * p.cols + c] = acc;
}

// For each distinct target row u: out[uniq[u], c] = x[last source of the group, c], so the
// later of duplicate indices wins.
@compute @workgroup_size(WORKGROUP)
fn set_rows(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wg, nwg, lid);
    if i >= p.n_uniq * p.cols {
        return;
    }
    let u = i / p.cols;
    let c = i % p.cols;
    let perm = p.n_idx;
    let offsets = 2u * p.n_idx;
    let uniq = offsets + p.n_uniq + 1u;
    let last = idx[perm + idx[offsets + u + 1u] - 1u];
    out[idx[uniq + u] * p.cols + c] = x[last * p.cols + c];
}
