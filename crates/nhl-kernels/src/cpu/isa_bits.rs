//! Every loop of the CPU backend that is compiled for more than one instruction set (the
//! elementwise maps with each op, the lane functions, the Adam update, the CSQ rows) gives the
//! same bits in each build. Each loop runs on seeded random inputs with special values mixed in,
//! at lengths that leave every kind of vector tail, in the baseline build, in the AVX2 build
//! where the CPU has it, and one element at a time (the loop's scalar code), in `f32` and `f64`.
//! Every value must have the same bits in all three, except that a NaN may differ in sign and
//! payload.

use std::fmt::Debug;

#[cfg(target_arch = "x86_64")]
use super::adam::adam_update_avx512;
use super::adam::{adam_update_on, AdamConsts};
use super::elementwise::{map_on, zip_map_on};
use super::isa::Isa;
use super::{scalar, PAR_MIN};
use crate::backend::{Binary, Unary};
use crate::cpu::fma_products::tests::SHAPES;
use crate::cpu::fma_products::{product, Fused, Product};
#[cfg(target_arch = "x86_64")]
use crate::hashing::bank_pairs::pair_rows_avx512;
use crate::hashing::bank_pairs::{pair_rows_on, PairChunk, PairSums};
use crate::hashing::csq_row::{csq_rows_on, CsqBatch, CsqTerms};
#[cfg(target_arch = "x86_64")]
use crate::hashing::triplet_cpu::anchor_rows_avx512;
use crate::hashing::triplet_cpu::{anchor_rows_on, Anchors};
use crate::hashing::BankPair;
use crate::real::Real;
use crate::rng::SplitMix64;

/// Lengths around every vector width and unrolled step (4 or 8 lanes of `f32`, 2 or 4 of `f64`,
/// up to four vectors a step), longer odd ones, and one past the parallel threshold of the maps.
const LENGTHS: [usize; 22] = [
    0,
    1,
    2,
    3,
    4,
    5,
    7,
    8,
    9,
    15,
    16,
    17,
    31,
    32,
    33,
    63,
    64,
    65,
    127,
    129,
    1001,
    PAR_MIN + 5,
];

/// Every instruction set this CPU runs, the baseline first.
fn isas() -> Vec<Isa> {
    std::iter::once(Isa::BASELINE).chain(Isa::avx2()).collect()
}

#[test]
fn the_backend_runs_the_avx2_build_exactly_when_the_cpu_has_avx2() {
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        Isa::best().is_avx2(),
        std::arch::is_x86_feature_detected!("avx2")
    );
    assert_eq!(Isa::best() == Isa::BASELINE, Isa::avx2().is_none());
    if Isa::avx2().is_none() {
        // The checks below then compare the baseline build with scalar code only. Straight to
        // stderr: libtest captures `eprintln!` of passing tests, and the notice must be seen.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "no AVX2 on this CPU: only the baseline build is checked"
        );
    }
}

/// `n` seeded values in `[lo, hi)`, about one in eight replaced by a special value: a signed
/// zero, an infinity, NaN, a subnormal or a huge magnitude.
fn values<T: Real>(seed: u64, n: usize, lo: f64, hi: f64) -> Vec<T> {
    const SPECIAL: [f64; 9] = [
        0.0,
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        1e-40,
        -1e-310,
        3e30,
        -3e30,
    ];
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            let v = rng.uniform(lo, hi);
            if rng.next_f64() < 0.125 {
                SPECIAL[(rng.next_f64() * SPECIAL.len() as f64) as usize % SPECIAL.len()]
            } else {
                v
            }
        })
        .map(T::from_f64)
        .collect()
}

/// Requires `got` and `want` to hold the same bits, except that any NaN matches any NaN (Rust
/// leaves the sign and payload of a NaN result unspecified, and the builds do differ there when
/// two NaNs meet), naming the first element that differs.
#[track_caller]
fn assert_same_bits<T: Real>(what: &str, got: &[T], want: &[T]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let bits = |v: &T| bytemuck::bytes_of(v).to_vec();
    let nan = |v: &T| v.to_f64().is_nan();
    let differs = |(g, w): (&T, &T)| bits(g) != bits(w) && !(nan(g) && nan(w));
    if let Some(i) = got.iter().zip(want).position(differs) {
        panic!(
            "{what}: element {i} is {:?} (bits {:02x?}), the one-element run gives {:?} (bits {:02x?})",
            got[i],
            bits(&got[i]),
            want[i],
            bits(&want[i]),
        );
    }
}

