//! Every backward rule of the CPU reference against central finite differences in f64.
//!
//! For an op `y = f(inputs)` we take the scalar `L = sum(y * R)` with a fixed random `R`, so
//! `dL/dy = R`; the backward rule fed with `R` must match `(L(x + h) - L(x - h)) / 2h` for every
//! input element.

use nhl_kernels::cpu::{CpuBackend, CpuBuf};
use nhl_kernels::testing::{assert_close, random_vec};
use nhl_kernels::{Backend, Binary, HashingOps, Reduce, Shape, Unary};

type B = CpuBackend<f64>;

const H: f64 = 1e-5;
const ATOL: f64 = 1e-8;
const RTOL: f64 = 1e-6;

fn buf(b: &B, seed: u64, shape: Shape, lo: f64, hi: f64) -> CpuBuf<f64> {
    b.upload(&random_vec(seed, shape.len(), lo, hi), shape)
        .unwrap()
}

/// Checks the analytic input gradients `grads(inputs, R)` of `forward` against finite differences.
fn fd_check(
    what: &str,
    inputs: Vec<CpuBuf<f64>>,
    forward: impl Fn(&[CpuBuf<f64>]) -> CpuBuf<f64>,
    grads: impl Fn(&[CpuBuf<f64>], &CpuBuf<f64>) -> Vec<CpuBuf<f64>>,
) {
    let b = B::new();
    let y = forward(&inputs);
    let r = buf(&b, 991, b.shape(&y), -1.0, 1.0);
    let loss = |xs: &[CpuBuf<f64>]| -> f64 {
        let y = forward(xs);
        y.as_slice()
            .iter()
            .zip(r.as_slice())
            .map(|(a, b)| a * b)
            .sum()
    };
    let analytic = grads(&inputs, &r);
    assert_eq!(
        analytic.len(),
        inputs.len(),
        "{what}: one gradient per input"
    );
    for (which, grad) in analytic.iter().enumerate() {
        let shape = b.shape(&inputs[which]);
        assert_eq!(
            b.shape(grad),
            shape,
            "{what}: gradient {which} has the input's shape"
        );
        let base = inputs[which].as_slice().to_vec();
        let numeric: Vec<f64> = (0..base.len())
            .map(|i| {
                let mut moved = inputs.clone();
                let mut plus = base.clone();
                plus[i] += H;
                moved[which] = b.upload(&plus, shape).unwrap();
                let lp = loss(&moved);
                let mut minus = base.clone();
                minus[i] -= H;
                moved[which] = b.upload(&minus, shape).unwrap();
                let lm = loss(&moved);
                (lp - lm) / (2.0 * H)
            })
            .collect();
        assert_close(
            &format!("{what} d/input{which}"),
            grad.as_slice(),
            &numeric,
            ATOL,
            RTOL,
        );
    }
}

#[test]
fn projection_backward_dx_dw_db() {
    let b = B::new();
    let x = buf(&b, 1, Shape::new(5, 7), -1.0, 1.0);
    let w = buf(&b, 2, Shape::new(3, 7), -1.0, 1.0);
    let bias = buf(&b, 3, Shape::new(1, 3), -1.0, 1.0);
    fd_check(
        "linear",
        vec![x, w, bias],
        |v| {
            B::new()
                .matmul(&v[0], false, &v[1], true, Some(&v[2]))
                .unwrap()
        },
        |v, dy| {
            let b = B::new();
            vec![
                b.matmul(dy, false, &v[1], false, None).unwrap(),
                b.matmul(dy, true, &v[0], false, None).unwrap(),
                b.reduce(Reduce::ColSums, dy).unwrap(),
            ]
        },
    );
}

