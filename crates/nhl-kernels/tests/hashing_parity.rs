//! The fused hashing ops of [`HashingOps`] (CSQ objective, SP distillation, prefix pair products)
//! on `CpuBackend<f32>` and on the GPU backend, each compared with the `CpuBackend<f64>`
//! reference on seeded random inputs, odd sizes and saturated outputs.

mod common;

use anyhow::{ensure, Result};
use common::{data, down, ref_down, reference, up, Ref};
use nhl_kernels::testing::assert_close;
use nhl_kernels::{Backend, HashingOps, KernelError, Shape};

/// Fused CSQ: odd sizes, one spanning many 256-wide strides, every prefix length of a 7-column
/// output, saturated outputs (both BCE logs at the -100 floor) and duplicate batch indices.
fn check_csq<B: HashingOps<Elem = f32>>(b: &B) -> Result<()> {
    let r = Ref::new();
    let mut cases = vec![(1, 1, 1), (65, 131, 131), (300, 40, 17), (64, 128, 8)];
    cases.extend((1..=7).map(|bits| (9, 7, bits)));
    for (seed, (n, width, bits)) in cases.into_iter().enumerate() {
        let seed = 1300 + 10 * seed as u64;
        let us = Shape::new(n, width);
        let mut uv = data(seed, us, -3.0, 3.0);
        uv[0] = 30.0;
        if uv.len() > 2 {
            uv[2] = -30.0;
        }
        let items = n + 3;
        let ts = Shape::new(items, bits);
        let tv: Vec<f64> = data(seed + 1, ts, -1.0, 1.0)
            .into_iter()
            .map(|v| if v < 0.0 { -1.0 } else { 1.0 })
            .collect();
        let idx: Vec<u32> = (0..n).map(|i| ((i * 7 + 2) % items) as u32).collect();
        let (loss, grad) = b.csq_objective(
            &up(b, &uv, us)?,
            bits,
            &up(b, &tv, ts)?,
            &b.upload_idx(&idx)?,
            1e-4,
        )?;
        let (rl, rg) = r.csq_objective(
            &reference(&uv, us)?,
            bits,
            &reference(&tv, ts)?,
            &r.upload_idx(&idx)?,
            1e-4,
        )?;
        let what = format!("csq {n}x{width} bits {bits}");
        assert_close(
            &format!("{what} loss"),
            &down(b, &loss)?,
            &ref_down(&rl)?,
            1e-6,
            1e-5,
        );
        let scale = 1.0 / (n * bits) as f64;
        assert_close(
            &format!("{what} grad"),
            &down(b, &grad)?,
            &ref_down(&rg)?,
            1e-6 * scale,
            1e-4,
        );
    }
    Ok(())
}

/// Fused SP distillation: odd sizes, a batch over 256 rows, every student/teacher prefix pair of
/// a 5-column output, and an all-zero row (its Gram row takes the eps branch).
fn check_sp<B: HashingOps<Elem = f32>>(b: &B) -> Result<()> {
    let r = Ref::new();
    let mut cases = vec![
        (1, 1, 1, 1),
        (7, 13, 3, 8),
        (65, 131, 64, 131),
        (300, 20, 7, 13),
    ];
    cases.extend((1..=5).flat_map(|s| (s..=5).map(move |t| (6, 5, s, t))));
    for (seed, (n, width, bs, bt)) in cases.into_iter().enumerate() {
        let us = Shape::new(n, width);
        let mut uv = data(1500 + seed as u64, us, -1.0, 1.0);
        if n > 2 {
            uv[width..2 * width].fill(0.0);
        }
        let (loss, grad) = b.sp_distill(&up(b, &uv, us)?, bs, bt, 1e-12)?;
        let (rl, rg) = r.sp_distill(&reference(&uv, us)?, bs, bt, 1e-12)?;
        let what = format!("sp {n}x{width} student {bs} teacher {bt}");
        ensure!(b.shape(&grad) == Shape::new(n, bs), "{what}: grad shape");
        assert_close(
            &format!("{what} loss"),
            &down(b, &loss)?,
            &ref_down(&rl)?,
            1e-6,
            1e-4,
        );
        let scale = 1.0 / (n * n) as f64;
        assert_close(
            &format!("{what} grad"),
            &down(b, &grad)?,
            &ref_down(&rg)?,
            1e-5 * scale,
            1e-3,
        );
    }
    Ok(())
}

/// Prefix pair dots of stacked blocks: one block, equal widths, the training lengths, and a batch
/// whose blocks span more than one 256-wide stride; checked against a plain f64 loop too.
fn check_pair_dots<B: HashingOps<Elem = f32>>(b: &B) -> Result<()> {
    let r = Ref::new();
    let cases: [(usize, &[usize]); 4] = [
        (1, &[1]),
        (7, &[3, 3, 5]),
        (64, &[8, 16, 32, 64, 128]),
        (300, &[2, 2, 7]),
    ];
    for (seed, (n, bits)) in cases.into_iter().enumerate() {
        let shape = Shape::new(n, bits.iter().sum());
        let dv = data(1700 + seed as u64, shape, -1.0, 1.0);
        let fv = data(1800 + seed as u64, shape, -1.0, 1.0);
        let got = b.prefix_pair_dots(&up(b, &dv, shape)?, &up(b, &fv, shape)?, bits)?;
        let want = ref_down(&r.prefix_pair_dots(
            &reference(&dv, shape)?,
            &reference(&fv, shape)?,
            bits,
        )?)?;
        let offsets: Vec<usize> = (0..bits.len()).map(|k| bits[..k].iter().sum()).collect();
        let mut by_hand = Vec::new();
        for i in 0..bits.len() {
            for j in i..bits.len() {
                by_hand.push(
                    (0..n)
                        .flat_map(|p| (0..bits[i]).map(move |c| (p, c)))
                        .map(|(p, c)| {
                            dv[p * shape.cols + offsets[i] + c]
                                * fv[p * shape.cols + offsets[j] + c]
                        })
                        .sum::<f64>(),
                );
            }
        }
        let what = format!("pair dots n {n} bits {bits:?}");
        assert_close(&format!("{what} reference"), &want, &by_hand, 1e-12, 1e-12);
        assert_close(&what, &down(b, &got)?, &want, 1e-5 * n as f64, 1e-4);
    }
    let x = up(b, &data(1, Shape::new(2, 5), -1.0, 1.0), Shape::new(2, 5))?;
    for bits in [&[2, 2][..], &[3, 2], &[], &[1, 1, 3]] {
        ensure!(
            matches!(
                b.prefix_pair_dots(&x, &x, bits),
                Err(KernelError::Shape { .. })
            ) == (bits.iter().sum::<usize>() != 5 || bits.windows(2).any(|w| w[0] > w[1])),
            "bits {bits:?}"
        );
    }
    Ok(())
}

nhl_kernels::on_every_backend!(check_csq, check_sp, check_pair_dots);
