//! Every base loss on a tiny case: its value against a direct evaluation of the formulas of
//! docs/METHOD.md section 5 (plain `f64` loops, written independently of the tape form), and its
//! gradient `dJ/dU` against central finite differences in `f64`. Single-label and multi-label
//! (multi-hot, one item without any label) batches alike.

use nhl_autograd::Tape;
use nhl_index::eval::Labels;
use nhl_kernels::cpu::CpuBackend;
use nhl_kernels::testing::{assert_close, random_vec};
use nhl_kernels::{Backend, Shape};
use nhl_train::config::Method;
use nhl_train::data::Dataset;
use nhl_train::losses::params::LossParams;
use nhl_train::losses::{Bank, BatchContext, LengthLoss};
use nhl_train::targets::{csq_centres, target_rows};

type Cpu = CpuBackend<f64>;

const N: usize = 6;
const BITS: usize = 4;
const CLASSES: usize = 3;
/// Bank rows, and the bank's width (wider than the length, as the longest code is).
const BANK: usize = 8;
const WIDTH: usize = 5;

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// A batch of `N` items of a training set of `BANK` items, labels, and a bank holding the batch
/// (written before the loss reads it) beside older rows and one row never visited.
struct Case {
    cpu: Cpu,
    train: Dataset,
    /// `N x CLASSES` multi-hot rows of the batch.
    labels: Vec<f64>,
    /// `BANK x WIDTH` bank codes and `BANK x CLASSES` bank labels.
    bank_codes: Vec<f64>,
    bank_labels: Vec<f64>,
    idx: Vec<u32>,
}

