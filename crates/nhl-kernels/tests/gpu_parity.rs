//! One test body per op, run on `CpuBackend<f32>` and on the GPU backend, each compared with the
//! `CpuBackend<f64>` reference on seeded random inputs (never zeros) with explicit absolute and
//! relative tolerances. GPU runs skip with a notice when there is no adapter, and fail then when
//! `NHL_REQUIRE_GPU=1`.

mod common;

use anyhow::{ensure, Result};
use common::{data, down, ref_down, reference, up, Ref};
use nhl_kernels::gpu::{self, AdapterPolicy, GpuBackend};
use nhl_kernels::testing::assert_close;
use nhl_kernels::{AdamStep, Backend, Binary, HashingOps, KernelError, Reduce, Shape, Unary};

/// Shapes of one element, odd sizes, and sizes spanning many 256-wide workgroups.
const SHAPES: [Shape; 4] = [
    Shape::new(1, 1),
    Shape::new(7, 13),
    Shape::new(65, 131),
    Shape::new(3, 1000),
];

fn check_matmul<B: Backend<Elem = f32>>(b: &B) -> Result<()> {
    let r = Ref::new();
    let mut cases = vec![(1, 1, 1), (7, 13, 5), (65, 131, 67), (130, 17, 3)];
    let mut seed = 100;
    for &(ta, tb) in &[(false, false), (false, true), (true, false), (true, true)] {
        for with_bias in [false, true] {
            for &(m, k, n) in &cases {
                seed += 1;
                let sa = if ta {
                    Shape::new(k, m)
                } else {
                    Shape::new(m, k)
                };
                let sb = if tb {
                    Shape::new(n, k)
                } else {
                    Shape::new(k, n)
                };
                let (av, bv, cv) = (
                    data(seed, sa, -1.0, 1.0),
                    data(seed + 1000, sb, -1.0, 1.0),
                    data(seed + 2000, Shape::new(1, n), -1.0, 1.0),
                );
                let (a, bb, bias) = (
                    up(b, &av, sa)?,
                    up(b, &bv, sb)?,
                    up(b, &cv, Shape::new(1, n))?,
                );
                let got = b.matmul(&a, ta, &bb, tb, with_bias.then_some(&bias))?;
                ensure!(
                    b.shape(&got) == Shape::new(m, n),
                    "shape {:?}",
                    b.shape(&got)
                );
                let (ra, rb, rbias) = (
                    reference(&av, sa)?,
                    reference(&bv, sb)?,
                    reference(&cv, Shape::new(1, n))?,
                );
                let want = r.matmul(&ra, ta, &rb, tb, with_bias.then_some(&rbias))?;
                let what = format!("matmul {m}x{k}x{n} trans_a={ta} trans_b={tb} bias={with_bias}");
                assert_close(
                    &what,
                    &down(b, &got)?,
                    &ref_down(&want)?,
                    2e-6 * k as f64,
                    1e-4,
                );
            }
        }
    }
    // The nested projection at training size: X (64x784) W^T (1024x784) + b.
    cases.clear();
    let (sx, sw, sbias) = (
        Shape::new(64, 784),
        Shape::new(1024, 784),
        Shape::new(1, 1024),
    );
    let (xv, wv, bv) = (
        data(1, sx, -1.0, 1.0),
        data(2, sw, -0.1, 0.1),
        data(3, sbias, -1.0, 1.0),
    );
    let got = b.matmul(
        &up(b, &xv, sx)?,
        false,
        &up(b, &wv, sw)?,
        true,
        Some(&up(b, &bv, sbias)?),
    )?;
    let want = r.matmul(
        &reference(&xv, sx)?,
        false,
        &reference(&wv, sw)?,
        true,
        Some(&reference(&bv, sbias)?),
    )?;
    assert_close(
        "matmul 64x784 by 1024x784^T + b",
        &down(b, &got)?,
        &ref_down(&want)?,
        1e-4,
        1e-4,
    );
    Ok(())
}

