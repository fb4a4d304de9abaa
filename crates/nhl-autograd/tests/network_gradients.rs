//! A two-layer network with a nested head and a CSQ-like loss: every parameter gradient from the
//! tape against finite differences (f64, CPU), and the same body run in f32 on the CPU and GPU
//! backends against the f64 result. Also every tape op's forward and backward on each backend.

use nhl_autograd::{Params, Tape, Tensor};
use nhl_kernels::cpu::CpuBackend;
use nhl_kernels::testing::{assert_close, random_vec};
use nhl_kernels::{Backend, Real, Shape, Unary};

const BATCH: usize = 5;
const INPUT: usize = 7;
const HIDDEN: usize = 6;
const LENGTHS: [usize; 3] = [2, 4, 8];
const PARAMS: [(&str, usize, usize); 4] = [
    ("w1", HIDDEN, INPUT),
    ("b1", 1, HIDDEN),
    ("w2", 8, HIDDEN),
    ("b2", 1, 8),
];

fn upload<B: Backend>(b: &B, data: &[f64], shape: Shape) -> B::Buf {
    let v: Vec<B::Elem> = data.iter().map(|&x| B::Elem::from_f64(x)).collect();
    b.upload(&v, shape).unwrap()
}

fn download<B: Backend>(b: &B, x: &B::Buf) -> Vec<f64> {
    b.download(x)
        .unwrap()
        .into_iter()
        .map(|v| v.to_f64())
        .collect()
}

/// The seeded inputs, targets and parameter values of the test network.
struct Net {
    x: Vec<f64>,
    targets: Vec<Vec<f64>>,
    params: Vec<Vec<f64>>,
}

impl Net {
    fn new() -> Self {
        let targets = LENGTHS
            .iter()
            .enumerate()
            .map(|(k, &b)| {
                random_vec(50 + k as u64, BATCH * b, 0.0, 1.0)
                    .iter()
                    .map(|v| v.round())
                    .collect()
            })
            .collect();
        let params = PARAMS
            .iter()
            .enumerate()
            .map(|(i, &(_, r, c))| random_vec(10 + i as u64, r * c, -0.8, 0.8))
            .collect();
        Self {
            x: random_vec(1, BATCH * INPUT, -1.0, 1.0),
            targets,
            params,
        }
    }

    /// Loss and parameter gradients on backend `b`.
    fn loss_and_grads<B: Backend>(&self, b: &B, params: &[Vec<f64>]) -> (f64, Vec<Vec<f64>>) {
        let mut store = Params::new();
        let ids: Vec<_> = PARAMS
            .iter()
            .zip(params)
            .map(|(&(name, r, c), v)| store.add(name, upload(b, v, Shape::new(r, c))).unwrap())
            .collect();
        let tape = Tape::new(b);
        let p: Vec<Tensor<B>> = ids.iter().map(|&id| store.leaf(&tape, id)).collect();
        let x = tape.constant(upload(b, &self.x, Shape::new(BATCH, INPUT)));
        let h = tape.relu(&tape.linear(&x, &p[0], &p[1]).unwrap()).unwrap();
        let u = tape.linear(&h, &p[2], &p[3]).unwrap();
        let mut total: Option<Tensor<B>> = None;
        for (k, &bits) in LENGTHS.iter().enumerate() {
            let v = tape.tanh(&tape.slice_cols(&u, 0, bits).unwrap()).unwrap();
            let prob = tape.add_scalar(&tape.scale(&v, 0.5).unwrap(), 0.5).unwrap();
            let t = tape.constant(upload(b, &self.targets[k], Shape::new(BATCH, bits)));
            let centre = tape.mean_all(&tape.bce(&prob, &t).unwrap()).unwrap();
            let quant = tape
                .mean_all(
                    &tape
                        .square(&tape.add_scalar(&tape.abs(&v).unwrap(), -1.0).unwrap())
                        .unwrap(),
                )
                .unwrap();
            let j = tape
                .add(&centre, &tape.scale(&quant, 0.1).unwrap())
                .unwrap();
            total = Some(match total {
                None => j,
                Some(acc) => tape.add(&acc, &j).unwrap(),
            });
        }
        let total = total.unwrap();
        let loss = download(b, total.value())[0];
        let grads = tape.backward(&total).unwrap();
        store.accumulate(b, &grads).unwrap();
        let g = ids
            .iter()
            .map(|&id| download(b, store.get(id).grad.as_ref().unwrap()))
            .collect();
        (loss, g)
    }
}