#[test]
fn matmul_backward_every_transpose() {
    let b = B::new();
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let a_shape = if ta {
            Shape::new(4, 3)
        } else {
            Shape::new(3, 4)
        };
        let b_shape = if tb {
            Shape::new(5, 4)
        } else {
            Shape::new(4, 5)
        };
        let a = buf(&b, 10, a_shape, -1.0, 1.0);
        let bb = buf(&b, 11, b_shape, -1.0, 1.0);
        fd_check(
            &format!("matmul ta={ta} tb={tb}"),
            vec![a, bb],
            move |v| B::new().matmul(&v[0], ta, &v[1], tb, None).unwrap(),
            move |v, dy| {
                let b = B::new();
                // C = op(A) op(B): dop(A) = dC op(B)^T, dop(B) = op(A)^T dC, transposed back.
                let da = if ta {
                    b.matmul(&v[1], tb, dy, true, None).unwrap()
                } else {
                    b.matmul(dy, false, &v[1], !tb, None).unwrap()
                };
                let db = if tb {
                    b.matmul(dy, true, &v[0], ta, None).unwrap()
                } else {
                    b.matmul(&v[0], !ta, dy, false, None).unwrap()
                };
                vec![da, db]
            },
        );
    }
}

#[test]
fn every_unary_backward() {
    let ops: [(Unary, f64, f64); 14] = [
        (Unary::Relu, -1.0, 1.0),
        (Unary::Tanh, -2.0, 2.0),
        (Unary::Abs, -1.0, 1.0),
        (Unary::Sign, -1.0, 1.0),
        (Unary::Exp, -2.0, 2.0),
        (Unary::Log, 0.2, 3.0),
        (Unary::Softplus, -30.0, 30.0),
        (Unary::LogCosh, -4.0, 4.0),
        (Unary::Square, -2.0, 2.0),
        (Unary::Sigmoid, -6.0, 6.0),
        (Unary::Sqrt, 0.2, 3.0),
        (Unary::Scale(-1.7), -1.0, 1.0),
        (Unary::AddScalar(0.3), -1.0, 1.0),
        (Unary::Clamp { lo: -0.5, hi: 0.25 }, -1.0, 1.0),
    ];
    let b = B::new();
    for (i, (op, lo, hi)) in ops.into_iter().enumerate() {
        let x = buf(&b, 100 + i as u64, Shape::new(3, 5), lo, hi);
        fd_check(
            &format!("{op:?}"),
            vec![x],
            move |v| B::new().unary(op, &v[0]).unwrap(),
            move |v, dy| vec![B::new().unary_bwd(op, &v[0], dy).unwrap()],
        );
    }
}

/// Sums a full-shape partial back to a broadcast operand's shape, as the tape does.
fn unbroadcast(b: &B, g: CpuBuf<f64>, to: Shape) -> CpuBuf<f64> {
    let from = b.shape(&g);
    match (to.rows == from.rows, to.cols == from.cols) {
        (true, true) => g,
        (true, false) => b.reduce(Reduce::RowSums, &g).unwrap(),
        (false, true) => b.reduce(Reduce::ColSums, &g).unwrap(),
        (false, false) => b.reduce(Reduce::All, &g).unwrap(),
    }
}

#[test]
fn every_binary_backward_with_every_broadcast() {
    let b = B::new();
    let a_shape = Shape::new(4, 3);
    for (i, op) in [
        Binary::Add,
        Binary::Sub,
        Binary::Mul,
        Binary::Div,
        Binary::Bce,
    ]
    .into_iter()
    .enumerate()
    {
        for (j, b_shape) in [a_shape, Shape::new(1, 3), Shape::new(4, 1), Shape::scalar()]
            .into_iter()
            .enumerate()
        {
            let (alo, ahi, blo, bhi) = match op {
                Binary::Div => (-1.0, 1.0, 0.5, 2.0),
                Binary::Bce => (0.05, 0.95, 0.0, 1.0),
                _ => (-1.0, 1.0, -1.0, 1.0),
            };
            let x = buf(&b, 200 + 10 * i as u64 + j as u64, a_shape, alo, ahi);
            let y = buf(&b, 300 + 10 * i as u64 + j as u64, b_shape, blo, bhi);
            fd_check(
                &format!("{op:?} with b {b_shape}"),
                vec![x, y],
                move |v| B::new().binary(op, &v[0], &v[1]).unwrap(),
                move |v, dy| {
                    let b = B::new();
                    let (da, db) = b.binary_bwd(op, &v[0], &v[1], dy).unwrap();
                    vec![da, unbroadcast(&b, db, b_shape)]
                },
            );
        }
    }
}

