// Tiled matrix product C = op(A) op(B) (+ bias), op(M) = M^T when its flag is set.
//
// Each 16x16 workgroup computes a 64x64 block of C; each invocation owns a 4x4 register block
// whose rows are ty + 16 i and columns tx + 16 j, so neighbouring invocations read neighbouring
// words of the shared tiles (no bank conflicts) and write neighbouring words of C (coalesced).
// The k dimension is walked in slabs of 16: A's 64x16 slab and B's 16x64 slab are staged in
// workgroup memory, both stored k-major so the inner loop reads them as rows.
//
// The transposes and the bias are pipeline-overridable constants, so each of the eight variants
// is its own pipeline with the index arithmetic folded; the loads pick the walking order that
// follows the operand's contiguous dimension, so global reads stay coalesced either way.

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override HAS_BIAS: bool = false;

// The words of the parameter block `p` (binding 0, declared in prologue.wgsl).
struct Params {
    // Rows of op(A) and C.
    m: u32,
    // Columns of op(B) and C.
    n: u32,
    // The shared dimension.
    k: u32,
    pad: u32,
}

const TILE: u32 = 64u;
const BK: u32 = 16u;

@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

// a_tile[kk * TILE + row] = op(A)[row0 + row, k0 + kk]
var<workgroup> a_tile: array<f32, 1024>;
// b_tile[kk * TILE + col] = op(B)[k0 + kk, col0 + col]
var<workgroup> b_tile: array<f32, 1024>;

fn load_a(row: u32, kk: u32) -> f32 {
    if row >= p.m || kk >= p.k {
        return 0.0;
    }
    // A is m x k, or k x m when transposed.
    if TRANS_A {
        return a[kk * p.m + row];
    }
    return a[row * p.k + kk];
}

fn load_b(kk: u32, col: u32) -> f32 {
    if kk >= p.k || col >= p.n {
        return 0.0;
    }
    // B is k x n, or n x k when transposed.
    if TRANS_B {
        return b[col * p.k + kk];
    }
    return b[kk * p.n + col];
}

@compute @workgroup_size(16, 16, 1)
fn matmul(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let tx = lid.x;
    let ty = lid.y;
    let tid = ty * 16u + tx;
    let row0 = wg.y * TILE;
    let col0 = wg.x * TILE;

    // Four named accumulators rather than an indexed array: software rasterisers keep an
    // indexed private array in memory, named vectors stay in registers.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        for (var q = 0u; q < 4u; q++) {
            let l = tid + 256u * q;
            // Walk the slab along the operand's contiguous dimension.
            var ar: u32;
            var ak: u32;
            if TRANS_A {
                ar = l % TILE;
                ak = l / TILE;
            } else {
                ak = l % BK;
                ar = l / BK;
            }
            a_tile[ak * TILE + ar] = load_a(row0 + ar, k0 + ak);
            var bc: u32;
            var bk: u32;
            if TRANS_B {
                bk = l % BK;
                bc = l / BK;
            } else {
                bc = l % TILE;
                bk = l / TILE;
            }
            b_tile[bk * TILE + bc] = load_b(k0 + bk, col0 + bc);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let base = kk * TILE;
            let bv = vec4<f32>(
                b_tile[base + tx],
                b_tile[base + tx + 16u],
                b_tile[base + tx + 32u],
                b_tile[base + tx + 48u],
            );
            acc0 = fma(vec4<f32>(a_tile[base + ty]), bv, acc0);
            acc1 = fma(vec4<f32>(a_tile[base + ty + 16u]), bv, acc1);
            acc2 = fma(vec4<f32>(a_tile[base + ty + 32u]), bv, acc2);
            acc3 = fma(vec4<f32>(a_tile[base + ty + 48u]), bv, acc3);
        }
        workgroupBarrier();
    }

    store_row(row0 + ty, col0 + tx, acc0);
    store_row(row0 + ty + 16u, col0 + tx, acc1);
    store_row(row0 + ty + 32u, col0 + tx, acc2);
    store_row(row0 + ty + 48u, col0 + tx, acc3);
}

// Writes the columns col, col + 16, col + 32, col + 48 of one row of C, adding the bias.
fn store_row(row: u32, col: u32, v: vec4<f32>) {
    if row >= p.m {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let cj = col + 16u * j;
        if cj < p.n {
            var out = v[j];
            if HAS_BIAS {
                out += bias[cj];
            }
            c[row * p.n + cj] = out;
        }
    }
}
