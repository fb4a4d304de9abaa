// Pairwise objectives: the memory-bank losses of one code length (DSH, DHN, DBDH, DPSH and MDSH's
// pair term, docs/METHOD.md 5.3-5.6 and 5.11), DTSH's triplets within the batch (5.9) and
// HashNet's class-balanced batch likelihood (5.7).
//
// Bank loss of length b, six passes: `bank_row_norms` the batch rows' squared norms;
// `bank_rows` (one invocation per pair of a batch row i and a bank row j) the similarity, inner
// product and pair term of (i, j), writing the gradient's coefficient G[i, j] and the pair's
// shares of the row's sums, which `bank_row_sums` adds up; `bank_slabs` the products
// G U[:, :b] over slabs of SLAB bank rows, one invocation per slab and element, so that
// thousands of invocations share a reduction over the whole bank instead of n b of them each
// running through it; `bank_grad` adds the slabs in order and forms dJ/du = scale (G U[:, :b] +
// own u) + alpha dQ/du; `bank_value` the objective. The codes are read in place (row strides
// p.cols and p.other_cols), so no prefix is copied. The lengths of one call run in increasing
// order and share a running state (binding 7): each length's inner products and bank norms
// continue the previous length's sums over its own new columns only, and the similarities are
// formed once, by the first length.

// The words of the parameter block `p` (binding 0, declared in prologue.wgsl).
struct Params {
    // Batch rows n.
    rows: u32,
    // Columns of the batch u (its row stride).
    cols: u32,
    // Bank rows N.
    other_rows: u32,
    // Columns of the bank (its row stride).
    other_cols: u32,
    // The code length b.
    bits: u32,
    // Bank kernels: pair kind | quantisation << 4 | clamp << 8 | label classes << 12.
    // Triplet and HashNet kernels: label classes.
    code: u32,
    // bank_rows: the margin m; bank_grad/bank_value: alpha; triplets, HashNet: alpha.
    f0: f32,
    // bank_grad/bank_value: the pair term's weight; triplets: lambda; HashNet: the scale of
    // its continuation (an f32's bits: `f1()`). bank_rows: the first column of this length's new
    // block, lo (bits 0-15), and the length's index k in the call (bits 16-31).
    f1_bits: u32,
}

fn f1() -> f32 {
    return bitcast<f32>(p.f1_bits);
}

@group(0) @binding(1) var<storage, read> u: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<f32>;
@group(0) @binding(3) var<storage, read> bank: array<f32>;
@group(0) @binding(4) var<storage, read> bank_labels: array<f32>;
// Bank: G (n x N), then bank_slabs' sums (one n x b block per slab). Triplets: theta, s, dtheta
// and the triplet values (4 n x n blocks). HashNet: z, s, dz and the pair values (4 n x n
// blocks).
@group(0) @binding(5) var<storage, read_write> work: array<f32>;
// Per batch row: (pair value sum, own-code coefficient sum, similar pairs, unused). HashNet: one
// entry, (similar pairs, 0, 0, 0).
@group(0) @binding(6) var<storage, read_write> rowsums: array<vec4<f32>>;
// dJ/du (n x b), or J. The bank kernels' running state instead: the inner products, the
// similarities, the pair values and the own-code coefficients (n x N each), two slots of N
// bank-row squared norms (length k writes slot k mod 2 and reads the other's), and the n batch
// rows' squared norms.
@group(0) @binding(7) var<storage, read_write> result: array<f32>;

const COSINE_EPS: f32 = 1e-12;

// The within-batch kernels (`within_*`) shared by DTSH and HashNet: HashNet's works on
// v = tanh(scale u) instead of u and has no quantisation term.
override HASHNET: bool = false;

// Four partial sums per invocation (the prologue's `partial` holds two).
var<workgroup> partial4: array<vec4<f32>, WORKGROUP>;