#[test]
fn bce_clamps_each_log_at_minus_100_like_pytorch() {
    let b = B::new();
    let p = b.upload(&[0.0, 1.0, 0.5], Shape::new(1, 3)).unwrap();
    let t = b.upload(&[1.0, 0.0, 1.0], Shape::new(1, 3)).unwrap();
    let y = b.download(&b.binary(Binary::Bce, &p, &t).unwrap()).unwrap();
    assert_close(
        "bce",
        &y,
        &[100.0, 100.0, std::f64::consts::LN_2],
        1e-12,
        1e-12,
    );
}

#[test]
fn row_normalize_backward() {
    let b = B::new();
    let x = buf(&b, 7, Shape::new(4, 6), -1.0, 1.0);
    fd_check(
        "row_normalize",
        vec![x],
        |v| B::new().row_normalize(&v[0], 1e-12).unwrap(),
        |v, dy| vec![B::new().row_normalize_bwd(&v[0], dy, 1e-12).unwrap()],
    );
}

#[test]
fn row_normalize_below_eps_is_linear() {
    // A row whose norm is below eps is divided by eps: the backward is dy / eps there.
    let b = B::new();
    let mut data = random_vec(8, 12, -1.0, 1.0);
    for v in &mut data[6..] {
        *v *= 0.01;
    }
    let x = b.upload(&data, Shape::new(2, 6)).unwrap();
    fd_check(
        "row_normalize tiny row",
        vec![x],
        |v| B::new().row_normalize(&v[0], 0.1).unwrap(),
        |v, dy| vec![B::new().row_normalize_bwd(&v[0], dy, 0.1).unwrap()],
    );
}

#[test]
fn column_slice_backward_is_prefix_add() {
    let b = B::new();
    for (start, len) in [(0, 8), (0, 13), (3, 5), (0, 16)] {
        let x = buf(&b, 9, Shape::new(3, 16), -1.0, 1.0);
        fd_check(
            &format!("slice {start}+{len}"),
            vec![x],
            move |v| B::new().slice_cols(&v[0], start, len).unwrap(),
            move |_, dy| {
                let b = B::new();
                let mut g = b.zeros(Shape::new(3, 16)).unwrap();
                b.add_prefix_scaled(&mut g, start, dy, 1.0).unwrap();
                vec![g]
            },
        );
    }
}

#[test]
fn gather_backward_is_scatter_add_with_duplicates() {
    let b = B::new();
    let table = buf(&b, 12, Shape::new(5, 4), -1.0, 1.0);
    let idx = b.upload_idx(&[3, 0, 3, 4, 3, 1]).unwrap();
    let fwd_idx = idx.clone();
    fd_check(
        "gather_rows",
        vec![table],
        move |v| B::new().gather_rows(&v[0], &fwd_idx).unwrap(),
        move |_, dy| vec![B::new().scatter_add_rows(dy, &idx, 5).unwrap()],
    );
}

#[test]
fn reductions_backward_is_broadcast() {
    let b = B::new();
    for op in [Reduce::All, Reduce::RowSums, Reduce::ColSums] {
        let x = buf(&b, 13, Shape::new(4, 5), -1.0, 1.0);
        fd_check(
            &format!("{op:?}"),
            vec![x],
            move |v| B::new().reduce(op, &v[0]).unwrap(),
            |v, dy| {
                let b = B::new();
                let ones = b.fill(b.shape(&v[0]), 1.0).unwrap();
                vec![b.binary(Binary::Mul, &ones, dy).unwrap()]
            },
        );
    }
}

#[test]
fn matmul_is_bit_identical_across_thread_counts() {
    let b = CpuBackend::<f32>::new();
    let random_f32 = |seed: u64, shape: Shape, scale: f64| {
        let data: Vec<f32> = random_vec(seed, shape.len(), -scale, scale)
            .iter()
            .map(|&v| v as f32)
            .collect();
        b.upload(&data, shape).unwrap()
    };
    let x = random_f32(20, Shape::new(64, 784), 1.0);
    let w = random_f32(21, Shape::new(1024, 784), 0.1);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            b.download(&b.matmul(&x, false, &w, true, None).unwrap())
                .unwrap()
        })
    };
    assert_eq!(run(1), run(3));
}

