// Fused per-length objectives of the nested hash layer: the CSQ loss with its gradient in one
// pass, and the similarity-preserving distillation between two code prefixes (prefix Grams, the
// row-normalised difference with its backward, and the student gradient (dA + dA^T) S), and the
// prefix dot products of stacked per-length gradients that the dominance weights need.
//
// Every kernel reads the code prefixes in place from the shared n x B output `a` (row stride
// p.cols), so no slice is ever copied.

// The words of the parameter block `p` (binding 0, declared in prologue.wgsl).
struct Params {
    // Batch rows n.
    rows: u32,
    // Columns B of the shared output (its row stride).
    cols: u32,
    // Code length b (CSQ) or the student's prefix (SP).
    bits: u32,
    // The teacher's prefix (SP).
    bits2: u32,
    // CSQ: lambda; SP: the normalisation floor eps.
    alpha: f32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> idx: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> out2: array<f32>;

// CSQ on the first p.bits columns of a (n x B), targets b (N x bits) at rows idx[0..n]: writes
// dJ/dU (n x bits) to out and J to out2[0]. One workgroup of 256 invocations strides over the
// n * bits elements and tree-sums the two means.
@compute @workgroup_size(WORKGROUP)
fn csq(@builtin(local_invocation_index) lid: u32) {
    let m = p.rows * p.bits;
    let inv = 1.0 / f32(m);
    var bce = 0.0;
    var quant = 0.0;
    for (var i = lid; i < m; i += WORKGROUP) {
        let r = i / p.bits;
        let c = i % p.bits;
        let v = stable_tanh(a[r * p.cols + c]);
        let q = v * 0.5 + 0.5;
        let t = b[idx[r] * p.bits + c] * 0.5 + 0.5;
        // BCE with each log clamped at -100 like PyTorch; a clamped log passes no gradient.
        let lq = log(q);
        let lr = log(1.0 - q);
        bce += -(t * max(lq, -100.0) + (1.0 - t) * max(lr, -100.0));
        let dq = select(0.0, -t / q, lq > -100.0) + select(0.0, (1.0 - t) / (1.0 - q), lr > -100.0);
        let e = abs(v) - 1.0;
        quant += e * e;
        let dv = dq * 0.5 + 2.0 * p.alpha * e * sign(v);
        out[i] = dv * (1.0 - v * v) * inv;
    }
    partial[lid] = vec2<f32>(bce, quant);
    tree_sum(lid);
    if lid == 0u {
        out2[0] = partial[0].x * inv + p.alpha * (partial[0].y * inv);
    }
}

// The prefix Grams of a: out[0 .. n^2] = S S^T over the first p.bits columns, out[n^2 .. 2 n^2]
// = T T^T over the first p.bits2 (the teacher's sum continues the student's). One invocation
// per (row, column) of the n x n result.
@compute @workgroup_size(WORKGROUP)
fn sp_gram(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let n = p.rows;
    let i = flat_index(wg, nwg, lid);
    if i >= n * n {
        return;
    }
    let r = (i / n) * p.cols;
    let q = (i % n) * p.cols;
    var s = 0.0;
    for (var c = 0u; c < p.bits; c++) {
        s += a[r + c] * a[q + c];
    }
    var t = s;
    for (var c = p.bits; c < p.bits2; c++) {
        t += a[r + c] * a[q + c];
    }
    out[i] = s;
    out[n * n + i] = t;
}

// One workgroup per row of the Grams in a (from sp_gram): with Y = rownorm(A) and
// Y_t = rownorm(G_t), dY = -2 (Y_t - Y) / n^2, writes the row of dA (the row-normalisation
// backward: (dY - Y <Y, dY>) / ||A_r||, or dY / eps below the floor) to out[0 .. n^2] and the
// row's sum of (Y_t - Y)^2 to out[n^2 + r].
@compute @workgroup_size(WORKGROUP)
fn sp_rows(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let n = p.rows;
    let r = group_index(wg, nwg);
    if r >= n {
        return;
    }
    let base = r * n;
    let t_base = n * n + base;
    var ss = 0.0;
    var tt = 0.0;
    for (var c = lid; c < n; c += WORKGROUP) {
        let s = a[base + c];
        let t = a[t_base + c];
        ss += s * s;
        tt += t * t;
    }
    partial[lid] = vec2<f32>(ss, tt);
    tree_sum(lid);
    let ns = sqrt(partial[0].x);
    let ds = max(ns, p.alpha);
    let dt = max(sqrt(partial[0].y), p.alpha);
    workgroupBarrier();
    let scale = 1.0 / f32(n * n);
    var sq = 0.0;
    var dot = 0.0;
    for (var c = lid; c < n; c += WORKGROUP) {
        let y = a[base + c] / ds;
        let diff = a[t_base + c] / dt - y;
        sq += diff * diff;
        dot += y * (-2.0 * diff * scale);
    }
    partial[lid] = vec2<f32>(sq, dot);
    tree_sum(lid);
    let total = partial[0];
    for (var c = lid; c < n; c += WORKGROUP) {
        let y = a[base + c] / ds;
        let dy = -2.0 * (a[t_base + c] / dt - y) * scale;
        if ns > p.alpha {
            out[base + c] = (dy - y * total.y) / ns;
        } else {
            out[base + c] = dy / p.alpha;
        }
    }
    if lid == 0u {
        out[n * n + r] = total.x;
    }
}

// The student gradient dS = (dA + dA^T) S over the first p.bits columns of a, with dA and the
// per-row sums in b (from sp_rows), into out (n x bits); invocation 0 also writes
// SP = sum_r rows_r / n^2 to out2[0].
@compute @workgroup_size(WORKGROUP)
fn sp_grad(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let n = p.rows;
    let i = flat_index(wg, nwg, lid);
    if i == 0u {
        var total = 0.0;
        for (var r = 0u; r < n; r++) {
            total += b[n * n + r];
        }
        out2[0] = total / f32(n * n);
    }
    if i >= n * p.bits {
        return;
    }
    let r = i / p.bits;
    let c = i % p.bits;
    var g = 0.0;
    for (var q = 0u; q < n; q++) {
        g += (b[r * n + q] + b[q * n + r]) * a[q * p.cols + c];
    }
    out[i] = g;
}

// The prefix dot products of stacked blocks: a and b are n x p.cols with block k (width idx[k],
// non-decreasing, p.bits blocks) in consecutive columns. One workgroup per pair i <= j (slot in
// row-major order of the upper triangle) writes sum_{r, c < w_i} a[r, o_i + c] b[r, o_j + c].
@compute @workgroup_size(WORKGROUP)
fn pair_dots(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let slot = group_index(wg, nwg);
    let k = p.bits;
    if slot >= k * (k + 1u) / 2u {
        return;
    }
    // Decode (i, j) and the block offsets.
    var i = 0u;
    var first = 0u;
    while first + (k - i) <= slot {
        first += k - i;
        i++;
    }
    let j = i + (slot - first);
    var oi = 0u;
    var oj = 0u;
    for (var t = 0u; t < j; t++) {
        if t < i {
            oi += idx[t];
        }
        oj += idx[t];
    }
    let w = idx[i];
    var s = 0.0;
    for (var e = lid; e < p.rows * w; e += WORKGROUP) {
        let r = e / w;
        let c = e % w;
        s += a[r * p.cols + oi + c] * b[r * p.cols + oj + c];
    }
    partial[lid] = vec2<f32>(s, 0.0);
    tree_sum(lid);
    if lid == 0u {
        out[slot] = partial[0].x;
    }
}

// The dominance-aware weights of K = p.bits lengths (docs/METHOD.md 2.2 steps 3-6) from the gradient
// products a = [p_ij, i <= j] in row-major order of the upper triangle, beta = p.alpha:
// tau_i = beta p_ii / (K - 1); a_ij = tau_i / (-p_ij) where -p_ij > tau_i (p_ij < 0), else 1;
// a_ij <- min(a_ij, a_{i,i+1}) for j >= i + 2; omega_k = prod_{i<k} a_ik; w_k = K omega_k / sum.
// K(K+1)/2 products are few, so one invocation does it all and nothing comes back to the host.
fn slot(i: u32, j: u32, k: u32) -> u32 {
    return i * (2u * k - i + 1u) / 2u + (j - i);
}

fn conflict_scale(i: u32, j: u32, k: u32, beta: f32) -> f32 {
    let tau = beta * a[slot(i, i, k)] / f32(k - 1u);
    let pij = a[slot(i, j, k)];
    if pij < 0.0 && -pij > tau {
        return tau / -pij;
    }
    return 1.0;
}

@compute @workgroup_size(1, 1, 1)
fn dominance_weights(@builtin(workgroup_id) wg: vec3<u32>) {
    let k = p.bits;
    if wg.x != 0u || wg.y != 0u {
        return;
    }
    var total = 0.0;
    for (var j = 0u; j < k; j++) {
        var omega = 1.0;
        for (var i = 0u; i < j; i++) {
            var aij = conflict_scale(i, j, k, p.alpha);
            if j >= i + 2u {
                aij = min(aij, conflict_scale(i, i + 1u, k, p.alpha));
            }
            omega *= aij;
        }
        out[j] = omega;
        total += omega;
    }
    for (var j = 0u; j < k; j++) {
        out[j] = f32(k) * out[j] / total;
    }
}