fn unary_ops() -> Vec<(Unary, f64, f64)> {
    vec![
        (Unary::Relu, -3.0, 3.0),
        (Unary::Tanh, -4.0, 4.0),
        (Unary::Abs, -3.0, 3.0),
        (Unary::Sign, -3.0, 3.0),
        (Unary::Exp, -4.0, 4.0),
        (Unary::Log, 0.01, 5.0),
        (Unary::Softplus, -20.0, 20.0),
        (Unary::LogCosh, -20.0, 20.0),
        (Unary::Square, -3.0, 3.0),
        (Unary::Sigmoid, -20.0, 20.0),
        (Unary::Sqrt, 0.01, 5.0),
        (Unary::Scale(1.7), -3.0, 3.0),
        (Unary::AddScalar(-0.3), -3.0, 3.0),
        (Unary::Clamp { lo: -0.5, hi: 0.7 }, -2.0, 2.0),
    ]
}

fn check_unary<B: Backend<Elem = f32>>(b: &B) -> Result<()> {
    let r = Ref::new();
    for (i, (op, lo, hi)) in unary_ops().into_iter().enumerate() {
        for (j, shape) in SHAPES.into_iter().enumerate() {
            let seed = 10 * i as u64 + j as u64;
            let xv = data(seed, shape, lo, hi);
            let dyv = data(seed + 500, shape, -1.0, 1.0);
            let (x, dy) = (up(b, &xv, shape)?, up(b, &dyv, shape)?);
            let (rx, rdy) = (reference(&xv, shape)?, reference(&dyv, shape)?);
            let what = format!("{op:?} on {shape}");
            let y = b.unary(op, &x)?;
            assert_close(
                &what,
                &down(b, &y)?,
                &ref_down(&r.unary(op, &rx)?)?,
                2e-6,
                2e-5,
            );
            let dx = b.unary_bwd(op, &x, &dy)?;
            let want = ref_down(&r.unary_bwd(op, &rx, &rdy)?)?;
            assert_close(
                &format!("{what} backward"),
                &down(b, &dx)?,
                &want,
                2e-6,
                2e-5,
            );
        }
    }
    Ok(())
}

fn check_binary<B: Backend<Elem = f32>>(b: &B) -> Result<()> {
    let r = Ref::new();
    let ops = [
        (Binary::Add, (-2.0, 2.0), (-2.0, 2.0)),
        (Binary::Sub, (-2.0, 2.0), (-2.0, 2.0)),
        (Binary::Mul, (-2.0, 2.0), (-2.0, 2.0)),
        (Binary::Div, (-2.0, 2.0), (0.5, 2.0)),
        (Binary::Bce, (0.01, 0.99), (0.0, 1.0)),
    ];
    let mut seed = 300;
    for (op, (alo, ahi), (blo, bhi)) in ops {
        for shape in SHAPES {
            let forms = [
                ("same", shape),
                ("row", Shape::new(1, shape.cols)),
                ("column", Shape::new(shape.rows, 1)),
                ("scalar", Shape::scalar()),
            ];
            for (form, bshape) in forms {
                seed += 1;
                let av = data(seed, shape, alo, ahi);
                let bv = data(seed + 1, bshape, blo, bhi);
                let dyv = data(seed + 2, shape, -1.0, 1.0);
                let (a, bb, dy) = (up(b, &av, shape)?, up(b, &bv, bshape)?, up(b, &dyv, shape)?);
                let (ra, rb, rdy) = (
                    reference(&av, shape)?,
                    reference(&bv, bshape)?,
                    reference(&dyv, shape)?,
                );
                let what = format!("{op:?} {shape} with {form} {bshape}");
                let y = b.binary(op, &a, &bb)?;
                assert_close(
                    &what,
                    &down(b, &y)?,
                    &ref_down(&r.binary(op, &ra, &rb)?)?,
                    2e-6,
                    2e-5,
                );
                let (da, db) = b.binary_bwd(op, &a, &bb, &dy)?;
                let (wa, wb) = r.binary_bwd(op, &ra, &rb, &rdy)?;
                assert_close(
                    &format!("{what} d/da"),
                    &down(b, &da)?,
                    &ref_down(&wa)?,
                    2e-6,
                    2e-5,
                );
                assert_close(
                    &format!("{what} d/db"),
                    &down(b, &db)?,
                    &ref_down(&wb)?,
                    2e-6,
                    2e-5,
                );
            }
        }
    }
    // BCE at the clamp: probabilities of exactly 0 and 1 hit the -100 floor of each log.
    let shape = Shape::new(2, 3);
    let av = [0.0, 1.0, 0.5, 0.0, 1.0, 0.25];
    let bv = [0.0, 1.0, 0.3, 1.0, 0.0, 0.75];
    let dyv = [1.0, -0.5, 2.0, 0.7, 1.3, -1.1];
    let (a, bb, dy) = (up(b, &av, shape)?, up(b, &bv, shape)?, up(b, &dyv, shape)?);
    let (ra, rb, rdy) = (
        reference(&av, shape)?,
        reference(&bv, shape)?,
        reference(&dyv, shape)?,
    );
    let y = b.binary(Binary::Bce, &a, &bb)?;
    assert_close(
        "bce clamp",
        &down(b, &y)?,
        &ref_down(&r.binary(Binary::Bce, &ra, &rb)?)?,
        1e-5,
        1e-5,
    );
    let (da, db) = b.binary_bwd(Binary::Bce, &a, &bb, &dy)?;
    let (wa, wb) = r.binary_bwd(Binary::Bce, &ra, &rb, &rdy)?;
    assert_close(
        "bce clamp d/da",
        &down(b, &da)?,
        &ref_down(&wa)?,
        1e-5,
        1e-5,
    );
    assert_close(
        "bce clamp d/db",
        &down(b, &db)?,
        &ref_down(&wb)?,
        1e-5,
        1e-5,
    );
    Ok(())
}

