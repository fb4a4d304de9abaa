// Elementwise kernels: y = f(x) and its backward, y = f(a, b) with b broadcast onto a and its
// backward, and fill. The op is the pipeline-overridable constant OP, so every op is its own
// specialised pipeline with the selection folded away; the codes are listed in
// `crates/nhl-kernels/src/shaders.rs`.
//
// One invocation per element; the workgroups form a 2-D grid (x up to 65535) so that inputs
// of any length fit the per-dimension dispatch limit.

override OP: u32 = 0u;

// The words of the parameter block `p` (binding 0, declared in prologue.wgsl).
struct Params {
    // Elements of the output.
    n: u32,
    // Columns of the output (binary broadcast).
    cols: u32,
    // Rows and columns of the broadcast operand b: 1 or the output's.
    b_rows: u32,
    b_cols: u32,
    // Scale alpha, AddScalar c, Clamp lo, the fill value.
    alpha: f32,
    // Clamp hi.
    beta: f32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> out2: array<f32>;

// ln(1 + u) for u >= 0, accurate when u is tiny (Goldberg's trick: the rounding error of 1 + u
// cancels in the ratio).
fn log1p(u: f32) -> f32 {
    let w = 1.0 + u;
    if w == 1.0 {
        return u;
    }
    return log(w) * u / (w - 1.0);
}

fn sigmoid(v: f32) -> f32 {
    if v >= 0.0 {
        return 1.0 / (1.0 + exp(-v));
    }
    let e = exp(v);
    return e / (1.0 + e);
}

fn unary_fwd(v: f32) -> f32 {
    if OP == 0u { return max(v, 0.0); }
    if OP == 1u { return stable_tanh(v); }
    if OP == 2u { return abs(v); }
    if OP == 3u { return sign(v); }
    if OP == 4u { return exp(v); }
    if OP == 5u { return log(v); }
    if OP == 6u { return max(v, 0.0) + log1p(exp(-abs(v))); }
    if OP == 7u { return abs(v) + log1p(exp(-2.0 * abs(v))) - 0.6931471805599453; }
    if OP == 8u { return v * v; }
    if OP == 9u { return sigmoid(v); }
    if OP == 10u { return p.alpha * v; }
    if OP == 11u { return v + p.alpha; }
    if OP == 13u { return sqrt(v); }
    // 12: Clamp
    return min(max(v, p.alpha), p.beta);
}

// f'(x) of the op above.
fn unary_grad(v: f32) -> f32 {
    if OP == 0u { return select(0.0, 1.0, v > 0.0); }
    if OP == 1u { let t = stable_tanh(v); return 1.0 - t * t; }
    if OP == 2u { return sign(v); }
    if OP == 3u { return 0.0; }
    if OP == 4u { return exp(v); }
    if OP == 5u { return 1.0 / v; }
    if OP == 6u { return sigmoid(v); }
    if OP == 7u { return stable_tanh(v); }
    if OP == 8u { return 2.0 * v; }
    if OP == 9u { let s = sigmoid(v); return s * (1.0 - s); }
    if OP == 10u { return p.alpha; }
    if OP == 11u { return 1.0; }
    if OP == 13u { return 0.5 / sqrt(v); }
    // 12: Clamp, PyTorch's rule: the gradient passes at the bounds too.
    return select(0.0, 1.0, p.alpha <= v && v <= p.beta);
}

// Index into the broadcast operand b for output element i.
fn b_index(i: u32) -> u32 {
    let r = select(i / p.cols, 0u, p.b_rows == 1u);
    let c = select(i % p.cols, 0u, p.b_cols == 1u);
    return r * p.b_cols + c;
}

fn binary_fwd(a: f32, b: f32) -> f32 {
    if OP == 0u { return a + b; }
    if OP == 1u { return a - b; }
    if OP == 2u { return a * b; }
    if OP == 3u { return a / b; }
    // 4: BCE, each log clamped at -100 like PyTorch.
    return -(b * max(log(a), -100.0) + (1.0 - b) * max(log(1.0 - a), -100.0));
}

@compute @workgroup_size(WORKGROUP)
fn unary(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wg, nwg, lid);
    if i < p.n {
        out[i] = unary_fwd(x[i]);
    }
}

@compute @workgroup_size(WORKGROUP)
fn unary_bwd(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wg, nwg, lid);
    if i < p.n {
        out[i] = dy[i] * unary_grad(x[i]);
    }
}

@compute @workgroup_size(WORKGROUP)
fn binary(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wg, nwg, lid);
    if i < p.n {
        out[i] = binary_fwd(x[i], y[b_index(i)]);
    }
}

// (dy * df/da, dy * df/db), both of a's shape.
@compute @workgroup_size(WORKGROUP)
fn binary_bwd(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wg, nwg, lid);
    if i >= p.n {
        return;
    }
    let a = x[i];
    let b = y[b_index(i)];
    let g = dy[i];
    var da: f32;
    var db: f32;
    if OP == 0u {
        da = g;
        db = g;
    } else if OP == 1u {
        da = g;
        db = -g;
    } else if OP == 2u {
        da = g * b;
        db = g * a;
    } else if OP == 3u {
        da = g / b;
        db = -g * a / (b * b);
    } else {
        // 4: BCE; a clamped log passes no gradient.
        let la = log(a);
        let lb = log(1.0 - a);
        da = g * (select(0.0, -b / a, la > -100.0) + select(0.0, (1.0 - b) / (1.0 - a), lb > -100.0));
        db = g * (max(lb, -100.0) - max(la, -100.0));
    }
    out[i] = da;
    out2[i] = db;
}

@compute @workgroup_size(WORKGROUP)
fn fill(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wg, nwg, lid);
    if i < p.n {
        out[i] = p.alpha;
    }
}