impl Case {
    /// `multi`: multi-hot labels (item 1 has two classes, item 4 none); else one class each.
    fn new(multi: bool) -> Case {
        let classes: Vec<Vec<u32>> = if multi {
            vec![
                vec![0],
                vec![0, 2],
                vec![1],
                vec![2],
                vec![],
                vec![1],
                vec![0, 1],
                vec![2],
            ]
        } else {
            (0..BANK as u32).map(|i| vec![i % CLASSES as u32]).collect()
        };
        let labels = if multi {
            Labels::Multi {
                n_classes: CLASSES,
                rows: classes.clone(),
            }
        } else {
            Labels::Single(classes.iter().map(|c| c[0]).collect())
        };
        let train = Dataset {
            features: vec![0.0; BANK],
            dim: 1,
            labels,
            n_classes: CLASSES,
        };
        let hot = |items: &[usize]| -> Vec<f64> {
            items
                .iter()
                .flat_map(|&i| {
                    (0..CLASSES as u32)
                        .map(|c| f64::from(u8::from(classes[i].contains(&c))))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        // The batch is items 5, 0, 3, 1, 4, 2; bank rows 6 and 7 hold older codes, row 7 was
        // never visited (zero code, no label).
        let idx: Vec<u32> = vec![5, 0, 3, 1, 4, 2];
        let items: Vec<usize> = idx.iter().map(|&i| i as usize).collect();
        let mut bank_codes = random_vec(40, BANK * WIDTH, -1.5, 1.5);
        bank_codes[7 * WIDTH..].fill(0.0);
        let mut bank_labels = hot(&(0..BANK).collect::<Vec<_>>());
        bank_labels[7 * CLASSES..].fill(0.0);
        Case {
            cpu: Cpu::new(),
            train,
            labels: hot(&items),
            bank_codes,
            bank_labels,
            idx,
        }
    }

    /// The batch outputs `u` (`N x BITS`), away from the kinks of `|u|`, `sign u` and clamps.
    fn outputs(seed: u64) -> Vec<f64> {
        random_vec(seed, N * BITS, -1.4, 1.4)
            .into_iter()
            .map(|v| sign(v) * (0.1 + v.abs()))
            .collect()
    }

    fn s(&self, i: usize, j_labels: &[f64]) -> f64 {
        let y = &self.labels[i * CLASSES..(i + 1) * CLASSES];
        f64::from(u8::from(dot(y, j_labels) > 0.0))
    }

    /// Batch similarity `s_pq`.
    fn batch_s(&self, p: usize, q: usize) -> f64 {
        self.s(p, &self.labels[q * CLASSES..(q + 1) * CLASSES])
    }

    /// Batch-to-bank similarity `s_ij`.
    fn bank_s(&self, i: usize, j: usize) -> f64 {
        self.s(i, &self.bank_labels[j * CLASSES..(j + 1) * CLASSES])
    }

    fn bank_row(&self, j: usize) -> &[f64] {
        &self.bank_codes[j * WIDTH..j * WIDTH + BITS]
    }

    /// The bank rows after the batch was written into them (`write` maps the batch codes).
    fn bank(&self, u: &[f64], write: impl Fn(f64) -> f64) -> (Bank<Cpu>, Case) {
        let cpu = &self.cpu;
        let mut bank = Bank::new(cpu, BANK, WIDTH, CLASSES).unwrap();
        let all: Vec<u32> = (0..BANK as u32).collect();
        bank.update(
            cpu,
            &cpu.upload_idx(&all).unwrap(),
            &cpu.upload(&self.bank_codes, Shape::new(BANK, WIDTH))
                .unwrap(),
            &cpu.upload(&self.bank_labels, Shape::new(BANK, CLASSES))
                .unwrap(),
        )
        .unwrap();
        // The batch is written over its rows, in the wider bank's first BITS columns.
        let mut codes = vec![0.0; N * WIDTH];
        for i in 0..N {
            for c in 0..BITS {
                codes[i * WIDTH + c] = write(u[i * BITS + c]);
            }
        }
        bank.update(
            cpu,
            &cpu.upload_idx(&self.idx).unwrap(),
            &cpu.upload(&codes, Shape::new(N, WIDTH)).unwrap(),
            &cpu.upload(&self.labels, Shape::new(N, CLASSES)).unwrap(),
        )
        .unwrap();
        let mut seen = Case {
            cpu: Cpu::new(),
            train: self.train.clone(),
            labels: self.labels.clone(),
            bank_codes: self.bank_codes.clone(),
            bank_labels: self.bank_labels.clone(),
            idx: self.idx.clone(),
        };
        for (i, &item) in self.idx.iter().enumerate() {
            let row = item as usize;
            seen.bank_codes[row * WIDTH..(row + 1) * WIDTH]
                .copy_from_slice(&codes[i * WIDTH..(i + 1) * WIDTH]);
            seen.bank_labels[row * CLASSES..(row + 1) * CLASSES]
                .copy_from_slice(&self.labels[i * CLASSES..(i + 1) * CLASSES]);
        }
        (bank, seen)
    }

    fn loss(&self, method: Method, set: &[(&str, f64)]) -> LengthLoss<Cpu> {
        let overrides = set.iter().map(|&(k, v)| (k.to_string(), v)).collect();
        let params = LossParams::resolve(method, &overrides).unwrap();
        LengthLoss::new(&self.cpu, &params, BITS, &self.train, 3, None).unwrap()
    }

    /// The loss's value and tape gradient at `u`, with the finite-difference gradient.
    fn evaluate(
        &self,
        loss: &LengthLoss<Cpu>,
        bank: Option<&Bank<Cpu>>,
        epoch: usize,
        u: &[f64],
    ) -> (f64, Vec<f64>, Vec<f64>) {
        let cpu = &self.cpu;
        let idx = cpu.upload_idx(&self.idx).unwrap();
        let rows = target_rows(&self.train.labels);
        let target_rows = cpu
            .upload_idx(
                &self
                    .idx
                    .iter()
                    .map(|&i| rows[i as usize])
                    .collect::<Vec<_>>(),
            )
            .unwrap();
        let labels = cpu.upload(&self.labels, Shape::new(N, CLASSES)).unwrap();
        let ctx = BatchContext {
            idx: &idx,
            target_rows: &target_rows,
            labels: &labels,
            bank,
            epoch,
        };
        let at = |u: &[f64]| -> (f64, Vec<f64>) {
            let tape = Tape::new(cpu);
            let leaf = tape.leaf(cpu.upload(u, Shape::new(N, BITS)).unwrap());
            let l = loss.eval(&tape, &leaf, &ctx).unwrap();
            let value = tape.to_vec(&l).unwrap()[0];
            let grads = tape.backward(&l).unwrap();
            (value, cpu.download(grads.get(&leaf).unwrap()).unwrap())
        };
        let (value, grad) = at(u);
        let fd = (0..u.len())
            .map(|i| {
                let h = 1e-6;
                let (mut p, mut m) = (u.to_vec(), u.to_vec());
                p[i] += h;
                m[i] -= h;
                (at(&p).0 - at(&m).0) / (2.0 * h)
            })
            .collect();
        (value, grad, fd)
    }
}

/// Checks the value against `want` and the gradient against finite differences.
fn check(what: &str, (value, grad, fd): (f64, Vec<f64>, Vec<f64>), want: f64) {
    assert_close(&format!("{what} value"), &[value], &[want], 1e-12, 1e-11);
    assert_close(&format!("{what} dJ/dU"), &grad, &fd, 1e-8, 1e-6);
}

/// The mean over the bank of `f(i, j)` (`n x N`).
fn bank_mean(f: impl Fn(usize, usize) -> f64) -> f64 {
    let mut total = 0.0;
    for i in 0..N {
        for j in 0..BANK {
            total += f(i, j);
        }
    }
    total / (N * BANK) as f64
}

fn mean_over(u: &[f64], f: impl Fn(f64) -> f64) -> f64 {
    u.iter().map(|&x| f(x)).sum::<f64>() / u.len() as f64
}

#[test]
fn bank_losses_match_their_definitions() {
    for multi in [false, true] {
        let case = Case::new(multi);
        let u = Case::outputs(7);
        let row = |i: usize| &u[i * BITS..(i + 1) * BITS];
        let tag = |m: &str| format!("{m} (multi-label: {multi})");

        let (bank, seen) = case.bank(&u, |x| x);
        let dsh = bank_mean(|i, j| {
            let d: f64 = row(i)
                .iter()
                .zip(seen.bank_row(j))
                .map(|(a, b)| (a - b).powi(2))
                .sum();
            let s = seen.bank_s(i, j);
            s / 2.0 * d + (1.0 - s) / 2.0 * (2.0 * BITS as f64 - d).max(0.0)
        }) + 0.1 * mean_over(&u, |x| (1.0 - x.abs()).abs());
        let loss = case.loss(Method::Dsh, &[]);
        check(&tag("dsh"), case.evaluate(&loss, Some(&bank), 0, &u), dsh);

        let likelihood = |i: usize, j: usize, code: &[f64]| {
            let theta = 0.5 * dot(code, seen.bank_row(j));
            softplus(theta) - seen.bank_s(i, j) * theta
        };
        let dhn = bank_mean(|i, j| likelihood(i, j, row(i)))
            + 0.1 * mean_over(&u, |x| (x.abs() - 1.0).cosh().ln());
        check(
            &tag("dhn"),
            case.evaluate(&case.loss(Method::Dhn, &[]), Some(&bank), 0, &u),
            dhn,
        );

        let dpsh = bank_mean(|i, j| likelihood(i, j, row(i)))
            + 0.3 * mean_over(&u, |x| (x - sign(x)).powi(2));
        let loss = case.loss(Method::Dpsh, &[("alpha", 0.3)]);
        check(&tag("dpsh"), case.evaluate(&loss, Some(&bank), 0, &u), dpsh);

        // DBDH clamps first, and the bank holds the clamped codes.
        let clamped: Vec<f64> = u.iter().map(|x| x.clamp(-1.0, 1.0)).collect();
        let (bank, seen) = case.bank(&u, |x| x.clamp(-1.0, 1.0));
        let crow = |i: usize| &clamped[i * BITS..(i + 1) * BITS];
        let pair = bank_mean(|i, j| {
            let theta = 0.5 * dot(crow(i), seen.bank_row(j));
            softplus(theta) - seen.bank_s(i, j) * theta
        });
        let row_means: Vec<f64> = (0..N)
            .map(|i| crow(i).iter().sum::<f64>() / BITS as f64)
            .collect();
        for (p, balance) in [
            (2.0, mean_over(&row_means, |m| m * m)),
            (1.0, mean_over(&row_means, f64::abs)),
        ] {
            let loss = case.loss(Method::Dbdh, &[("p", p)]);
            check(
                &tag(&format!("dbdh p={p}")),
                case.evaluate(&loss, Some(&bank), 0, &u),
                pair + 0.1 * balance,
            );
        }
    }
}

#[test]
fn hashnet_dch_lcdsh_and_dtsh_match_their_definitions() {
    for multi in [false, true] {
        let case = Case::new(multi);
        let u = Case::outputs(11);
        let row = |i: usize| &u[i * BITS..(i + 1) * BITS];
        let tag = |m: &str| format!("{m} (multi-label: {multi})");
        let pairs = || (0..N).flat_map(|p| (0..N).map(move |q| (p, q)));
        let similar = pairs().filter(|&(p, q)| case.batch_s(p, q) > 0.0).count() as f64;
        let dissimilar = (N * N) as f64 - similar;

        // HashNet before and after the first continuation step (scale 1, then sqrt 2).
        for (epoch, scale) in [(0, 1.0), (19, 1.0), (20, 2f64.sqrt()), (45, 3f64.sqrt())] {
            let v: Vec<f64> = u.iter().map(|x| (scale * x).tanh()).collect();
            let mut want = 0.0;
            for (p, q) in pairs() {
                let z = 0.1 * dot(&v[p * BITS..(p + 1) * BITS], &v[q * BITS..(q + 1) * BITS]);
                let s = case.batch_s(p, q);
                let l = softplus(z) - s * z;
                want += if s > 0.0 { l / similar } else { l / dissimilar };
            }
            let loss = case.loss(Method::Hashnet, &[]);
            check(
                &tag(&format!("hashnet epoch {epoch}")),
                case.evaluate(&loss, None, epoch, &u),
                want,
            );
        }

        // DCH with gamma 20, lambda 0.1.
        let (gamma, b) = (20.0, BITS as f64);
        let delta = |cos: f64| (1.0 - cos.min(0.99)) * b / 2.0;
        let mut pair = 0.0;
        for (p, q) in pairs() {
            let cos = dot(row(p), row(q)) / (norm(row(p)) * norm(row(q))).max(1e-4);
            let s = case.batch_s(p, q);
            let w = s * (N * N) as f64 / similar + (1.0 - s) * (N * N) as f64 / dissimilar;
            let d = delta(cos);
            pair += w * (s * (d / gamma).ln() + (1.0 + gamma / d).ln());
        }
        let quant: f64 = (0..N)
            .map(|p| {
                let abs_sum: f64 = row(p).iter().map(|x| x.abs()).sum();
                let cos = abs_sum / (norm(row(p)) * b.sqrt()).max(1e-4);
                (1.0 + delta(cos) / gamma).ln()
            })
            .sum::<f64>()
            / N as f64;
        let want = pair / (N * N) as f64 + 0.1 * quant;
        let loss = case.loss(Method::Dch, &[]);
        check(&tag("dch"), case.evaluate(&loss, None, 0, &u), want);

        // LCDSH with lambda 3.
        let mut l1 = 0.0;
        let mut l2 = 0.0;
        for (p, q) in pairs() {
            let sigma = 2.0 * case.batch_s(p, q) - 1.0;
            let theta = (0.5 * dot(row(p), row(q))).clamp(-50.0, 50.0);
            let sp: Vec<f64> = row(p).iter().map(|&x| sign(x)).collect();
            let sq: Vec<f64> = row(q).iter().map(|&x| sign(x)).collect();
            l1 += (1.0 + (-sigma * theta).exp()).ln();
            l2 += (sigmoid(theta) - sigmoid(0.5 * dot(&sp, &sq))).powi(2);
        }
        let want = (l1 + 3.0 * l2) / (N * N) as f64;
        let loss = case.loss(Method::Lcdsh, &[]);
        check(&tag("lcdsh"), case.evaluate(&loss, None, 0, &u), want);

        // DTSH with alpha 1 (so that some triplets are active on both sides) and lambda 0.5.
        let alpha = 1.0;
        let mut rows = Vec::new();
        for a in 0..N {
            let pos: Vec<usize> = (0..N).filter(|&x| case.batch_s(a, x) > 0.0).collect();
            let neg: Vec<usize> = (0..N).filter(|&x| case.batch_s(a, x) == 0.0).collect();
            if pos.is_empty() || neg.is_empty() {
                continue;
            }
            let mut total = 0.0;
            for &p in &pos {
                for &q in &neg {
                    let t = (dot(row(a), row(p)) - dot(row(a), row(q)) - alpha).clamp(-100.0, 50.0);
                    total += -(t - (1.0 + t.exp()).ln());
                }
            }
            rows.push(total / (pos.len() * neg.len()) as f64);
        }
        let triplets = rows.iter().sum::<f64>() / rows.len().max(1) as f64;
        let want = triplets + 0.5 * mean_over(&u, |x| (x - sign(x)).powi(2));
        let loss = case.loss(Method::Dtsh, &[("alpha", alpha), ("lambda", 0.5)]);
        check(&tag("dtsh"), case.evaluate(&loss, None, 0, &u), want);
    }
}

/// The centres SHCIR and MDSH use: CSQ's Hadamard centres of the run's seed.
fn centre_logits(u: &[f64], i: usize) -> Vec<f64> {
    let centres = csq_centres(BITS, CLASSES, 3);
    let row = &u[i * BITS..(i + 1) * BITS];
    (0..CLASSES)
        .map(|c| {
            let z: Vec<f64> = centres[c * BITS..(c + 1) * BITS]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            (BITS as f64).sqrt() * dot(row, &z) / (norm(row) * norm(&z))
        })
        .collect()
}

fn softmax(g: &[f64]) -> Vec<f64> {
    let total: f64 = g.iter().map(|x| x.exp()).sum();
    g.iter().map(|x| x.exp() / total).collect()
}

#[test]
fn shcir_and_mdsh_match_their_definitions() {
    let case = Case::new(false);
    let u = Case::outputs(13);
    let quant = mean_over(&u, |x| (x.abs() - 1.0).powi(2));
    let mut shcir = 0.0;
    for i in 0..N {
        let p = softmax(&centre_logits(&u, i));
        let y = (0..CLASSES)
            .position(|c| case.labels[i * CLASSES + c] > 0.0)
            .unwrap();
        let others: f64 = (0..CLASSES)
            .filter(|&c| c != y)
            .map(|c| (1.0 - p[c]).ln())
            .sum();
        shcir -= p[y].ln() + others / (CLASSES - 1) as f64;
    }
    let want = shcir / N as f64 + 1e-4 * quant;
    let loss = case.loss(Method::Shcir, &[]);
    check("shcir", case.evaluate(&loss, None, 0, &u), want);

    for multi in [false, true] {
        let case = Case::new(multi);
        let mut class_term = 0.0;
        for i in 0..N {
            let p = softmax(&centre_logits(&u, i));
            for (c, &pc) in p.iter().enumerate() {
                let y = case.labels[i * CLASSES + c];
                class_term -= y * pc.ln() + (1.0 - y) * (1.0 - pc).ln();
            }
        }
        let class_term = class_term / (N * CLASSES) as f64 + 0.2 * quant;
        // The bank holds other (momentum) codes; the pair term starts at epoch `pair_from`.
        let (bank, seen) = case.bank(&random_vec(17, N * BITS, -1.0, 1.0), |x| x);
        let mut pair = 0.0;
        let mut similar = 0.0;
        for i in 0..N {
            let row = &u[i * BITS..(i + 1) * BITS];
            for j in 0..BANK {
                let s = seen.bank_s(i, j);
                let bank_row = seen.bank_row(j);
                let cos = dot(row, bank_row) / (norm(row) * norm(bank_row).max(1e-12));
                pair += s * (1.0 + (0.5 * (1.0 - cos)).exp()).ln();
                similar += s;
            }
        }
        let set = [("lambda", 0.2), ("beta", 0.7), ("pair_from", 3.0)];
        let loss = case.loss(Method::Mdsh, &set);
        let tag = |e: usize| format!("mdsh epoch {e} (multi-label: {multi})");
        check(
            &tag(2),
            case.evaluate(&loss, Some(&bank), 2, &u),
            class_term,
        );
        check(
            &tag(3),
            case.evaluate(&loss, Some(&bank), 3, &u),
            class_term + 0.7 * pair / similar,
        );
        // The reference's behaviour: the pair term never runs.
        let dead = case.loss(
            Method::Mdsh,
            &[("lambda", 0.2), ("reference_dead_pair", 1.0)],
        );
        check(
            &format!("mdsh reference (multi-label: {multi})"),
            case.evaluate(&dead, Some(&bank), 30, &u),
            class_term,
        );
    }
}

#[test]
fn csq_and_dpn_match_their_definitions() {
    for multi in [false, true] {
        let case = Case::new(multi);
        let u = Case::outputs(19);
        let tag = |m: &str| format!("{m} (multi-label: {multi})");
        let targets = |loss: &LengthLoss<Cpu>| -> Vec<f64> {
            let (LengthLoss::Csq { targets, .. } | LengthLoss::Dpn { targets, .. }) = loss else {
                unreachable!()
            };
            let table = case.cpu.download(targets).unwrap();
            let rows = target_rows(&case.train.labels);
            case.idx
                .iter()
                .flat_map(|&i| {
                    let r = rows[i as usize] as usize;
                    table[r * BITS..(r + 1) * BITS].to_vec()
                })
                .collect()
        };
        let loss = case.loss(Method::Csq, &[("lambda", 0.01)]);
        let h = targets(&loss);
        let want = u
            .iter()
            .zip(&h)
            .map(|(&x, &c)| {
                let v = x.tanh();
                let (p, t) = ((v + 1.0) / 2.0, (c + 1.0) / 2.0);
                -(t * p.ln() + (1.0 - t) * (1.0 - p).ln()) + 0.01 * (v.abs() - 1.0).powi(2)
            })
            .sum::<f64>()
            / u.len() as f64;
        check(&tag("csq"), case.evaluate(&loss, None, 0, &u), want);

        let loss = case.loss(Method::Dpn, &[("m", 0.8)]);
        let t = targets(&loss);
        let want = u
            .iter()
            .zip(&t)
            .map(|(&x, &c)| (0.8 - x * c).max(0.0))
            .sum::<f64>()
            / u.len() as f64;
        check(&tag("dpn"), case.evaluate(&loss, None, 0, &u), want);
    }
}