fn check_reduce<B: Backend<Elem = f32>>(b: &B) -> Result<()> {
    let r = Ref::new();
    // The last shape takes the two-pass path of the full sum.
    let shapes = SHAPES
        .into_iter()
        .chain([Shape::new(1000, 3), Shape::new(300, 1000)]);
    for (i, shape) in shapes.enumerate() {
        let xv = data(400 + i as u64, shape, -1.0, 1.0);
        let (x, rx) = (up(b, &xv, shape)?, reference(&xv, shape)?);
        for op in [Reduce::All, Reduce::RowSums, Reduce::ColSums] {
            let got = b.reduce(op, &x)?;
            let want = r.reduce(op, &rx)?;
            ensure!(
                b.shape(&got) == r.shape(&want),
                "{op:?} shape {:?}",
                b.shape(&got)
            );
            let atol = 1e-6 * shape.len() as f64;
            assert_close(
                &format!("{op:?} of {shape}"),
                &down(b, &got)?,
                &ref_down(&want)?,
                atol,
                1e-5,
            );
        }
    }
    Ok(())
}

fn check_row_normalize<B: Backend<Elem = f32>>(b: &B) -> Result<()> {
    let r = Ref::new();
    let eps = 1e-3;
    for (i, shape) in SHAPES.into_iter().chain([Shape::new(9, 300)]).enumerate() {
        let mut xv = data(500 + i as u64, shape, -1.0, 1.0);
        if shape.rows > 1 {
            // A zero row takes the eps branch.
            xv[shape.cols..2 * shape.cols].fill(0.0);
        }
        let dyv = data(600 + i as u64, shape, -1.0, 1.0);
        let (x, dy) = (up(b, &xv, shape)?, up(b, &dyv, shape)?);
        let (rx, rdy) = (reference(&xv, shape)?, reference(&dyv, shape)?);
        let y = b.row_normalize(&x, eps as f32)?;
        let want = ref_down(&r.row_normalize(&rx, eps as f32)?)?;
        assert_close(
            &format!("row_normalize {shape}"),
            &down(b, &y)?,
            &want,
            1e-6,
            1e-5,
        );
        let dx = b.row_normalize_bwd(&x, &dy, eps as f32)?;
        let want = ref_down(&r.row_normalize_bwd(&rx, &rdy, eps as f32)?)?;
        assert_close(
            &format!("row_normalize_bwd {shape}"),
            &down(b, &dx)?,
            &want,
            1e-5,
            1e-4,
        );
    }
    Ok(())
}

