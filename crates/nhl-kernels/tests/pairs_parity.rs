//! The pairwise fused ops (`bank_objectives` of every pair term, quantisation and clamp,
//! `dtsh_objective` and `hashnet_objective`) on `CpuBackend<f32>` and on the GPU backend, each compared with the
//! `CpuBackend<f64>` reference on seeded random inputs with odd sizes, a bank spanning several
//! 256-wide workgroups, multi-hot labels with an unlabelled item, and unvisited (zero) bank rows.
//! Their agreement with the losses' tape forms, and the tape forms' finite-difference checks, are
//! in `nhl-train`.

use anyhow::{bail, ensure, Result};
use nhl_kernels::cpu::CpuBackend;
use nhl_kernels::testing::{assert_close, random_vec};
use nhl_kernels::{Backend, BankLoss, BankPair, HashingOps, KernelError, Quantisation, Shape};

type Ref = CpuBackend<f64>;

/// Random values in `[lo, hi)`, rounded to f32 so that both sides see the same inputs.
fn data(seed: u64, len: usize, lo: f64, hi: f64) -> Vec<f64> {
    random_vec(seed, len, lo, hi)
        .into_iter()
        .map(|v| v as f32 as f64)
        .collect()
}

/// Multi-hot labels: about a third of the classes per item, the first item without any.
fn labels(seed: u64, n: usize, classes: usize) -> Vec<f64> {
    let mut y: Vec<f64> = random_vec(seed, n * classes, 0.0, 1.0)
        .into_iter()
        .map(|v| if v < 0.35 { 1.0 } else { 0.0 })
        .collect();
    y[..classes].fill(0.0);
    y
}

fn up<B: Backend<Elem = f32>>(b: &B, v: &[f64], shape: Shape) -> Result<B::Buf> {
    let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    Ok(b.upload(&v, shape)?)
}

fn down<B: Backend<Elem = f32>>(b: &B, x: &B::Buf) -> Result<Vec<f64>> {
    Ok(b.download(x)?.into_iter().map(f64::from).collect())
}

/// Compares `got` with `want` at tolerances relative to `want`'s largest magnitude.
fn close(what: &str, got: &[f64], want: &[f64], rtol: f64) {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert_close(what, got, want, 1e-5 * scale, rtol);
}

fn losses() -> Vec<BankLoss> {
    let loss = |pair, quant, clamp_unit| BankLoss {
        pair,
        pair_weight: 0.7,
        quant,
        alpha: 0.3,
        clamp_unit,
    };
    vec![
        loss(
            BankPair::Contrastive { margin: 2.0 },
            Quantisation::AbsGap,
            false,
        ),
        loss(BankPair::Likelihood, Quantisation::LogCosh, false),
        loss(BankPair::Likelihood, Quantisation::SignGap, false),
        loss(BankPair::Likelihood, Quantisation::RowMeanSquare, true),
        loss(BankPair::Likelihood, Quantisation::RowMeanAbs, true),
        loss(BankPair::CosinePositive, Quantisation::None, false),
    ]
}