// Folds partial4[0 .. WORKGROUP] into partial4[0] in a fixed order; every invocation of the
// workgroup must call it.
fn tree_sum4(lid: u32) {
    workgroupBarrier();
    for (var s = WORKGROUP / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            partial4[lid] += partial4[lid + s];
        }
        workgroupBarrier();
    }
}

fn softplus(x: f32) -> f32 {
    return max(x, 0.0) + log(1.0 + exp(-abs(x)));
}

fn sigmoid(x: f32) -> f32 {
    let e = exp(-abs(x));
    return select(e, 1.0, x >= 0.0) / (1.0 + e);
}

fn pair_kind() -> u32 {
    return p.code & 15u;
}

fn quant_kind() -> u32 {
    return (p.code >> 4u) & 15u;
}

fn classes() -> u32 {
    return p.code >> 12u;
}

// Element (i, c) of the batch codes, clamped to [-1, 1] when the loss says so.
fn code(i: u32, c: u32) -> f32 {
    let v = u[i * p.cols + c];
    if ((p.code >> 8u) & 1u) == 1u {
        return clamp(v, -1.0, 1.0);
    }
    return v;
}

fn own_sq_norm(i: u32) -> f32 {
    var sq = 0.0;
    for (var c = 0u; c < p.bits; c++) {
        let v = code(i, c);
        sq += v * v;
    }
    return sq;
}

// Where each block of bank_rows' state starts (see `result`): block 0 the inner products, 1 the
// similarities, 2 the pair values, 3 the own-code coefficients (n x N each).
fn state_at(block: u32) -> u32 {
    return block * p.rows * p.other_rows;
}

// The slot of the state that holds the bank rows' squared norms after length k; length k + 1
// reads it.
fn norm_slot(k: u32) -> u32 {
    return state_at(4u) + (k & 1u) * p.other_rows;
}

// Where the state holds the batch rows' squared norms of this length's prefix.
fn row_norms_at() -> u32 {
    return state_at(4u) + 2u * p.other_rows;
}

// One invocation per batch row i: the squared norm of its prefix, for bank_rows.
@compute @workgroup_size(WORKGROUP)
fn bank_row_norms(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wg, nwg, lid);
    if i < p.rows {
        result[row_norms_at() + i] = own_sq_norm(i);
    }
}

// One invocation per pair (i, j) of a batch row and a bank row, e = i N + j: enough to fill a
// large GPU, where a workgroup per batch row (n of them) left most of it idle. Writes G[i, j]
// and the pair's value and own-code coefficient, which bank_row_sums adds up per batch row.
@compute @workgroup_size(WORKGROUP)
fn bank_rows(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = flat_index(wg, nwg, lid);
    let n_bank = p.other_rows;
    if e >= p.rows * n_bank {
        return;
    }
    let i = e / n_bank;
    let j = e % n_bank;
    let nu = result[row_norms_at() + i];
    // The running state (see the top of this file): this length continues the sums of the one
    // before it from column lo, the same additions in the same order as from column 0.
    let lo = p.f1_bits & 0xffffu;
    let k = p.f1_bits >> 16u;
    var s = 0.0;
    var theta = 0.0;
    var nb = 0.0;
    if lo == 0u {
        var shared_labels = 0.0;
        for (var c = 0u; c < classes(); c++) {
            shared_labels += labels[i * classes() + c] * bank_labels[j * classes() + c];
        }
        s = select(0.0, 1.0, shared_labels > 0.0);
        result[state_at(1u) + e] = s;
    } else {
        s = result[state_at(1u) + e];
        theta = result[state_at(0u) + e];
        nb = result[norm_slot(k - 1u) + j];
    }
    for (var c = lo; c < p.bits; c++) {
        let w = bank[j * p.other_cols + c];
        theta += code(i, c) * w;
        nb += w * w;
    }
    result[state_at(0u) + e] = theta;
    // Every batch row forms the same norms; the first keeps them for the next length, in the
    // slot that no invocation of this pass reads.
    if i == 0u {
        result[norm_slot(k) + j] = nb;
    }
    var value = 0.0;
    var g = 0.0;
    var own = 0.0;
    switch pair_kind() {
        case 0u: {
            // Contrastive: d = ||u_i - U_j||^2 and the margin's hinge.
            let d = nu + nb - 2.0 * theta;
            let hinge = p.f0 - d;
            value = 0.5 * (s * d + (1.0 - s) * max(hinge, 0.0));
            let cc = 0.5 * (s - (1.0 - s) * select(0.0, 1.0, hinge > 0.0));
            g = -2.0 * cc;
            own = 2.0 * cc;
        }
        case 1u: {
            // Likelihood of t = u_i . U_j / 2.
            let t = 0.5 * theta;
            value = softplus(t) - s * t;
            g = 0.5 * (sigmoid(t) - s);
        }
        default: {
            // Cosine of the similar pairs.
            let inv_u = 1.0 / max(sqrt(nu), COSINE_EPS);
            let inv_b = 1.0 / max(sqrt(nb), COSINE_EPS);
            let cosv = theta * inv_u * inv_b;
            let x = 0.5 * (1.0 - cosv);
            value = s * softplus(x);
            let q = -0.5 * s * sigmoid(x);
            g = q * inv_u * inv_b;
            own = -q * cosv;
        }
    }
    work[e] = g;
    result[state_at(2u) + e] = value;
    result[state_at(3u) + e] = own;
}