fn check_slice_and_prefix<B: HashingOps<Elem = f32>>(b: &B) -> Result<()> {
    let r = Ref::new();
    let mut seed = 700;
    for shape in [Shape::new(5, 128), Shape::new(7, 131), Shape::new(1, 1)] {
        let mut spans: Vec<(usize, usize)> = [8, 16, 32, 64, 128]
            .into_iter()
            .filter(|&l| l <= shape.cols)
            .map(|l| (0, l))
            .collect();
        spans.extend([(0, 1), (shape.cols - 1, 1)]);
        if shape.cols > 13 {
            spans.extend([(3, 13), (shape.cols - 13, 13)]);
        }
        for (start, len) in spans {
            seed += 1;
            let xv = data(seed, shape, -1.0, 1.0);
            let (x, rx) = (up(b, &xv, shape)?, reference(&xv, shape)?);
            let what = format!("columns {start}..+{len} of {shape}");
            let got = b.slice_cols(&x, start, len)?;
            let want = r.slice_cols(&rx, start, len)?;
            assert_close(
                &format!("slice {what}"),
                &down(b, &got)?,
                &ref_down(&want)?,
                0.0,
                0.0,
            );

            let pshape = Shape::new(shape.rows, len);
            let pv = data(seed + 50, pshape, -1.0, 1.0);
            let (p, rp) = (up(b, &pv, pshape)?, reference(&pv, pshape)?);
            let (mut out, mut rout) = (x.clone(), Ref::new().upload(&xv, shape)?);
            drop(x);
            b.add_prefix_scaled(&mut out, start, &p, 0.37)?;
            r.add_prefix_scaled(&mut rout, start, &rp, 0.37)?;
            assert_close(
                &format!("add_prefix_scaled {what}"),
                &down(b, &out)?,
                &ref_down(&rout)?,
                1e-6,
                1e-6,
            );
            // The same add with its scale read from a weight row on the device.
            let wv = [0.5, -1.25, 0.37];
            let wshape = Shape::new(1, wv.len());
            let (w, rw) = (up(b, &wv, wshape)?, reference(&wv, wshape)?);
            for index in [1, 2] {
                b.add_prefix_weighted(&mut out, start, &p, &w, index)?;
                r.add_prefix_weighted(&mut rout, start, &rp, &rw, index)?;
            }
            assert_close(
                &format!("add_prefix_weighted {what}"),
                &down(b, &out)?,
                &ref_down(&rout)?,
                1e-6,
                1e-6,
            );
            ensure!(matches!(
                b.add_prefix_weighted(&mut out, start, &p, &w, 3),
                Err(KernelError::Shape { .. })
            ));
        }
    }
    Ok(())
}