/// The parallel tiles of `C` (square ones, or a single square cut in two) give the numbers of
/// one gemm call over the whole product, bit for bit.
#[test]
fn matmul_tiles_equal_one_whole_product() {
    let b = CpuBackend::<f32>::new();
    // (m, k, n): the hash layer's forward (one square, cut in two), odd sizes, many squares.
    for (i, &(m, k, n)) in [
        (64, 1024, 128),
        (200, 300, 37),
        (37, 300, 200),
        (300, 70, 513),
        (5, 3, 7),
    ]
    .iter()
    .enumerate()
    {
        let a: Vec<f32> = random_vec(30 + i as u64, m * k, -1.0, 1.0)
            .iter()
            .map(|&v| v as f32)
            .collect();
        let w: Vec<f32> = random_vec(40 + i as u64, k * n, -1.0, 1.0)
            .iter()
            .map(|&v| v as f32)
            .collect();
        let mut whole = vec![0.0f32; m * n];
        // SAFETY: row-major m x k, k x n and m x n buffers of exactly these sizes.
        unsafe {
            <f32 as nhl_kernels::Real>::gemm(
                m,
                k,
                n,
                a.as_ptr(),
                k as isize,
                1,
                w.as_ptr(),
                n as isize,
                1,
                whole.as_mut_ptr(),
                n as isize,
                1,
            )
        };
        let got = b
            .matmul(
                &b.upload(&a, Shape::new(m, k)).unwrap(),
                false,
                &b.upload(&w, Shape::new(k, n)).unwrap(),
                false,
                None,
            )
            .unwrap();
        let got = b.download(&got).unwrap();
        assert!(
            got.iter()
                .zip(&whole)
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "{m} x {k} x {n}"
        );
    }
}

#[test]
fn shape_errors_are_typed_not_panics() {
    let b = B::new();
    let a = b.zeros(Shape::new(2, 3)).unwrap();
    let c = b.zeros(Shape::new(2, 4)).unwrap();
    assert!(matches!(
        b.matmul(&a, false, &c, false, None),
        Err(nhl_kernels::KernelError::Shape { .. })
    ));
    assert!(matches!(
        b.binary(Binary::Add, &a, &c),
        Err(nhl_kernels::KernelError::Shape { .. })
    ));
    let idx = b.upload_idx(&[0, 2]).unwrap();
    assert!(matches!(
        b.gather_rows(&a, &idx),
        Err(nhl_kernels::KernelError::Index {
            index: 2,
            rows: 2,
            ..
        })
    ));
    assert!(matches!(
        b.upload(&[1.0], Shape::new(2, 2)),
        Err(nhl_kernels::KernelError::Length { .. })
    ));
}

/// Central differences of a scalar function of `x`, one element at a time.
fn numeric_grad(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    (0..x.len())
        .map(|i| {
            let mut p = x.to_vec();
            p[i] += H;
            let mut m = x.to_vec();
            m[i] -= H;
            (f(&p) - f(&m)) / (2.0 * H)
        })
        .collect()
}

/// The `n x width` CSQ case: outputs (two saturated at +-30, where both logs of the BCE hit the
/// -100 floor), a 5-item target table and batch indices with a duplicate.
fn csq_case(n: usize, width: usize, bits: usize) -> (Vec<f64>, Vec<f64>, Vec<u32>) {
    let mut u = random_vec(31, n * width, -2.5, 2.5);
    u[1] = 30.0;
    if n > 1 {
        u[width + 2] = -30.0;
    }
    let targets = random_vec(32, 5 * bits, -1.0, 1.0)
        .into_iter()
        .map(|v| if v < 0.0 { -1.0 } else { 1.0 })
        .collect();
    let idx = (0..n as u32).map(|i| (i * 3 + 1) % 5).collect();
    (u, targets, idx)
}