// One workgroup per batch row i: its sums of the pair values, own-code coefficients and
// similarities over the bank rows, each invocation over every WORKGROUP-th bank row, then a
// fixed-order tree.
@compute @workgroup_size(WORKGROUP)
fn bank_row_sums(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = group_index(wg, nwg);
    if i >= p.rows {
        return;
    }
    let at = i * p.other_rows;
    var acc = vec4<f32>(0.0);
    for (var j = lid; j < p.other_rows; j += WORKGROUP) {
        let e = at + j;
        let value = result[state_at(2u) + e];
        let own = result[state_at(3u) + e];
        acc += vec4<f32>(value, own, result[state_at(1u) + e], 0.0);
    }
    partial4[lid] = acc;
    tree_sum4(lid);
    if lid == 0u {
        rowsums[i] = partial4[0];
    }
}

// The scale of the pair term: 1 / (n N), or the weight over the similar pairs (cosine).
fn pair_scale() -> f32 {
    if pair_kind() == 2u {
        var similar = 0.0;
        for (var r = 0u; r < p.rows; r++) {
            similar += rowsums[r].z;
        }
        return f1() / max(similar, 1.0);
    }
    return f1() / (f32(p.rows) * f32(p.other_rows));
}

fn row_mean(i: u32) -> f32 {
    var s = 0.0;
    for (var c = 0u; c < p.bits; c++) {
        s += code(i, c);
    }
    return s / f32(p.bits);
}

// The quantisation term of element (i, c): (value, d value / d u), before the mean.
fn quant_term(i: u32, c: u32) -> vec2<f32> {
    let x = code(i, c);
    switch quant_kind() {
        case 1u: {
            let gap = 1.0 - abs(x);
            return vec2<f32>(abs(gap), -sign(gap) * sign(x));
        }
        case 2u: {
            let z = abs(x) - 1.0;
            let a = abs(z);
            return vec2<f32>(a + log(1.0 + exp(-2.0 * a)) - 0.6931472, stable_tanh(z) * sign(x));
        }
        case 3u: {
            let z = x - sign(x);
            return vec2<f32>(z * z, 2.0 * z);
        }
        case 4u: {
            let m = row_mean(i);
            return vec2<f32>(m * m, 2.0 * m);
        }
        case 5u: {
            let m = row_mean(i);
            return vec2<f32>(abs(m), sign(m));
        }
        default: {
            return vec2<f32>(0.0, 0.0);
        }
    }
}

