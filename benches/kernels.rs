//! Matmul throughput at the training shapes of the nested projection: the forward passes
//! `Y = X W^T + b` of the two layers and their backward products `dX = dY W` and `dW = dY^T X`,
//! on the CPU backend, on the GPU backend (whatever adapter is found, software allowed; its id
//! names it, e.g. `vulkan-llvmpipe`), on `matrixmultiply` called directly (`library`, one thread:
//! compare with `cpu` under `RAYON_NUM_THREADS=1`) and on a naive triple loop as the baseline.
//!
//! Throughput is `2 m n k` elements per iteration, so criterion's elements/s read as FLOP/s.
//! GPU work is synchronised inside the timed closure; uploads happen outside it.
//!
//! The `objectives` group times the fused per-length objectives of one `full` NHL step at the
//! training shape (batch 64, lengths 8..128): five CSQ objectives and four SP distillations, each
//! with its gradient; DHN's memory-bank pass over a 5,000-item bank for all five lengths at once
//! (`bank_dhn_full_step`) against the five single-length models' passes, each over a bank as wide
//! as its length (`bank_dhn_single_steps`), which is the bank work a `full` step saves; and the
//! within-batch kernels of HashNet and DTSH at the five lengths.
//!
//! `cargo bench --bench kernels -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::Duration;

use anyhow::Result;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nhl_kernels::cpu::CpuBackend;
use nhl_kernels::gpu::{AdapterPolicy, GpuBackend};
use nhl_kernels::rng::SplitMix64;
use nhl_kernels::{Backend, BankLoss, BankPair, HashingOps, Quantisation, Shape};

/// One product `op(A) op(B) (+ bias)` with `op(A)` m x k and `op(B)` k x n.
struct Case {
    name: &'static str,
    m: usize,
    k: usize,
    n: usize,
    trans_a: bool,
    trans_b: bool,
    bias: bool,
}

const CASES: [Case; 6] = [
    // Backbone: X (64x784) W1^T (1024x784) + b1, and its gradients.
    Case {
        name: "fwd_64x784x1024",
        m: 64,
        k: 784,
        n: 1024,
        trans_a: false,
        trans_b: true,
        bias: true,
    },
    Case {
        name: "dx_64x1024x784",
        m: 64,
        k: 1024,
        n: 784,
        trans_a: false,
        trans_b: false,
        bias: false,
    },
    Case {
        name: "dw_1024x64x784",
        m: 1024,
        k: 64,
        n: 784,
        trans_a: true,
        trans_b: false,
        bias: false,
    },
    // Nested projection to the 128-bit code: H (64x1024) W2^T (128x1024) + b2, and its gradients.
    Case {
        name: "fwd_64x1024x128",
        m: 64,
        k: 1024,
        n: 128,
        trans_a: false,
        trans_b: true,
        bias: true,
    },
    Case {
        name: "dx_64x128x1024",
        m: 64,
        k: 128,
        n: 1024,
        trans_a: false,
        trans_b: false,
        bias: false,
    },
    Case {
        name: "dw_128x64x1024",
        m: 128,
        k: 64,
        n: 1024,
        trans_a: true,
        trans_b: false,
        bias: false,
    },
];

impl Case {
    fn shape_a(&self) -> Shape {
        if self.trans_a {
            Shape::new(self.k, self.m)
        } else {
            Shape::new(self.m, self.k)
        }
    }

    fn shape_b(&self) -> Shape {
        if self.trans_b {
            Shape::new(self.n, self.k)
        } else {
            Shape::new(self.k, self.n)
        }
    }

    fn flops(&self) -> u64 {
        2 * (self.m * self.n * self.k) as u64
    }
}

fn random(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..n).map(|_| rng.uniform(-1.0, 1.0) as f32).collect()
}

/// The seeded `A`, `B` and bias of the `i`-th case, the same in every bench of the group.
fn operands(i: usize, case: &Case) -> [Vec<f32>; 3] {
    let seed = 10 * i as u64;
    [
        random(seed, case.shape_a().len()),
        random(seed + 1, case.shape_b().len()),
        random(seed + 2, case.n),
    ]
}

/// The textbook triple loop, transposes by index arithmetic: the baseline.
fn naive(case: &Case, a: &[f32], b: &[f32], bias: &[f32]) -> Vec<f32> {
    let (m, k, n) = (case.m, case.k, case.n);
    let at = |i: usize, p: usize| {
        if case.trans_a {
            a[p * m + i]
        } else {
            a[i * k + p]
        }
    };
    let bt = |p: usize, j: usize| {
        if case.trans_b {
            b[j * k + p]
        } else {
            b[p * n + j]
        }
    };
    let mut c = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = if case.bias { bias[j] } else { 0.0 };
            for p in 0..k {
                s += at(i, p) * bt(p, j);
            }
            c[i * n + j] = s;
        }
    }
    c
}

