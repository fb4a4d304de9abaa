//! Every tape op's backward against central finite differences in f64 on the CPU reference.

use nhl_autograd::{Params, Tape, Tensor};
use nhl_kernels::cpu::CpuBackend;
use nhl_kernels::testing::{assert_close, random_vec};
use nhl_kernels::{Backend, Binary, Shape, Unary};

type B = CpuBackend<f64>;

const H: f64 = 1e-5;

/// A scalar function of some input matrices, written with tape ops.
type Loss = dyn Fn(&Tape<'_, B>, &[Tensor<B>]) -> Tensor<B>;

/// Compares the tape's gradient of `f` at `inputs` with central differences, input by input.
fn fd_check(what: &str, inputs: &[(Vec<f64>, Shape)], f: &Loss) {
    let cpu = B::new();
    let tape = Tape::new(&cpu);
    let leaves: Vec<Tensor<B>> = inputs
        .iter()
        .map(|(d, s)| tape.leaf(cpu.upload(d, *s).unwrap()))
        .collect();
    let loss = f(&tape, &leaves);
    let grads = tape.backward(&loss).unwrap();
    assert!(tape.is_empty(), "{what}: backward releases the tape");
    let eval = |which: usize, data: &[f64]| -> f64 {
        let tape = Tape::new(&cpu);
        tape.no_grad(|| {
            let xs: Vec<Tensor<B>> = inputs
                .iter()
                .enumerate()
                .map(|(i, (d, s))| {
                    tape.constant(cpu.upload(if i == which { data } else { d }, *s).unwrap())
                })
                .collect();
            let l = f(&tape, &xs);
            assert_eq!(tape.len(), 0, "{what}: no-grad mode records nothing");
            tape.to_vec(&l).unwrap()[0]
        })
    };
    for (which, (data, _)) in inputs.iter().enumerate() {
        let analytic = cpu
            .download(
                grads
                    .get(&leaves[which])
                    .expect("gradient reaches every leaf"),
            )
            .unwrap();
        let numeric: Vec<f64> = (0..data.len())
            .map(|i| {
                let mut p = data.clone();
                p[i] += H;
                let mut m = data.clone();
                m[i] -= H;
                (eval(which, &p) - eval(which, &m)) / (2.0 * H)
            })
            .collect();
        assert_close(
            &format!("{what}: input {which}"),
            &analytic,
            &numeric,
            1e-8,
            1e-6,
        );
    }
}

fn input(seed: u64, rows: usize, cols: usize, lo: f64, hi: f64) -> (Vec<f64>, Shape) {
    (
        random_vec(seed, rows * cols, lo, hi),
        Shape::new(rows, cols),
    )
}

/// A random weighting so that each output element matters differently.
fn weighted_sum(t: &Tape<'_, B>, y: &Tensor<B>, seed: u64) -> Tensor<B> {
    let s = y.shape();
    let r = t.constant(
        t.backend()
            .upload(&random_vec(seed, s.len(), -1.0, 1.0), s)
            .unwrap(),
    );
    t.sum_all(&t.mul(y, &r).unwrap()).unwrap()
}

#[test]
fn matmul_every_transpose_and_bias() {
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let a = if ta {
            input(1, 4, 3, -1.0, 1.0)
        } else {
            input(1, 3, 4, -1.0, 1.0)
        };
        let b = if tb {
            input(2, 5, 4, -1.0, 1.0)
        } else {
            input(2, 4, 5, -1.0, 1.0)
        };
        let bias = input(3, 1, 5, -1.0, 1.0);
        fd_check(&format!("matmul {ta} {tb}"), &[a, b, bias], &move |t, x| {
            weighted_sum(t, &t.matmul(&x[0], ta, &x[1], tb, Some(&x[2])).unwrap(), 9)
        });
    }
}

#[test]
fn every_unary_op() {
    let ops = [
        (Unary::Relu, -1.0, 1.0),
        (Unary::Tanh, -2.0, 2.0),
        (Unary::Abs, -1.0, 1.0),
        (Unary::Exp, -2.0, 2.0),
        (Unary::Log, 0.2, 3.0),
        (Unary::Softplus, -5.0, 5.0),
        (Unary::LogCosh, -3.0, 3.0),
        (Unary::Square, -2.0, 2.0),
        (Unary::Sigmoid, -4.0, 4.0),
        (Unary::Sqrt, 0.2, 3.0),
        (Unary::Scale(0.37), -1.0, 1.0),
        (Unary::AddScalar(-2.5), -1.0, 1.0),
        (Unary::Clamp { lo: -1.0, hi: 1.0 }, -2.0, 2.0),
    ];
    for (i, (op, lo, hi)) in ops.into_iter().enumerate() {
        fd_check(
            &format!("{op:?}"),
            &[input(10 + i as u64, 3, 7, lo, hi)],
            &move |t, x| weighted_sum(t, &t.unary(op, &x[0]).unwrap(), 11),
        );
    }
}