// Bank rows per slab of `bank_slabs`, set by the host (which sizes the slabs' sums by it).
override SLAB: u32;

fn slabs() -> u32 {
    return (p.other_rows + SLAB - 1u) / SLAB;
}

// Where bank_slabs' sums start in `work`: after G.
fn slab_sums_at() -> u32 {
    return p.rows * p.other_rows;
}

// One invocation per slab s and element (i, c) of G U[:, :b]: the sum over the slab's bank rows
// j of G[i, j] U[j, c], in increasing j, at work[slab_sums_at() + (s n + i) b + c].
@compute @workgroup_size(WORKGROUP)
fn bank_slabs(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = flat_index(wg, nwg, lid);
    let per_slab = p.rows * p.bits;
    if e >= slabs() * per_slab {
        return;
    }
    let s = e / per_slab;
    let i = (e % per_slab) / p.bits;
    let c = e % p.bits;
    let end = min((s + 1u) * SLAB, p.other_rows);
    var product = 0.0;
    for (var j = s * SLAB; j < end; j++) {
        product += work[i * p.other_rows + j] * bank[j * p.other_cols + c];
    }
    work[slab_sums_at() + e] = product;
}

// One invocation per element (i, c) of dJ/du (n x b).
@compute @workgroup_size(WORKGROUP)
fn bank_grad(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = flat_index(wg, nwg, lid);
    if e >= p.rows * p.bits {
        return;
    }
    let i = e / p.bits;
    let c = e % p.bits;
    // (G U[:, :b])[i, c]: the slabs' sums in slab order.
    var product = 0.0;
    for (var s = 0u; s < slabs(); s++) {
        product += work[slab_sums_at() + s * p.rows * p.bits + e];
    }
    var coef = 0.0;
    switch pair_kind() {
        case 0u: {
            coef = rowsums[i].y;
        }
        case 2u: {
            let norm = sqrt(own_sq_norm(i));
            if norm > COSINE_EPS {
                coef = rowsums[i].y / (norm * norm);
            }
        }
        default: {}
    }
    let inv = 1.0 / f32(p.rows * p.bits);
    var g = pair_scale() * (product + coef * code(i, c)) + p.f0 * quant_term(i, c).y * inv;
    if ((p.code >> 8u) & 1u) == 1u {
        let raw = u[i * p.cols + c];
        if !(raw >= -1.0 && raw <= 1.0) {
            g = 0.0;
        }
    }
    result[e] = g;
}

// One workgroup: J = scale * sum of the pair values + alpha * the quantisation term.
@compute @workgroup_size(WORKGROUP)
fn bank_value(@builtin(local_invocation_index) lid: u32) {
    var pair = 0.0;
    for (var r = lid; r < p.rows; r += WORKGROUP) {
        pair += rowsums[r].x;
    }
    var quant = 0.0;
    let per_row = quant_kind() == 4u || quant_kind() == 5u;
    if per_row {
        for (var r = lid; r < p.rows; r += WORKGROUP) {
            quant += quant_term(r, 0u).x;
        }
    } else {
        for (var e = lid; e < p.rows * p.bits; e += WORKGROUP) {
            quant += quant_term(e / p.bits, e % p.bits).x;
        }
    }
    partial4[lid] = vec4<f32>(pair, quant, 0.0, 0.0);
    tree_sum4(lid);
    if lid == 0u {
        let count = select(f32(p.rows * p.bits), f32(p.rows), per_row);
        result[0] = pair_scale() * partial4[0].x + p.f0 * partial4[0].y / count;
    }
}

// DTSH, five passes: `within_prep`, `dtsh_counts`, `dtsh_rows`, `within_grad` and
// `within_value`. work holds theta (block 0), s (block 1), dtheta (block 2) and the triplet
// values (block 3), each n x n; rowsums[a].x the number of items similar to anchor a.

fn label_classes() -> u32 {
    return p.code;
}