fn bench_backend<B: Backend<Elem = f32>>(c: &mut Criterion, backend: &B, id: &str) -> Result<()> {
    let mut group = c.benchmark_group("matmul");
    group.sample_size(10);
    for (i, case) in CASES.iter().enumerate() {
        let [a, b, bias] = operands(i, case);
        let a = backend.upload(&a, case.shape_a())?;
        let b = backend.upload(&b, case.shape_b())?;
        let bias = backend.upload(&bias, Shape::new(1, case.n))?;
        let bias = case.bias.then_some(&bias);
        // Fail loudly here rather than time an error.
        backend.matmul(&a, case.trans_a, &b, case.trans_b, bias)?;
        backend.sync()?;
        group.throughput(Throughput::Elements(case.flops()));
        group.bench_function(format!("{}/{id}", case.name), |bench| {
            bench.iter(|| {
                let y = backend.matmul(&a, case.trans_a, &b, case.trans_b, bias)?;
                backend.sync()?;
                Ok::<_, nhl_kernels::KernelError>(black_box(y))
            })
        });
    }
    group.finish();
    Ok(())
}

/// The fused objectives of one `full` step: CSQ at every length, SP for every adjacent pair.
fn bench_objectives<B: HashingOps<Elem = f32>>(
    c: &mut Criterion,
    backend: &B,
    id: &str,
) -> Result<()> {
    const BITS: [usize; 5] = [8, 16, 32, 64, 128];
    let (n, items) = (64, 5000);
    let codes = backend.upload(&random(90, n * 128), Shape::new(n, 128))?;
    let targets = BITS
        .iter()
        .map(|&b| {
            let signs: Vec<f32> = random(91 + b as u64, items * b)
                .into_iter()
                .map(|v| if v < 0.0 { -1.0 } else { 1.0 })
                .collect();
            backend.upload(&signs, Shape::new(items, b))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let idx: Vec<u32> = (0..n as u32).map(|i| i * 73 % items as u32).collect();
    let idx = backend.upload_idx(&idx)?;
    let step = || -> Result<Vec<B::Buf>, nhl_kernels::KernelError> {
        let mut out = Vec::new();
        for (k, (&b, t)) in BITS.iter().zip(&targets).enumerate() {
            out.push(backend.csq_objective(&codes, b, t, &idx, 1e-4)?.1);
            if let Some(&teacher) = BITS.get(k + 1) {
                out.push(backend.sp_distill(&codes, b, teacher, 1e-12)?.1);
            }
        }
        backend.sync()?;
        Ok(out)
    };
    step()?;
    let mut group = c.benchmark_group("objectives");
    group.sample_size(20);
    group.bench_function(format!("csq_sp_full_step/{id}"), |bench| {
        bench.iter(|| black_box(step()))
    });

    // Ten classes; the batch holds bank items 0, 73, 146, ...
    let classes = 10;
    let one_hot = |rows: usize, class: &dyn Fn(usize) -> usize| -> Vec<f32> {
        let mut y = vec![0.0; rows * classes];
        for r in 0..rows {
            y[r * classes + class(r)] = 1.0;
        }
        y
    };
    let labels = backend.upload(
        &one_hot(n, &|i| i * 73 % items % classes),
        Shape::new(n, classes),
    )?;
    let bank_labels = backend.upload(
        &one_hot(items, &|j| j % classes),
        Shape::new(items, classes),
    )?;
    let dhn = BankLoss {
        pair: BankPair::Likelihood,
        pair_weight: 1.0,
        quant: Quantisation::LogCosh,
        alpha: 0.1,
        clamp_unit: false,
    };
    let bank_of =
        |width: usize| backend.upload(&random(92, items * width), Shape::new(items, width));
    let full_bank = bank_of(128)?;
    let single_banks = BITS
        .iter()
        .map(|&b| bank_of(b))
        .collect::<Result<Vec<_>, _>>()?;
    let single_codes = BITS
        .iter()
        .map(|&b| backend.upload(&random(93, n * b), Shape::new(n, b)))
        .collect::<Result<Vec<_>, _>>()?;
    let full_bank_step = || -> Result<(), nhl_kernels::KernelError> {
        black_box(backend.bank_objectives(
            &codes,
            &BITS,
            &labels,
            &full_bank,
            &bank_labels,
            &dhn,
        )?);
        backend.sync()
    };
    let single_bank_steps = || -> Result<(), nhl_kernels::KernelError> {
        for ((&b, bank), u) in BITS.iter().zip(&single_banks).zip(&single_codes) {
            black_box(backend.bank_objectives(u, &[b], &labels, bank, &bank_labels, &dhn)?);
        }
        backend.sync()
    };
    let within = |dtsh: bool| -> Result<(), nhl_kernels::KernelError> {
        for &b in &BITS {
            black_box(match dtsh {
                true => backend.dtsh_objective(&codes, b, &labels, 5.0, 0.1)?,
                false => backend.hashnet_objective(&codes, b, &labels, 0.1, 1.0)?,
            });
        }
        backend.sync()
    };
    full_bank_step()?;
    single_bank_steps()?;
    within(true)?;
    within(false)?;
    group.bench_function(format!("bank_dhn_full_step/{id}"), |bench| {
        bench.iter(|| black_box(full_bank_step()))
    });
    group.bench_function(format!("bank_dhn_single_steps/{id}"), |bench| {
        bench.iter(|| black_box(single_bank_steps()))
    });
    group.bench_function(format!("dtsh_full_step/{id}"), |bench| {
        bench.iter(|| black_box(within(true)))
    });
    group.bench_function(format!("hashnet_full_step/{id}"), |bench| {
        bench.iter(|| black_box(within(false)))
    });
    group.finish();
    Ok(())
}

fn bench_naive(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul");
    group.sample_size(10);
    for (i, case) in CASES.iter().enumerate() {
        let [a, b, bias] = operands(i, case);
        group.throughput(Throughput::Elements(case.flops()));
        group.bench_function(format!("{}/naive", case.name), |bench| {
            bench.iter(|| naive(case, black_box(&a), black_box(&b), black_box(&bias)))
        });
    }
    group.finish();
}

/// `matrixmultiply`'s `sgemm` on the whole product in one call on the calling thread, with the
/// bias added after: what the CPU backend ran before its products read their operands in place
/// (`cpu/fused_matmul.rs`). Compare with `cpu` under `RAYON_NUM_THREADS=1` for the same work on
/// one thread.
fn bench_library(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul");
    group.sample_size(10);
    for (i, case) in CASES.iter().enumerate() {
        let [a, b, bias] = operands(i, case);
        let (m, k, n) = (case.m, case.k, case.n);
        let (rsa, csa) = if case.trans_a { (1, m) } else { (k, 1) };
        let (rsb, csb) = if case.trans_b { (1, k) } else { (n, 1) };
        group.throughput(Throughput::Elements(case.flops()));
        group.bench_function(format!("{}/library", case.name), |bench| {
            bench.iter(|| {
                let mut out = vec![0.0f32; m * n];
                // SAFETY: op(A) is m x k and op(B) k x n for these strides; out is m x n.
                unsafe {
                    matrixmultiply::sgemm(
                        m,
                        k,
                        n,
                        1.0,
                        a.as_ptr(),
                        rsa as isize,
                        csa as isize,
                        b.as_ptr(),
                        rsb as isize,
                        csb as isize,
                        0.0,
                        out.as_mut_ptr(),
                        n as isize,
                        1,
                    )
                };
                if case.bias {
                    for row in out.chunks_mut(n) {
                        for (o, &bv) in row.iter_mut().zip(&bias) {
                            *o += bv;
                        }
                    }
                }
                black_box(out)
            })
        });
    }
    group.finish();
}

fn matmul(c: &mut Criterion) {
    let run = |c: &mut Criterion| -> Result<()> {
        let cpu = CpuBackend::<f32>::new();
        bench_backend(c, &cpu, "cpu")?;
        bench_objectives(c, &cpu, "cpu")?;
        match GpuBackend::new(AdapterPolicy::AllowSoftware) {
            Ok(gpu) => {
                eprintln!("GPU benches on {}", gpu.adapter());
                let id = gpu.adapter().slug();
                bench_backend(c, &gpu, &id)?;
                bench_objectives(c, &gpu, &id)?;
            }
            Err(e) => eprintln!("skipping GPU benches: {e}"),
        }
        bench_library(c);
        bench_naive(c);
        Ok(())
    };
    if let Err(e) = run(c) {
        eprintln!("kernels bench failed: {e:#}");
        std::process::exit(1);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = matmul
}
criterion_main!(benches);