#[test]
fn sign_passes_no_gradient() {
    let cpu = B::new();
    let tape = Tape::new(&cpu);
    let x = tape.leaf(
        cpu.upload(&random_vec(5, 6, -1.0, 1.0), Shape::new(2, 3))
            .unwrap(),
    );
    let s = tape.sign(&x).unwrap();
    assert!(s.node().is_none(), "sign records nothing");
    assert_eq!(
        tape.to_vec(&s)
            .unwrap()
            .iter()
            .filter(|v| v.abs() != 1.0)
            .count(),
        0
    );
}

#[test]
fn every_binary_op_with_broadcasts() {
    for op in [
        Binary::Add,
        Binary::Sub,
        Binary::Mul,
        Binary::Div,
        Binary::Bce,
    ] {
        for (rows, cols) in [(4, 6), (1, 6), (4, 1), (1, 1)] {
            let (alo, ahi, blo, bhi) = match op {
                Binary::Div => (-1.0, 1.0, 0.5, 2.0),
                Binary::Bce => (0.05, 0.95, 0.0, 1.0),
                _ => (-1.0, 1.0, -1.0, 1.0),
            };
            let a = input(20, 4, 6, alo, ahi);
            let b = input(21, rows, cols, blo, bhi);
            fd_check(&format!("{op:?} [{rows},{cols}]"), &[a, b], &move |t, x| {
                weighted_sum(t, &t.binary(op, &x[0], &x[1]).unwrap(), 12)
            });
        }
    }
}

#[test]
fn sums_and_means() {
    fd_check("sum_all", &[input(30, 3, 5, -1.0, 1.0)], &|t, x| {
        t.sum_all(&t.square(&x[0]).unwrap()).unwrap()
    });
    fd_check("mean_all", &[input(31, 3, 5, -1.0, 1.0)], &|t, x| {
        t.mean_all(&t.square(&x[0]).unwrap()).unwrap()
    });
    fd_check("row_sums", &[input(32, 3, 5, -1.0, 1.0)], &|t, x| {
        weighted_sum(t, &t.row_sums(&x[0]).unwrap(), 13)
    });
    fd_check("col_sums", &[input(33, 3, 5, -1.0, 1.0)], &|t, x| {
        weighted_sum(t, &t.col_sums(&x[0]).unwrap(), 14)
    });
    fd_check("row_means", &[input(34, 3, 5, -1.0, 1.0)], &|t, x| {
        weighted_sum(t, &t.row_means(&x[0]).unwrap(), 15)
    });
}

#[test]
fn row_normalize_and_gram() {
    fd_check("row_normalize", &[input(40, 5, 4, -1.0, 1.0)], &|t, x| {
        weighted_sum(t, &t.row_normalize(&x[0], 1e-12).unwrap(), 16)
    });
    // U U^T uses the same tensor twice: the gradients of both operands are summed (fan-in).
    fd_check("gram", &[input(41, 5, 4, -1.0, 1.0)], &|t, x| {
        weighted_sum(t, &t.matmul_nt(&x[0], &x[0]).unwrap(), 17)
    });
}

#[test]
fn column_slices_write_into_their_columns() {
    for len in [1, 3, 8, 16] {
        fd_check(
            &format!("slice {len}"),
            &[input(50, 4, 16, -1.0, 1.0)],
            &move |t, x| weighted_sum(t, &t.slice_cols(&x[0], 0, len).unwrap(), 18),
        );
    }
    // Several prefixes of one output: the nested-code pattern, gradients summed per column.
    fd_check(
        "nested prefixes",
        &[input(51, 4, 16, -1.0, 1.0)],
        &|t, x| {
            let mut total = None;
            for (k, b) in [2usize, 4, 8, 16].into_iter().enumerate() {
                let part = weighted_sum(
                    t,
                    &t.tanh(&t.slice_cols(&x[0], 0, b).unwrap()).unwrap(),
                    19 + k as u64,
                );
                total = Some(match total {
                    None => part,
                    Some(acc) => t.add(&acc, &part).unwrap(),
                });
            }
            total.unwrap()
        },
    );
}

#[test]
fn gather_rows_with_duplicates() {
    let cpu = B::new();
    let idx = cpu.upload_idx(&[2, 0, 2, 1, 2]).unwrap();
    fd_check("gather", &[input(60, 3, 4, -1.0, 1.0)], &move |t, x| {
        weighted_sum(t, &t.gather_rows(&x[0], &idx).unwrap(), 20)
    });
}