// s_ax: 1 when batch items a and x share a label, else 0.
fn shares_label(a: u32, x: u32) -> f32 {
    var shared_labels = 0.0;
    for (var c = 0u; c < label_classes(); c++) {
        shared_labels += labels[a * label_classes() + c] * labels[x * label_classes() + c];
    }
    return select(0.0, 1.0, shared_labels > 0.0);
}

// Element (q, c) of the codes the within-batch objective compares: u, or HashNet's v.
fn batch_code(q: u32, c: u32) -> f32 {
    if HASHNET {
        return hashnet_v(q, c);
    }
    return u[q * p.cols + c];
}

// ((D + D^T) V)_ic for the n x n block D = work[2 n^2 ..] and V the compared codes.
fn symmetric_times_codes(i: u32, c: u32) -> f32 {
    let n = p.rows;
    let d = 2u * n * n;
    var g = 0.0;
    for (var q = 0u; q < n; q++) {
        g += (work[d + i * n + q] + work[d + q * n + i]) * batch_code(q, c);
    }
    return g;
}

// This invocation's share of the sum of the pair values (work[3 n^2 ..], n x n).
fn pair_values_share(lid: u32) -> f32 {
    let n = p.rows;
    var value = 0.0;
    for (var e = lid; e < n * n; e += WORKGROUP) {
        value += work[3u * n * n + e];
    }
    return value;
}

// DTSH and HashNet, one invocation per (a, x): the inner product of the compared codes over
// the first p.bits columns (DTSH's theta; HashNet's z, times alpha) and s_ax.
@compute @workgroup_size(WORKGROUP)
fn within_prep(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let n = p.rows;
    let e = flat_index(wg, nwg, lid);
    if e >= n * n {
        return;
    }
    let a = e / n;
    let x = e % n;
    var inner = 0.0;
    for (var c = 0u; c < p.bits; c++) {
        inner += batch_code(a, c) * batch_code(x, c);
    }
    work[e] = select(inner, p.f0 * inner, HASHNET);
    work[n * n + e] = shares_label(a, x);
}

// One invocation per anchor: its number of similar items.
@compute @workgroup_size(WORKGROUP)
fn dtsh_counts(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let n = p.rows;
    let a = flat_index(wg, nwg, lid);
    if a >= n {
        return;
    }
    var similar = 0.0;
    for (var x = 0u; x < n; x++) {
        similar += work[n * n + a * n + x];
    }
    rowsums[a] = vec4<f32>(similar, 0.0, 0.0, 0.0);
}

fn qualifies(a: u32) -> bool {
    let similar = rowsums[a].x;
    return similar >= 1.0 && similar < f32(p.rows);
}

// softplus(-t) and its derivative in t (zero where the clamp of t is active) for the triplet
// (a, pos, neg).
fn triplet(a: u32, pos: u32, neg: u32) -> vec2<f32> {
    let n = p.rows;
    let r = work[a * n + pos] - work[a * n + neg] - p.f0;
    let t = clamp(r, -100.0, 50.0);
    let inside = select(0.0, 1.0, r >= -100.0 && r <= 50.0);
    return vec2<f32>(softplus(-t), -sigmoid(-t) * inside);
}

// One invocation per (a, x): dtheta_ax and the values of the triplets whose positive is x.
@compute @workgroup_size(WORKGROUP)
fn dtsh_rows(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let n = p.rows;
    let e = flat_index(wg, nwg, lid);
    if e >= n * n {
        return;
    }
    let a = e / n;
    let x = e % n;
    var d = 0.0;
    var value = 0.0;
    if qualifies(a) {
        var count = 0.0;
        for (var r = 0u; r < n; r++) {
            count += select(0.0, 1.0, qualifies(r));
        }
        let similar = rowsums[a].x;
        let weight = 1.0 / (similar * (f32(n) - similar) * count);
        let s_row = n * n + a * n;
        if work[s_row + x] > 0.0 {
            for (var q = 0u; q < n; q++) {
                if work[s_row + q] <= 0.0 {
                    let t = triplet(a, x, q);
                    value += t.x;
                    d += t.y;
                }
            }
        } else {
            for (var q = 0u; q < n; q++) {
                if work[s_row + q] > 0.0 {
                    d -= triplet(a, q, x).y;
                }
            }
        }
        d *= weight;
        value *= weight;
    }
    work[2u * n * n + e] = d;
    work[3u * n * n + e] = value;
}