/// Runs a loop over `n` elements in every instruction set's build (`whole`) and one element at a
/// time in the baseline build (`alone(i)`, the loop's scalar code), and requires the same bits
/// from all. Outputs are element-major: all of element 0's values, then element 1's, ...
#[track_caller]
fn check<T: Real>(
    what: impl Debug,
    n: usize,
    whole: impl Fn(Isa) -> Vec<T>,
    alone: impl Fn(usize) -> Vec<T>,
) {
    let want: Vec<T> = (0..n).flat_map(alone).collect();
    for isa in isas() {
        assert_same_bits(&format!("{what:?}, n = {n}, {isa:?}"), &whole(isa), &want);
    }
}

fn unary_ops() -> [Unary; 13] {
    [
        Unary::Relu,
        Unary::Tanh,
        Unary::Abs,
        Unary::Sign,
        Unary::Exp,
        Unary::Log,
        Unary::Softplus,
        Unary::LogCosh,
        Unary::Square,
        Unary::Sigmoid,
        Unary::Scale(-1.7),
        Unary::AddScalar(0.3),
        Unary::Clamp { lo: -0.5, hi: 0.7 },
    ]
}

/// A named function of [`super::lanes`] (through [`Real`], which picks them for `f32`).
type LaneFn<T> = (&'static str, fn(T) -> T);

/// Each unary op forward (`map`) and backward (`zip_map`) with the closures the backend uses,
/// each binary op on operands of one shape, and the lane functions.
fn elementwise_maps<T: Real>() {
    for (k, n) in LENGTHS.into_iter().enumerate() {
        let seed = 100 * k as u64;
        let x = values::<T>(seed, n, -30.0, 30.0);
        let y = values::<T>(seed + 1, n, -2.0, 2.0);
        for op in unary_ops() {
            specialise_unary!(op, |o| {
                let f = move |v| scalar::unary(o, v);
                check(
                    (o, "forward"),
                    n,
                    |isa| map_on(isa, &x, f),
                    |i| map_on(Isa::BASELINE, &x[i..=i], f),
                );
                let g = move |x, dy| dy * scalar::unary_grad(o, x);
                check(
                    (o, "backward"),
                    n,
                    |isa| zip_map_on(isa, &x, &y, g),
                    |i| zip_map_on(Isa::BASELINE, &x[i..=i], &y[i..=i], g),
                );
            });
        }
        let a = values::<T>(seed + 2, n, -2.0, 2.0);
        for op in [
            Binary::Add,
            Binary::Sub,
            Binary::Mul,
            Binary::Div,
            Binary::Bce,
        ] {
            let f = |a, b| scalar::binary(op, a, b);
            check(
                op,
                n,
                |isa| zip_map_on(isa, &a, &y, f),
                |i| zip_map_on(Isa::BASELINE, &a[i..=i], &y[i..=i], f),
            );
        }
        let lane_fns: [LaneFn<T>; 2] = [("tanh_lanes", T::tanh_lanes), ("ln_lanes", T::ln_lanes)];
        for (name, f) in lane_fns {
            check(
                name,
                n,
                |isa| map_on(isa, &x, f),
                |i| map_on(Isa::BASELINE, &x[i..=i], f),
            );
        }
    }
}

#[test]
fn elementwise_maps_give_the_same_bits_on_every_isa() {
    elementwise_maps::<f32>();
    elementwise_maps::<f64>();
}

/// One Adam update of `p`, `m`, `v` over `range` with gradient `g` in `isa`'s build, as
/// element-major triples `(p, m, v)`.
fn adam_run<T: Real>(
    isa: Isa,
    c: AdamConsts<T>,
    state: [&[T]; 3],
    g: &[T],
    range: std::ops::Range<usize>,
) -> Vec<T> {
    let [mut p, mut m, mut v] = state.map(|s| s[range.clone()].to_vec());
    adam_update_on(isa, c, &mut p, &mut m, &mut v, &g[range]);
    p.iter()
        .zip(&m)
        .zip(&v)
        .flat_map(|((&p, &m), &v)| [p, m, v])
        .collect()
}

fn adam_updates<T: Real>() {
    let f = T::from_f64;
    for (weight_decay, step) in [(1e-4, 1), (0.0, 37), (1e-4, 400), (1e-4, 20_000)] {
        let c = AdamConsts {
            lr: f(1e-3),
            beta1: f(0.9),
            beta2: f(0.999),
            eps: f(1e-8),
            weight_decay: f(weight_decay),
            bias1: f(1.0 - 0.9f64.powi(step)),
            bias2: f(1.0 - 0.999f64.powi(step)),
        };
        for (k, n) in LENGTHS.into_iter().enumerate() {
            let seed = 7000 + 10 * k as u64;
            let p = values::<T>(seed, n, -1.0, 1.0);
            let m = values::<T>(seed + 1, n, -0.1, 0.1);
            let v = values::<T>(seed + 2, n, 0.0, 0.01);
            let g = values::<T>(seed + 3, n, -1.0, 1.0);
            let state = [&p[..], &m, &v];
            check(
                ("adam", weight_decay, step),
                n,
                |isa| adam_run(isa, c, state, &g, 0..n),
                |i| adam_run(Isa::BASELINE, c, state, &g, i..i + 1),
            );
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f") {
                let [mut p5, mut m5, mut v5] = state.map(<[T]>::to_vec);
                // SAFETY: the CPU has AVX-512F.
                unsafe { adam_update_avx512(c, (&mut p5, &mut m5, &mut v5, &g)) };
                let got: Vec<T> = (0..n).flat_map(|i| [p5[i], m5[i], v5[i]]).collect();
                let what = format!("adam {weight_decay} {step}, {n} elements, AVX-512F");
                assert_same_bits(&what, &got, &adam_run(Isa::BASELINE, c, state, &g, 0..n));
            }
        }
    }
}