#[test]
fn detach_stops_the_gradient() {
    let cpu = B::new();
    let tape = Tape::new(&cpu);
    let x = tape.leaf(
        cpu.upload(&random_vec(70, 6, -1.0, 1.0), Shape::new(2, 3))
            .unwrap(),
    );
    // L = sum(x * sg(x)): dL/dx = sg(x), not 2x.
    let loss = tape.sum_all(&tape.mul(&x, &x.detach()).unwrap()).unwrap();
    let grads = tape.backward(&loss).unwrap();
    assert_eq!(
        cpu.download(grads.get(&x).unwrap()).unwrap(),
        cpu.download(x.value()).unwrap()
    );
}

#[test]
fn seeded_backward_reads_intermediate_gradients() {
    let cpu = B::new();
    let tape = Tape::new(&cpu);
    let u = tape.leaf(
        cpu.upload(&random_vec(80, 12, -1.0, 1.0), Shape::new(3, 4))
            .unwrap(),
    );
    let short = tape.slice_cols(&u, 0, 2).unwrap();
    let long = tape.tanh(&u).unwrap();
    let seed_long = cpu
        .upload(&random_vec(81, 12, -1.0, 1.0), Shape::new(3, 4))
        .unwrap();
    let seed_short = cpu
        .upload(&random_vec(82, 6, -1.0, 1.0), Shape::new(3, 2))
        .unwrap();
    let grads = tape
        .backward_from(&[(&long, seed_long.clone()), (&short, seed_short.clone())])
        .unwrap();
    assert_eq!(
        cpu.download(grads.get(&short).unwrap()).unwrap(),
        cpu.download(&seed_short).unwrap()
    );
    let t = cpu.download(long.value()).unwrap();
    let sl = cpu.download(&seed_long).unwrap();
    let ss = cpu.download(&seed_short).unwrap();
    let want: Vec<f64> = (0..12)
        .map(|i| {
            sl[i] * (1.0 - t[i] * t[i])
                + if i % 4 < 2 {
                    ss[i / 4 * 2 + i % 4]
                } else {
                    0.0
                }
        })
        .collect();
    assert_close(
        "du",
        &cpu.download(grads.get(&u).unwrap()).unwrap(),
        &want,
        1e-14,
        1e-14,
    );
    let wrong = cpu.zeros(Shape::new(1, 1)).unwrap();
    let tape = Tape::new(&cpu);
    let v = tape.leaf(cpu.zeros(Shape::new(2, 2)).unwrap());
    assert!(
        tape.backward_from(&[(&v, wrong)]).is_err(),
        "a seed of the wrong shape is an error"
    );
}

#[test]
fn no_grad_records_nothing_and_backward_releases_the_tape() {
    let cpu = B::new();
    let tape = Tape::new(&cpu);
    let x = tape.leaf(
        cpu.upload(&random_vec(90, 8, -1.0, 1.0), Shape::new(2, 4))
            .unwrap(),
    );
    let before = tape.len();
    let y = tape.no_grad(|| tape.tanh(&tape.square(&x).unwrap()).unwrap());
    assert_eq!(tape.len(), before, "no-grad mode adds no node");
    assert!(y.node().is_none());
    let loss = tape.mean_all(&tape.tanh(&x).unwrap()).unwrap();
    assert!(tape.len() > before);
    tape.backward(&loss).unwrap();
    assert_eq!(tape.len(), 0, "backward releases every node");
    assert!(
        tape.backward(&tape.leaf(cpu.zeros(Shape::new(2, 2)).unwrap()))
            .is_err(),
        "non-scalar root"
    );
}

#[test]
fn params_collect_gradients_by_name() {
    let cpu = B::new();
    let mut params = Params::new();
    let w = params
        .add(
            "w",
            cpu.upload(&random_vec(95, 6, -1.0, 1.0), Shape::new(2, 3))
                .unwrap(),
        )
        .unwrap();
    assert!(
        params
            .add("w", cpu.zeros(Shape::new(1, 1)).unwrap())
            .is_err(),
        "duplicate names are refused"
    );
    for _ in 0..2 {
        let tape = Tape::new(&cpu);
        let wt = params.leaf(&tape, w);
        let loss = tape.sum_all(&tape.square(&wt).unwrap()).unwrap();
        let grads = tape.backward(&loss).unwrap();
        params.accumulate(&cpu, &grads).unwrap();
    }
    let value = cpu.download(&params.get(w).value).unwrap();
    let grad = cpu.download(params.get(w).grad.as_ref().unwrap()).unwrap();
    assert_close(
        "2 passes of d(w^2)",
        &grad,
        &value.iter().map(|v| 4.0 * v).collect::<Vec<_>>(),
        1e-14,
        1e-14,
    );
    params.zero_grad();
    assert!(params.get(w).grad.is_none());
}