/// CSQ written out element by element (docs/METHOD.md 5.1), in f64.
fn csq_by_hand(u: &[f64], width: usize, bits: usize, targets: &[f64], idx: &[u32]) -> f64 {
    let n = idx.len();
    let mut total = 0.0;
    for (r, &item) in idx.iter().enumerate() {
        for c in 0..bits {
            let v = u[r * width + c].tanh();
            let (p, t) = (
                (v + 1.0) / 2.0,
                (targets[item as usize * bits + c] + 1.0) / 2.0,
            );
            let bce = -(t * p.ln().max(-100.0) + (1.0 - t) * (1.0 - p).ln().max(-100.0));
            total += bce + 1e-3 * (v.abs() - 1.0).powi(2);
        }
    }
    total / (n * bits) as f64
}

#[test]
fn csq_objective_value_and_gradient() {
    let b = B::new();
    for (n, width, bits) in [(1, 3, 3), (4, 7, 5), (6, 9, 9)] {
        let (u, targets, idx) = csq_case(n, width, bits);
        let tb = b.upload(&targets, Shape::new(5, bits)).unwrap();
        let ib = b.upload_idx(&idx).unwrap();
        let objective = |u: &[f64]| {
            let ub = b.upload(u, Shape::new(n, width)).unwrap();
            b.csq_objective(&ub, bits, &tb, &ib, 1e-3).unwrap()
        };
        let (loss, grad) = objective(&u);
        let what = format!("csq {n}x{width} bits {bits}");
        assert_close(
            &format!("{what} value"),
            loss.as_slice(),
            &[csq_by_hand(&u, width, bits, &targets, &idx)],
            1e-12,
            1e-12,
        );
        // The gradient of the prefix, padded: the columns past `bits` do not enter.
        let mut padded = vec![0.0; n * width];
        for (r, row) in grad.as_slice().chunks(bits).enumerate() {
            padded[r * width..r * width + bits].copy_from_slice(row);
        }
        let numeric = numeric_grad(&u, |x| objective(x).0.as_slice()[0]);
        assert_close(&format!("{what} grad"), &padded, &numeric, ATOL, RTOL);
    }
}

/// `(1/n^2) sum (rownorm(T T^T) - rownorm(S S^T))^2` with the teacher Gram given, in f64.
fn sp_by_hand(s: &[f64], bits: usize, teacher_gram: &[f64], n: usize, eps: f64) -> f64 {
    let rownorm = |g: &mut [f64]| {
        for row in g.chunks_mut(n) {
            let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt().max(eps);
            row.iter_mut().for_each(|v| *v /= norm);
        }
    };
    let mut a = vec![0.0; n * n];
    for p in 0..n {
        for q in 0..n {
            a[p * n + q] = (0..bits).map(|c| s[p * bits + c] * s[q * bits + c]).sum();
        }
    }
    let mut t = teacher_gram.to_vec();
    rownorm(&mut a);
    rownorm(&mut t);
    a.iter().zip(&t).map(|(x, y)| (y - x).powi(2)).sum::<f64>() / (n * n) as f64
}

#[test]
fn sp_distill_value_and_student_gradient() {
    let b = B::new();
    // (n, width, student, teacher, eps, tiny row): the last case scales one row so that its
    // Gram row falls below eps (the linear branch of the normalisation).
    for (n, width, bs, bt, eps, tiny) in [
        (1, 2, 1, 2, 1e-12, false),
        (5, 9, 3, 7, 1e-12, false),
        (7, 8, 8, 8, 1e-12, false),
        (6, 11, 4, 11, 0.0625, true),
    ] {
        let mut u = random_vec(40 + n as u64, n * width, -1.0, 1.0);
        if tiny {
            u[width..2 * width].iter_mut().for_each(|v| *v *= 0.01);
        }
        let ub = b.upload(&u, Shape::new(n, width)).unwrap();
        let (loss, grad) = b.sp_distill(&ub, bs, bt, eps as f32).unwrap();
        let prefix = |u: &[f64], w: usize| -> Vec<f64> {
            u.chunks(width).flat_map(|r| r[..w].to_vec()).collect()
        };
        let t = prefix(&u, bt);
        let mut gt = vec![0.0; n * n];
        for p in 0..n {
            for q in 0..n {
                gt[p * n + q] = (0..bt).map(|c| t[p * bt + c] * t[q * bt + c]).sum();
            }
        }
        let s = prefix(&u, bs);
        let what = format!("sp {n}x{width} student {bs} teacher {bt} eps {eps}");
        assert_close(
            &format!("{what} value"),
            loss.as_slice(),
            &[sp_by_hand(&s, bs, &gt, n, eps)],
            1e-14,
            1e-12,
        );
        // The teacher is detached: the gradient is that of the student with the teacher fixed.
        let numeric = numeric_grad(&s, |x| sp_by_hand(x, bs, &gt, n, eps));
        assert_close(
            &format!("{what} grad"),
            grad.as_slice(),
            &numeric,
            ATOL,
            RTOL,
        );
    }
}