#[test]
fn adam_updates_give_the_same_bits_on_every_isa() {
    adam_updates::<f32>();
    adam_updates::<f64>();
}

/// The CSQ terms of `batch` in `isa`'s build, as element-major triples `(grad, bce, quant)`.
fn csq_run<T: Real>(isa: Isa, batch: &CsqBatch<'_, T>) -> Vec<T> {
    let m = batch.idx.len() * batch.bits;
    let mut out = vec![T::zero(); 3 * m];
    let (grad, rest) = out.split_at_mut(m);
    let (bce, quant) = rest.split_at_mut(m);
    csq_rows_on(isa, batch, CsqTerms { grad, bce, quant });
    (0..m)
        .flat_map(|j| [out[j], out[m + j], out[2 * m + j]])
        .collect()
}

fn csq_rows_all<T: Real>() {
    for (k, bits) in [1, 3, 7, 8, 9, 16, 17, 33, 64, 127].into_iter().enumerate() {
        for rows in [1, 5, 64] {
            let seed = 9000 + 100 * k as u64 + rows as u64;
            // The prefix of a wider output, read in place as the backend does.
            let width = bits + 3;
            let items = rows + 2;
            let u = values::<T>(seed, rows * width, -6.0, 6.0);
            let targets: Vec<T> = values::<f64>(seed + 1, items * bits, -1.0, 1.0)
                .into_iter()
                .map(|t| T::from_f64(if t < 0.0 { -1.0 } else { 1.0 }))
                .collect();
            // Repeated items, as a batch may hold.
            let idx: Vec<u32> = (0..rows).map(|r| ((r * 5 + 1) % items) as u32).collect();
            let lambda = T::from_f64(1e-4);
            let inv = T::one() / T::from_f64((rows * bits) as f64);
            let batch = CsqBatch {
                u: &u,
                width,
                targets: &targets,
                idx: &idx,
                bits,
                lambda,
                inv,
            };
            let alone = |e: usize| {
                let (r, c) = (e / bits, e % bits);
                let item = idx[r] as usize;
                csq_run(
                    Isa::BASELINE,
                    &CsqBatch {
                        u: &u[r * width + c..=r * width + c],
                        width: 1,
                        targets: &targets[item * bits + c..=item * bits + c],
                        idx: &[0],
                        bits: 1,
                        lambda,
                        inv,
                    },
                )
            };
            check(
                ("csq rows", rows, bits),
                rows * bits,
                |isa| csq_run(isa, &batch),
                alone,
            );
        }
    }
}