fn check_rows_by_index<B: Backend<Elem = f32>>(b: &B) -> Result<()> {
    let r = Ref::new();
    let mut rng = nhl_kernels::rng::SplitMix64::new(9);
    let random_idx: Vec<u32> = (0..300).map(|_| rng.below(50) as u32).collect();
    let cases: [(usize, usize, Vec<u32>); 3] = [
        (10, 7, vec![3, 1, 3, 0, 9, 3, 1]),
        (1, 1, vec![0]),
        (50, 33, random_idx),
    ];
    for (i, (rows, cols, idx)) in cases.into_iter().enumerate() {
        let seed = 800 + 10 * i as u64;
        let ts = Shape::new(rows, cols);
        let ss = Shape::new(idx.len(), cols);
        let (tv, sv) = (data(seed, ts, -1.0, 1.0), data(seed + 1, ss, -1.0, 1.0));
        let (bi, ri) = (b.upload_idx(&idx)?, r.upload_idx(&idx)?);
        ensure!(b.idx_len(&bi) == idx.len());
        let (t, rt) = (up(b, &tv, ts)?, reference(&tv, ts)?);
        let (s, rs) = (up(b, &sv, ss)?, reference(&sv, ss)?);
        let what = format!("{} indices into {ts}", idx.len());

        let got = b.gather_rows(&t, &bi)?;
        assert_close(
            &format!("gather {what}"),
            &down(b, &got)?,
            &ref_down(&r.gather_rows(&rt, &ri)?)?,
            0.0,
            0.0,
        );

        let got = b.scatter_add_rows(&s, &bi, rows)?;
        let want = r.scatter_add_rows(&rs, &ri, rows)?;
        assert_close(
            &format!("scatter_add {what}"),
            &down(b, &got)?,
            &ref_down(&want)?,
            1e-6,
            1e-6,
        );

        let (mut t, mut rt) = (t, rt);
        b.set_rows(&mut t, &bi, &s)?;
        r.set_rows(&mut rt, &ri, &rs)?;
        assert_close(
            &format!("set_rows {what}"),
            &down(b, &t)?,
            &ref_down(&rt)?,
            0.0,
            0.0,
        );
    }
    Ok(())
}

fn check_adam<B: Backend<Elem = f32>>(b: &B) -> Result<()> {
    let r = Ref::new();
    for (i, shape) in SHAPES.into_iter().enumerate() {
        let seed = 900 + 10 * i as u64;
        let (pv, mv, vv) = (
            data(seed, shape, -1.0, 1.0),
            data(seed + 1, shape, -0.1, 0.1),
            data(seed + 2, shape, 1e-3, 1e-2),
        );
        let (mut p, mut m, mut v) = (up(b, &pv, shape)?, up(b, &mv, shape)?, up(b, &vv, shape)?);
        let (mut rp, mut rm, mut rv) = (
            reference(&pv, shape)?,
            reference(&mv, shape)?,
            reference(&vv, shape)?,
        );
        let (beta1, beta2) = (0.9f32, 0.999f32);
        for t in 1..=5 {
            let gv = data(seed + 3 + t as u64, shape, -1.0, 1.0);
            let step = AdamStep {
                lr: 1e-2,
                beta1,
                beta2,
                eps: 1e-8,
                weight_decay: 1e-2,
                bias1: 1.0 - beta1.powi(t),
                bias2: 1.0 - beta2.powi(t),
            };
            b.adam_step(&mut p, &up(b, &gv, shape)?, &mut m, &mut v, step)?;
            r.adam_step(&mut rp, &reference(&gv, shape)?, &mut rm, &mut rv, step)?;
        }
        let what = format!("adam 5 steps on {shape}");
        assert_close(
            &format!("{what}: param"),
            &down(b, &p)?,
            &ref_down(&rp)?,
            1e-5,
            1e-4,
        );
        assert_close(
            &format!("{what}: m"),
            &down(b, &m)?,
            &ref_down(&rm)?,
            1e-6,
            1e-5,
        );
        assert_close(
            &format!("{what}: v"),
            &down(b, &v)?,
            &ref_down(&rv)?,
            1e-7,
            1e-5,
        );
    }
    Ok(())
}

fn check_memory<B: Backend<Elem = f32>>(b: &B) -> Result<()> {
    let shape = Shape::new(7, 13);
    let xv = data(1000, shape, -1.0, 1.0);
    let mut x = up(b, &xv, shape)?;
    ensure!(down(b, &x)? == xv, "upload/download round trip");
    let yv = data(1001, shape, -1.0, 1.0);
    b.write(&mut x, &yv.iter().map(|&v| v as f32).collect::<Vec<_>>())?;
    ensure!(down(b, &x)? == yv, "write");
    ensure!(
        b.download(&b.fill(shape, 2.5)?)? == vec![2.5; shape.len()],
        "fill"
    );
    ensure!(
        b.download(&b.zeros(Shape::new(65, 131))?)?
            .iter()
            .all(|&v| v == 0.0),
        "zeros"
    );
    // More dispatches than one batch holds, each depending on the last.
    let mut acc = b.fill(Shape::new(3, 5), 0.0)?;
    for _ in 0..600 {
        acc = b.unary(Unary::AddScalar(0.5), &acc)?;
    }
    b.sync()?;
    ensure!(b.download(&acc)? == vec![300.0; 15], "a 600-op chain");
    Ok(())
}