#[test]
fn fused_bce_equals_the_elementwise_rules() {
    use nhl_kernels::cpu::scalar;
    let ps = [0.0, 1e-30, 0.2, 0.5, 0.999_999, 1.0];
    let ts = [0.0, 1.0, 0.3];
    for &p in &ps {
        for &t in &ts {
            // f64: the same numbers (a zero may differ in sign only).
            let (value, grad) = scalar::bce_and_grad(p, t);
            let want = (
                scalar::binary(Binary::Bce, p, t),
                scalar::binary_grad(Binary::Bce, p, t).0,
            );
            assert!(
                value == want.0 && grad == want.1,
                "p {p} t {t}: {:?} vs {want:?}",
                (value, grad)
            );
            // f32: the vectorisable logs agree with the library's to a few ulp.
            let (p32, t32) = (p as f32, t as f32);
            let (value, grad) = scalar::bce_and_grad(p32, t32);
            let want = (
                scalar::binary(Binary::Bce, p32, t32),
                scalar::binary_grad(Binary::Bce, p32, t32).0,
            );
            let close = |a: f32, b: f32| a == b || (a - b).abs() <= 4.0 * f32::EPSILON * b.abs();
            assert!(
                close(value, want.0) && close(grad, want.1),
                "f32 p {p} t {t}: {:?} vs {want:?}",
                (value, grad)
            );
        }
    }
}

/// Each binary op and its backward rule, forward and backward, give exactly the scalar rule's
/// value at every element: on one shape past the parallel threshold (the rows split across
/// threads), with an equal-shaped, a row, a column and a scalar operand.
#[test]
fn binary_ops_apply_the_scalar_rule_at_every_element() {
    use nhl_kernels::cpu::scalar;
    let b = B::new();
    let shape = Shape::new(300, 131);
    let a = buf(&b, 71, shape, 0.05, 0.95);
    let dy = buf(&b, 72, shape, -1.0, 1.0);
    for (k, bshape) in [
        shape,
        Shape::new(1, 131),
        Shape::new(300, 1),
        Shape::scalar(),
    ]
    .into_iter()
    .enumerate()
    {
        let other = buf(&b, 73 + k as u64, bshape, 0.1, 0.9);
        let at = |r: usize, c: usize| {
            let r = if bshape.rows == 1 { 0 } else { r };
            let c = if bshape.cols == 1 { 0 } else { c };
            other.as_slice()[r * bshape.cols + c]
        };
        for op in [
            Binary::Add,
            Binary::Sub,
            Binary::Mul,
            Binary::Div,
            Binary::Bce,
        ] {
            let y = b.binary(op, &a, &other).unwrap();
            let (da, db) = b.binary_bwd(op, &a, &other, &dy).unwrap();
            for i in 0..shape.len() {
                let (r, c) = (i / shape.cols, i % shape.cols);
                let (x, z) = (a.as_slice()[i], at(r, c));
                let (ga, gb) = scalar::binary_grad(op, x, z);
                let d = dy.as_slice()[i];
                let what = format!("{op:?} with {bshape} at {i}");
                assert_eq!(
                    y.as_slice()[i].to_bits(),
                    scalar::binary(op, x, z).to_bits(),
                    "{what}"
                );
                assert_eq!(
                    da.as_slice()[i].to_bits(),
                    (d * ga).to_bits(),
                    "{what} d/da"
                );
                assert_eq!(
                    db.as_slice()[i].to_bits(),
                    (d * gb).to_bits(),
                    "{what} d/db"
                );
            }
        }
    }
}