// DTSH and HashNet, one invocation per element (i, c): DTSH's ((dtheta + dtheta^T) U)_ic +
// lambda d/du mean((u - sign u)^2), or HashNet's alpha ((dz + dz^T) v)_ic scale (1 - v_ic^2).
@compute @workgroup_size(WORKGROUP)
fn within_grad(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let n = p.rows;
    let e = flat_index(wg, nwg, lid);
    if e >= n * p.bits {
        return;
    }
    let i = e / p.bits;
    let c = e % p.bits;
    let g = symmetric_times_codes(i, c);
    if HASHNET {
        let v = hashnet_v(i, c);
        result[e] = p.f0 * g * f1() * (1.0 - v * v);
    } else {
        let v = u[i * p.cols + c];
        result[e] = g + f1() * 2.0 * (v - sign(v)) / f32(n * p.bits);
    }
}

// DTSH and HashNet, one workgroup: J = the pair values' sum, plus DTSH's lambda mean((u -
// sign u)^2).
@compute @workgroup_size(WORKGROUP)
fn within_value(@builtin(local_invocation_index) lid: u32) {
    let n = p.rows;
    var quant = 0.0;
    if !HASHNET {
        for (var e = lid; e < n * p.bits; e += WORKGROUP) {
            let v = u[(e / p.bits) * p.cols + e % p.bits];
            let z = v - sign(v);
            quant += z * z;
        }
    }
    partial4[lid] = vec4<f32>(pair_values_share(lid), quant, 0.0, 0.0);
    tree_sum4(lid);
    if lid == 0u {
        result[0] = partial4[0].x + select(f1() * partial4[0].y / f32(n * p.bits), 0.0, HASHNET);
    }
}

// HashNet, five passes over v = tanh(scale u) (f1() the scale, p.f0 alpha): `within_prep` the
// logits z = alpha v v^T and s, `hashnet_counts` the similar pairs, `hashnet_rows` each pair's
// group-weighted value and dz, `within_grad` dJ/du, `within_value` J.

fn hashnet_v(i: u32, c: u32) -> f32 {
    return stable_tanh(f1() * u[i * p.cols + c]);
}

// One workgroup: the number of similar pairs into rowsums[0].x.
@compute @workgroup_size(WORKGROUP)
fn hashnet_counts(@builtin(local_invocation_index) lid: u32) {
    let n = p.rows;
    var similar = 0.0;
    for (var e = lid; e < n * n; e += WORKGROUP) {
        similar += work[n * n + e];
    }
    partial4[lid] = vec4<f32>(similar, 0.0, 0.0, 0.0);
    tree_sum4(lid);
    if lid == 0u {
        rowsums[0] = partial4[0];
    }
}

// One invocation per (p, q): the pair's value softplus(z) - s z and dz = sigmoid(z) - s, both
// divided by the pair count of its group (floored at 1).
@compute @workgroup_size(WORKGROUP)
fn hashnet_rows(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let n = p.rows;
    let e = flat_index(wg, nwg, lid);
    if e >= n * n {
        return;
    }
    let similar = rowsums[0].x;
    let z = work[e];
    let s = work[n * n + e];
    let count = select(f32(n * n) - similar, similar, s > 0.0);
    let w = 1.0 / max(count, 1.0);
    work[2u * n * n + e] = w * (sigmoid(z) - s);
    work[3u * n * n + e] = w * (softplus(z) - s * z);
}