fn check_errors<B: HashingOps<Elem = f32>>(b: &B) -> Result<()> {
    let x = up(b, &data(1, Shape::new(3, 4), -1.0, 1.0), Shape::new(3, 4))?;
    let y = up(b, &data(2, Shape::new(5, 6), -1.0, 1.0), Shape::new(5, 6))?;
    ensure!(matches!(
        b.matmul(&x, false, &y, false, None),
        Err(KernelError::Shape { .. })
    ));
    ensure!(matches!(
        b.matmul(&x, false, &x, true, Some(&y)),
        Err(KernelError::Shape { .. })
    ));
    ensure!(matches!(
        b.binary(Binary::Add, &x, &y),
        Err(KernelError::Shape { .. })
    ));
    ensure!(matches!(
        b.unary_bwd(Unary::Tanh, &x, &y),
        Err(KernelError::Shape { .. })
    ));
    ensure!(matches!(
        b.slice_cols(&x, 2, 3),
        Err(KernelError::Shape { .. })
    ));
    ensure!(matches!(
        b.upload(&[1.0; 5], Shape::new(2, 3)),
        Err(KernelError::Length { .. })
    ));
    let idx = b.upload_idx(&[0, 3, 1])?;
    ensure!(matches!(
        b.gather_rows(&x, &idx),
        Err(KernelError::Index {
            index: 3,
            rows: 3,
            ..
        })
    ));
    ensure!(matches!(
        b.scatter_add_rows(&x, &idx, 2),
        Err(KernelError::Index { .. })
    ));
    // Fused objectives: x is 3 x 4, y 5 x 6; idx = [0, 3, 1] has 3 rows and reaches row 3.
    let short = b.upload_idx(&[0, 1])?;
    for (what, result) in [
        ("csq bits > cols", b.csq_objective(&x, 5, &y, &idx, 1e-4)),
        ("csq no bits", b.csq_objective(&x, 0, &x, &idx, 1e-4)),
        ("csq target width", b.csq_objective(&x, 4, &y, &idx, 1e-4)),
        ("csq index count", b.csq_objective(&x, 4, &x, &short, 1e-4)),
        ("sp teacher < student", b.sp_distill(&x, 3, 2, 1e-12)),
        ("sp teacher > cols", b.sp_distill(&x, 2, 5, 1e-12)),
        ("sp no bits", b.sp_distill(&x, 0, 2, 1e-12)),
    ] {
        ensure!(
            matches!(result, Err(KernelError::Shape { .. })),
            "{what}: {result:?}"
        );
    }
    ensure!(matches!(
        b.csq_objective(&x, 4, &x, &idx, 1e-4),
        Err(KernelError::Index { .. })
    ));
    // The backend is still usable after refusing.
    ensure!(b.download(&b.reduce(Reduce::All, &b.fill(Shape::new(2, 2), 1.0)?)?)? == vec![4.0]);
    Ok(())
}

nhl_kernels::on_every_backend!(
    check_matmul,
    check_unary,
    check_binary,
    check_reduce,
    check_row_normalize,
    check_slice_and_prefix,
    check_rows_by_index,
    check_adam,
    check_memory,
    check_errors,
);