#[test]
fn every_parameter_gradient_matches_finite_differences() {
    let cpu = CpuBackend::<f64>::new();
    let net = Net::new();
    let (_, analytic) = net.loss_and_grads(&cpu, &net.params);
    for (which, (name, _, _)) in PARAMS.iter().enumerate() {
        let numeric: Vec<f64> = (0..net.params[which].len())
            .map(|i| {
                let mut plus = net.params.clone();
                plus[which][i] += 1e-6;
                let mut minus = net.params.clone();
                minus[which][i] -= 1e-6;
                (net.loss_and_grads(&cpu, &plus).0 - net.loss_and_grads(&cpu, &minus).0) / 2e-6
            })
            .collect();
        assert_close(name, &analytic[which], &numeric, 1e-8, 1e-6);
    }
}

/// The f32 run of the network on `b` against the f64 reference.
fn check_network_f32<B: Backend<Elem = f32>>(b: &B) {
    let net = Net::new();
    let (want_loss, want) = net.loss_and_grads(&CpuBackend::<f64>::new(), &net.params);
    let (loss, got) = net.loss_and_grads(b, &net.params);
    assert_close(
        &format!("{} loss", b.name()),
        &[loss],
        &[want_loss],
        1e-5,
        1e-5,
    );
    for (i, (name, _, _)) in PARAMS.iter().enumerate() {
        assert_close(
            &format!("{} {name}", b.name()),
            &got[i],
            &want[i],
            1e-5,
            1e-4,
        );
    }
}

/// Each unary op through the tape (value and gradient) on `b` against the f64 reference.
fn check_ops_f32<B: Backend<Elem = f32>>(b: &B) {
    let on = |x: &[f64], op: Unary| -> (Vec<f64>, Vec<f64>) {
        let tape = Tape::new(b);
        let leaf = tape.leaf(upload(b, x, Shape::new(3, 11)));
        let y = tape.unary(op, &leaf).unwrap();
        let l = tape.sum_all(&tape.square(&y).unwrap()).unwrap();
        let value = download(b, y.value());
        let g = tape.backward(&l).unwrap();
        (value, download(b, g.get(&leaf).unwrap()))
    };
    let reference = |x: &[f64], op: Unary| -> (Vec<f64>, Vec<f64>) {
        let cpu = CpuBackend::<f64>::new();
        let tape = Tape::new(&cpu);
        let leaf = tape.leaf(upload(&cpu, x, Shape::new(3, 11)));
        let y = tape.unary(op, &leaf).unwrap();
        let l = tape.sum_all(&tape.square(&y).unwrap()).unwrap();
        let value = download(&cpu, y.value());
        let g = tape.backward(&l).unwrap();
        (value, download(&cpu, g.get(&leaf).unwrap()))
    };
    for (i, op) in [
        Unary::Relu,
        Unary::Tanh,
        Unary::Abs,
        Unary::Exp,
        Unary::Softplus,
        Unary::LogCosh,
        Unary::Sigmoid,
        Unary::Clamp { lo: -0.3, hi: 0.4 },
    ]
    .into_iter()
    .enumerate()
    {
        let x = random_vec(300 + i as u64, 33, -1.5, 1.5);
        let (gv, gg) = on(&x, op);
        let (wv, wg) = reference(&x, op);
        assert_close(&format!("{} {op:?} value", b.name()), &gv, &wv, 1e-5, 1e-5);
        assert_close(&format!("{} {op:?} grad", b.name()), &gg, &wg, 1e-5, 1e-4);
    }
}

nhl_kernels::on_every_backend!(check_network_f32, check_ops_f32);