/// One bank case: batch rows, batch width, bank rows, bank width, lengths, classes.
type BankCase = (usize, usize, usize, usize, &'static [usize], usize);

fn check_bank<B: HashingOps<Elem = f32>>(b: &B) -> Result<()> {
    let r = Ref::new();
    let cases: [BankCase; 3] = [
        (1, 3, 1, 3, &[3], 1),
        (13, 20, 300, 21, &[3, 7, 20], 5),
        (64, 16, 517, 16, &[8, 16], 10),
    ];
    for (c, &(n, width, rows, bank_width, bits, classes)) in cases.iter().enumerate() {
        let seed = 2000 + 100 * c as u64;
        let us = Shape::new(n, width);
        let uv = data(seed, us.len(), -1.6, 1.6);
        let ys = Shape::new(n, classes);
        let yv = labels(seed + 1, n, classes);
        let bs = Shape::new(rows, bank_width);
        let mut bv = data(seed + 2, bs.len(), -1.5, 1.5);
        let bls = Shape::new(rows, classes);
        let mut blv = labels(seed + 3, rows, classes);
        // The last bank row was never visited.
        bv[(rows - 1) * bank_width..].fill(0.0);
        blv[(rows - 1) * classes..].fill(0.0);
        for loss in losses() {
            let got = b.bank_objectives(
                &up(b, &uv, us)?,
                bits,
                &up(b, &yv, ys)?,
                &up(b, &bv, bs)?,
                &up(b, &blv, bls)?,
                &loss,
            )?;
            let want = r.bank_objectives(
                &r.upload(&uv, us)?,
                bits,
                &r.upload(&yv, ys)?,
                &r.upload(&bv, bs)?,
                &r.upload(&blv, bls)?,
                &loss,
            )?;
            ensure!(got.len() == bits.len() && want.len() == bits.len());
            for (k, ((gl, gg), (wl, wg))) in got.iter().zip(&want).enumerate() {
                let what = format!("{} {loss:?} case {c} length {}", b.name(), bits[k]);
                ensure!(b.shape(gg) == Shape::new(n, bits[k]), "{what}: shape");
                let wl = r.download(wl)?;
                // The one-item case has no similar pair, so its cosine term is 0.
                ensure!(
                    wl[0].is_finite() && (c == 0 || wl[0] != 0.0),
                    "{what}: {wl:?}"
                );
                close(&format!("{what} loss"), &down(b, gl)?, &wl, 1e-4);
                close(
                    &format!("{what} grad"),
                    &down(b, gg)?,
                    &r.download(wg)?,
                    2e-3,
                );
            }
        }
    }
    Ok(())
}

fn check_dtsh<B: HashingOps<Elem = f32>>(b: &B) -> Result<()> {
    let r = Ref::new();
    // (batch, width, bits, classes, alpha)
    for (c, &(n, width, bits, classes, alpha)) in [
        (1, 4, 4, 2, 5.0),
        (9, 7, 5, 3, 1.0),
        (37, 20, 11, 4, 2.0),
        (64, 32, 32, 10, 5.0),
    ]
    .iter()
    .enumerate()
    {
        let seed = 3000 + 100 * c as u64;
        let us = Shape::new(n, width);
        let uv = data(seed, us.len(), -1.2, 1.2);
        let ys = Shape::new(n, classes);
        let yv = labels(seed + 1, n, classes);
        let (gl, gg) = b.dtsh_objective(&up(b, &uv, us)?, bits, &up(b, &yv, ys)?, alpha, 0.5)?;
        let (wl, wg) =
            r.dtsh_objective(&r.upload(&uv, us)?, bits, &r.upload(&yv, ys)?, alpha, 0.5)?;
        let what = format!("{} dtsh case {c}", b.name());
        close(
            &format!("{what} loss"),
            &down(b, &gl)?,
            &r.download(&wl)?,
            1e-4,
        );
        close(
            &format!("{what} grad"),
            &down(b, &gg)?,
            &r.download(&wg)?,
            2e-3,
        );
    }
    Ok(())
}

fn check_hashnet<B: HashingOps<Elem = f32>>(b: &B) -> Result<()> {
    let r = Ref::new();
    // (batch, width, bits, classes, alpha, scale); codes wide enough to saturate tanh in places.
    for (c, &(n, width, bits, classes, alpha, scale)) in [
        (1, 4, 4, 2, 0.1, 1.0),
        (9, 7, 5, 3, 0.1, 2f64.sqrt()),
        (37, 20, 11, 4, 0.7, 1.0),
        (64, 32, 32, 10, 0.1, 3f64.sqrt()),
    ]
    .iter()
    .enumerate()
    {
        let seed = 5000 + 100 * c as u64;
        let us = Shape::new(n, width);
        let uv = data(seed, us.len(), -3.0, 3.0);
        let ys = Shape::new(n, classes);
        let yv = labels(seed + 1, n, classes);
        let (gl, gg) =
            b.hashnet_objective(&up(b, &uv, us)?, bits, &up(b, &yv, ys)?, alpha, scale)?;
        let (wl, wg) =
            r.hashnet_objective(&r.upload(&uv, us)?, bits, &r.upload(&yv, ys)?, alpha, scale)?;
        let what = format!("{} hashnet case {c}", b.name());
        close(
            &format!("{what} loss"),
            &down(b, &gl)?,
            &r.download(&wl)?,
            1e-5,
        );
        let want = r.download(&wg)?;
        ensure!(
            want.iter().any(|&g| g != 0.0),
            "{what}: a zero gradient tests nothing"
        );
        close(&format!("{what} grad"), &down(b, &gg)?, &want, 1e-3);
    }
    Ok(())
}

fn check_errors<B: HashingOps<Elem = f32>>(b: &B) -> Result<()> {
    let z = |rows, cols| b.zeros(Shape::new(rows, cols));
    let (u, y, bank, bank_y) = (z(4, 8)?, z(4, 3)?, z(10, 8)?, z(10, 3)?);
    let loss = losses()[1];
    let cases = [
        (
            "no lengths",
            b.bank_objectives(&u, &[], &y, &bank, &bank_y, &loss),
        ),
        (
            "too long",
            b.bank_objectives(&u, &[4, 9], &y, &bank, &bank_y, &loss),
        ),
        (
            "not increasing",
            b.bank_objectives(&u, &[4, 4], &y, &bank, &bank_y, &loss),
        ),
        (
            "label rows",
            b.bank_objectives(&u, &[4], &z(3, 3)?, &bank, &bank_y, &loss),
        ),
        (
            "narrow bank",
            b.bank_objectives(&u, &[8], &y, &z(10, 6)?, &bank_y, &loss),
        ),
        (
            "bank labels",
            b.bank_objectives(&u, &[4], &y, &bank, &z(9, 3)?, &loss),
        ),
    ];
    for (what, result) in cases {
        ensure!(
            matches!(
                result,
                Err(KernelError::Shape {
                    op: "bank_objectives",
                    ..
                })
            ),
            "{what}: {result:?}"
        );
    }
    // The GPU's bank pass carries each length's first new column in 16 bits, so a second longest
    // length of 2^16 bits or more is an error there; the CPU takes it.
    let wide = || b.zeros(Shape::new(1, 65_537));
    let result = b.bank_objectives(
        &wide()?,
        &[65_536, 65_537],
        &z(1, 3)?,
        &wide()?,
        &z(1, 3)?,
        &loss,
    );
    if b.name().starts_with("cpu") {
        ensure!(result.is_ok(), "a second longest of 2^16 bits: {result:?}");
    } else {
        match result {
            Err(KernelError::Shape {
                op: "bank_objectives",
                detail,
            }) => ensure!(detail.contains("65536 bits"), "{detail}"),
            other => bail!("a second longest of 2^16 bits: {other:?}"),
        }
    }
    for (what, result) in [
        ("bits > cols", b.dtsh_objective(&u, 9, &y, 5.0, 1.0)),
        ("no bits", b.dtsh_objective(&u, 0, &y, 5.0, 1.0)),
        ("label rows", b.dtsh_objective(&u, 4, &z(5, 3)?, 5.0, 1.0)),
    ] {
        ensure!(
            matches!(
                result,
                Err(KernelError::Shape {
                    op: "dtsh_objective",
                    ..
                })
            ),
            "{what}: {result:?}"
        );
    }
    for (what, result) in [
        ("bits > cols", b.hashnet_objective(&u, 9, &y, 0.1, 1.0)),
        ("no bits", b.hashnet_objective(&u, 0, &y, 0.1, 1.0)),
        (
            "label rows",
            b.hashnet_objective(&u, 4, &z(5, 3)?, 0.1, 1.0),
        ),
    ] {
        ensure!(
            matches!(
                result,
                Err(KernelError::Shape {
                    op: "hashnet_objective",
                    ..
                })
            ),
            "{what}: {result:?}"
        );
    }
    Ok(())
}

nhl_kernels::on_every_backend!(check_bank, check_dtsh, check_hashnet, check_errors);

/// The CPU bank pass forms the similarities from bit masks where the labels are zeros and ones
/// and at most 32 classes, and by a product otherwise; every way to the same similarities gives
/// the same bits: labels widened by empty classes past 32, labels scaled by 2 (dot products still
/// positive exactly where classes are shared), and only the bank's scaled (each chunk decides).
#[test]
fn the_bank_pass_gives_the_same_bits_with_and_without_label_masks() -> Result<()> {
    let b = CpuBackend::<f32>::new();
    let (n, classes, rows, width, bits) = (19, 10, 600, 24, [8, 24]);
    let uv = data(71, n * width, -1.6, 1.6);
    let bv = data(72, rows * width, -1.5, 1.5);
    let (yv, blv) = (labels(73, n, classes), labels(74, rows, classes));
    let widen = |y: &[f64], r: usize| -> Vec<f64> {
        (0..r)
            .flat_map(|i| {
                let mut row = y[i * classes..(i + 1) * classes].to_vec();
                row.resize(40, 0.0);
                row
            })
            .collect()
    };
    let double = |y: &[f64]| -> Vec<f64> { y.iter().map(|v| 2.0 * v).collect() };
    let variants = [
        ("masks", yv.clone(), blv.clone(), classes),
        ("40 classes", widen(&yv, n), widen(&blv, rows), 40),
        ("labels times 2", double(&yv), double(&blv), classes),
        ("bank labels times 2", yv.clone(), double(&blv), classes),
    ];
    for loss in losses() {
        let mut first: Option<Vec<Vec<f32>>> = None;
        for (what, y, bank_y, c) in &variants {
            let got = b.bank_objectives(
                &up(&b, &uv, Shape::new(n, width))?,
                &bits,
                &up(&b, y, Shape::new(n, *c))?,
                &up(&b, &bv, Shape::new(rows, width))?,
                &up(&b, bank_y, Shape::new(rows, *c))?,
                &loss,
            )?;
            let flat: Vec<Vec<f32>> = got
                .iter()
                .flat_map(|(l, g)| [b.download(l), b.download(g)])
                .collect::<Result<_, _>>()?;
            match &first {
                None => first = Some(flat),
                Some(want) => {
                    let same = flat
                        .iter()
                        .flatten()
                        .zip(want.iter().flatten())
                        .all(|(x, y)| x.to_bits() == y.to_bits());
                    ensure!(same, "{loss:?}: {what} differs from the masks' bits");
                }
            }
        }
    }
    Ok(())
}