/// One training-like step: everything it allocates is dropped by the end.
fn step(
    b: &GpuBackend,
    w: &<GpuBackend as Backend>::Buf,
    idx: &<GpuBackend as Backend>::Idx,
) -> Result<f32> {
    let shape = Shape::new(16, 40);
    let x = up(b, &data(7, shape, -1.0, 1.0), shape)?;
    let h = b.matmul(&x, false, w, true, None)?;
    let t = b.unary(Unary::Tanh, &h)?;
    let n = b.row_normalize(&t, 1e-6)?;
    let g = b.gather_rows(&n, idx)?;
    let (da, _) = b.binary_bwd(Binary::Mul, &t, &h, &t)?;
    let dw = b.matmul(&da, true, &x, false, None)?;
    let s = b.reduce(
        Reduce::All,
        &b.binary(Binary::Add, &g, &b.slice_cols(&dw, 0, 24)?)?,
    )?;
    Ok(b.download(&s)?[0])
}

#[test]
fn gpu_repeated_steps_create_no_new_buffers() -> Result<()> {
    let Some(b) = gpu::test_backend() else {
        return Ok(());
    };
    let w = up(
        &b,
        &data(8, Shape::new(24, 40), -0.5, 0.5),
        Shape::new(24, 40),
    )?;
    let idx = b.upload_idx(&[
        0, 5, 5, 15, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 3, 2, 1, 0, 9,
    ])?;
    let first = step(&b, &w, &idx)?;
    let created = b.buffers_created();
    ensure!(created > 0);
    let second = step(&b, &w, &idx)?;
    ensure!(first == second, "the same step gave {first} then {second}");
    ensure!(
        b.buffers_created() == created,
        "the second step created {} buffers",
        b.buffers_created() - created
    );
    Ok(())
}

/// `prefix_pair_dots` keeps its block widths on the device: repeating it with the same lengths
/// (as every training step does) writes nothing, so it submits nothing and waits for nothing,
/// and the cached widths stay correct for a second set of lengths.
#[test]
fn gpu_pair_dots_reuse_their_widths_without_a_submit() -> Result<()> {
    let Some(b) = gpu::test_backend() else {
        return Ok(());
    };
    let r = Ref::new();
    for bits in [&[2usize, 3, 4][..], &[1, 8]] {
        let shape = Shape::new(6, bits.iter().sum());
        let dv = data(40, shape, -1.0, 1.0);
        let fv = data(41, shape, -1.0, 1.0);
        let (d, f) = (up(&b, &dv, shape)?, up(&b, &fv, shape)?);
        let want = ref_down(&r.prefix_pair_dots(
            &reference(&dv, shape)?,
            &reference(&fv, shape)?,
            bits,
        )?)?;
        let mut outs = vec![b.prefix_pair_dots(&d, &f, bits)?];
        let (submits, waits) = (b.submits(), b.host_waits());
        for _ in 0..3 {
            // A recorded op before each call: an upload would have to submit it first.
            let _ = b.unary(Unary::Scale(2.0), &d)?;
            outs.push(b.prefix_pair_dots(&d, &f, bits)?);
        }
        ensure!(
            b.submits() == submits && b.host_waits() == waits,
            "bits {bits:?}: repeated pair dots submitted {} times and waited {} times",
            b.submits() - submits,
            b.host_waits() - waits
        );
        for out in &outs {
            assert_close(
                &format!("bits {bits:?}"),
                &down(&b, out)?,
                &want,
                1e-5,
                1e-4,
            );
        }
    }
    Ok(())
}

#[test]
fn gpu_reports_its_adapter() {
    let Some(b) = gpu::test_backend() else { return };
    let report = b.adapter();
    assert!(b.name().contains(&report.name), "{}", b.name());
    assert!(
        !report.slug().is_empty() && !report.slug().contains(' '),
        "{}",
        report.slug()
    );
    println!("GPU tests run on {report} (bench id {})", report.slug());
}

#[test]
fn hardware_only_never_picks_a_software_adapter() {
    match GpuBackend::new(AdapterPolicy::HardwareOnly) {
        Ok(b) => assert_ne!(
            b.adapter().device_type,
            wgpu::DeviceType::Cpu,
            "{}",
            b.adapter()
        ),
        Err(KernelError::NoAdapter(why)) => println!("no hardware adapter: {why}"),
        Err(e) => panic!("unexpected error: {e}"),
    }
}