#[test]
fn csq_rows_give_the_same_bits_on_every_isa() {
    csq_rows_all::<f32>();
    csq_rows_all::<f64>();
}

/// The memory-bank pair terms that `run` writes for `chunk`: the coefficients, the chunk's
/// value, then each row's own-code sum.
fn pair_outputs<T: Real>(
    chunk: &PairChunk<'_, T>,
    run: impl FnOnce(PairSums<'_, T>) -> T,
) -> Vec<T> {
    let (n, c) = (chunk.own_norms.len(), chunk.bank_aux.len());
    let (mut g, mut scratch) = (vec![T::zero(); n * c], vec![T::zero(); 4 * c]);
    let mut own = vec![T::zero(); n];
    let value = run(PairSums {
        g: &mut g,
        scratch: &mut scratch,
        own: &mut own,
    });
    g.into_iter().chain([value]).chain(own).collect()
}

/// The memory-bank pair terms of every pair kind in `isa`'s build.
fn pair_run<T: Real>(isa: Isa, chunk: &PairChunk<'_, T>) -> Vec<T> {
    pair_outputs(chunk, |out| pair_rows_on(isa, chunk, out))
}

/// [`pair_run`] in the AVX-512F build.
#[cfg(target_arch = "x86_64")]
fn pair_run_avx512<T: Real>(chunk: &PairChunk<'_, T>) -> Vec<T> {
    // SAFETY: the caller checked that the CPU has AVX-512F.
    pair_outputs(chunk, |out| unsafe { pair_rows_avx512(chunk, out) })
}

fn pair_rows_all<T: Real>() {
    let pairs = [
        BankPair::Contrastive { margin: 0.5 },
        BankPair::Likelihood,
        BankPair::CosinePositive,
    ];
    for (k, pair) in pairs.into_iter().enumerate() {
        for (n, c) in [(1, 1), (5, 37), (3, 64), (70, 41)] {
            let seed = 9500 + 100 * k as u64 + c as u64;
            let theta = values::<T>(seed, n * c, -20.0, 20.0);
            let s: Vec<T> = values::<f64>(seed + 1, n * c, 0.0, 1.0)
                .into_iter()
                .map(|v| T::from_f64(if v < 0.5 { 0.0 } else { 1.0 }))
                .collect();
            let own_norms = values::<T>(seed + 2, n, 0.1, 3.0);
            let bank_aux = values::<T>(seed + 3, c, 0.1, 3.0);
            let chunk = PairChunk {
                pair,
                theta: &theta,
                s: &s,
                own_norms: &own_norms,
                bank_aux: &bank_aux,
                margin: T::from_f64(4.0),
            };
            let want = pair_run(Isa::BASELINE, &chunk);
            for isa in isas() {
                let what = format!("pair rows {pair:?}, {n} x {c}, {isa:?}");
                assert_same_bits(&what, &pair_run(isa, &chunk), &want);
            }
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f") {
                let what = format!("pair rows {pair:?}, {n} x {c}, AVX-512F");
                assert_same_bits(&what, &pair_run_avx512(&chunk), &want);
            }
        }
    }
}

#[test]
fn bank_pair_rows_give_the_same_bits_on_every_isa() {
    pair_rows_all::<f32>();
    pair_rows_all::<f64>();
}

/// DTSH's anchor rows in `run`'s build: the derivatives of the inner products, then the value.
fn anchor_outputs<T: Real>(n: usize, run: impl FnOnce(&mut [T]) -> T) -> Vec<T> {
    let mut dtheta = values::<T>(9700 + n as u64, n * n, -1.0, 1.0);
    let value = run(&mut dtheta);
    dtheta.into_iter().chain([value]).collect()
}

fn anchor_rows_all<T: Real>() {
    for (k, n) in [1usize, 5, 37, 64].into_iter().enumerate() {
        let seed = 9600 + 10 * k as u64;
        // Differences of inner products reach both clamp bounds of the triplet logit.
        let theta = values::<T>(seed, n * n, -80.0, 80.0);
        let s: Vec<T> = values::<f64>(seed + 1, n * n, 0.0, 1.0)
            .into_iter()
            .map(|v| T::from_f64(if v < 0.3 { 1.0 } else { 0.0 }))
            .collect();
        // One anchor in three does not qualify (weight zero).
        let weights: Vec<T> = values::<T>(seed + 2, n, 0.01, 0.2)
            .into_iter()
            .enumerate()
            .map(|(a, w)| if a % 3 == 2 { T::zero() } else { w })
            .collect();
        let anchors = Anchors {
            theta: &theta,
            s: &s,
            weights: &weights,
            alpha: T::from_f64(1.5),
        };
        let want = anchor_outputs(n, |d| anchor_rows_on(Isa::BASELINE, &anchors, d));
        for isa in isas() {
            let what = format!("dtsh anchor rows, n = {n}, {isa:?}");
            let got = anchor_outputs(n, |d| anchor_rows_on(isa, &anchors, d));
            assert_same_bits(&what, &got, &want);
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            let what = format!("dtsh anchor rows, n = {n}, AVX-512F");
            // SAFETY: the CPU has AVX-512F.
            let got = anchor_outputs(n, |d| unsafe { anchor_rows_avx512(&anchors, d) });
            assert_same_bits(&what, &got, &want);
        }
    }
}

#[test]
fn dtsh_anchor_rows_give_the_same_bits_on_every_isa() {
    anchor_rows_all::<f32>();
    anchor_rows_all::<f64>();
}

/// The fused products of the bank pass (`cpu::fma_products`), written and accumulated, in
/// every fused build this CPU has, against a plain loop of the same `mul_add` chains: whole
/// register tiles and each kind of edge, with special values in the small cases.
fn bank_products_all<T: Real>() {
    for (k, (rows, len, cols)) in SHAPES.into_iter().enumerate() {
        let seed = 9800 + 10 * k as u64;
        let (a_stride, b_stride) = (len + 2, cols + 3);
        // Special values only where they leave most chains finite.
        let (lo, hi) = if len <= 8 { (-2.0, 2.0) } else { (-1.0, 1.0) };
        let pick = |seed, n| -> Vec<T> {
            let v = values::<T>(seed, n, lo, hi);
            if len <= 8 {
                v
            } else {
                v.into_iter()
                    .map(|x| {
                        if x.to_f64().abs() <= 1.0 {
                            x
                        } else {
                            T::zero()
                        }
                    })
                    .collect()
            }
        };
        let a = pick(seed, rows * a_stride);
        let b = pick(seed + 1, len * b_stride);
        let init = pick(seed + 2, rows * cols);
        let op = Product {
            a: &a,
            a_stride,
            b: &b,
            b_stride,
            rows,
            len,
            cols,
            out_stride: cols,
        };
        for accumulate in [false, true] {
            let want: Vec<T> = (0..rows * cols)
                .map(|e| {
                    let (i, x) = (e / cols, e % cols);
                    let chain = (0..len).fold(T::zero(), |acc, t| {
                        a[i * a_stride + t].mul_add(b[t * b_stride + x], acc)
                    });
                    if accumulate {
                        init[e] + chain
                    } else {
                        chain
                    }
                })
                .collect();
            for isa in Fused::available() {
                let mut out = init.clone();
                product(isa, &op, &mut out, accumulate);
                let what = format!("product {rows}x{len}x{cols}, added {accumulate}, {isa:?}");
                assert_same_bits(&what, &out, &want);
            }
        }
    }
}

#[test]
fn bank_products_give_the_same_bits_on_every_isa() {
    bank_products_all::<f32>();
    bank_products_all::<f64>();
}
