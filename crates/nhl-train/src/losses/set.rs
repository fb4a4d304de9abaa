//! The losses of one model's lengths and the state they keep between steps, each in a struct of
//! its own so that it can be saved: the memory bank ([`Bank`]) and MDSH's momentum model
//! ([`MomentumHead`]).

use nhl_kernels::{Backend, Unary};

use super::params::LossParams;
use super::{Bank, DelayedPair, LengthLoss, MomentumHead};
use crate::config::{Centres, TrainConfig};
use crate::data::Dataset;
use crate::error::TrainError;
use crate::model::NamedParam;
use crate::model::NestedHashModel;
use crate::targets::{
    class_means, csq_diverse_centres, csq_diverse_plain_centres, csq_prefix_centres,
    dissimilar_class_order, reorder_classes,
};
use crate::train_state::{download, LossState, StateTensors};

/// Every length's loss of one model, its memory bank and its momentum model.
pub struct LossSet<B: Backend> {
    /// One loss per length, in length order.
    pub lengths: Vec<LengthLoss<B>>,
    /// The bank of the memory-bank losses (for MDSH, of the momentum model's codes).
    pub bank: Option<Bank<B>>,
    /// MDSH's momentum model, when its pair term is on.
    pub momentum: Option<MomentumHead<B>>,
    params: LossParams,
}

impl<B: Backend> LossSet<B> {
    /// The losses of `config.method` for the lengths `bits` of `model`, trained on `train`.
    pub fn new(
        backend: &B,
        config: &TrainConfig,
        train: &Dataset,
        bits: &[usize],
        model: &NestedHashModel<B>,
    ) -> Result<Self, TrainError> {
        let params = LossParams::resolve(config.method, &config.loss_params)?;
        let code_bits = model.code_bits();
        let n_classes = train.n_classes();
        let long_centres = match config.centres {
            _ if !config.method.uses_hash_centres() => None,
            Centres::Diverse => Some(csq_diverse_centres(bits, n_classes, config.seed)),
            Centres::DiversePlain => Some(csq_diverse_plain_centres(bits, n_classes, config.seed)),
            Centres::Prefix => Some(csq_prefix_centres(bits, n_classes, config.seed)),
            Centres::Independent => None,
        }
        .map(|centres| {
            if !config.class_order.dissimilar_for(config.method) {
                return centres;
            }
            let means = class_means(&train.features, train.dim, &train.labels, n_classes);
            let order = dissimilar_class_order(&means, n_classes, bits[0]);
            reorder_classes(&centres, code_bits, &order)
        });
        let lengths = bits
            .iter()
            .map(|&b| {
                let prefix_of = long_centres.as_deref().map(|c| (c, code_bits));
                LengthLoss::new(backend, &params, b, train, config.seed, prefix_of)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let delayed = delayed_pair(&lengths);
        let bank = match (config.method.needs_bank(), &delayed, &lengths[..]) {
            // MDSH without its pair term reads no bank.
            (true, None, [LengthLoss::Mdsh { .. }, ..]) | (false, _, _) => None,
            (true, _, _) => Some(Bank::new(
                backend,
                train.len(),
                code_bits,
                train.n_classes(),
            )?),
        };
        let momentum = match delayed {
            Some(_) => Some(MomentumHead::new(backend, model, params.get("momentum"))?),
            None => None,
        };
        Ok(Self {
            lengths,
            bank,
            momentum,
            params,
        })
    }

    /// The hyper-parameters of the losses.
    pub fn params(&self) -> &LossParams {
        &self.params
    }

    /// What a step does before any loss reads the bank (docs/METHOD.md 5, "The memory bank"):
    /// the momentum model follows `model`, then the bank's rows `idx` receive the batch's labels
    /// and its codes: `codes` (`n x B`, detached), clamped to `[-1, 1]` for DBDH, or for MDSH the
    /// momentum model's codes of the batch features `x`. MDSH's bank is written from the epoch
    /// before its pair term starts: every row is written again in that epoch, before the term
    /// reads it, so earlier writes could not change anything.
    #[allow(clippy::too_many_arguments)]
    pub fn write_batch(
        &mut self,
        be: &B,
        model: &NestedHashModel<B>,
        x: &B::Buf,
        idx: &B::Idx,
        codes: &B::Buf,
        labels: &B::Buf,
        epoch: usize,
    ) -> Result<(), TrainError> {
        if let Some(momentum) = &mut self.momentum {
            momentum.follow(be, model)?;
        }
        let Some(bank) = &mut self.bank else {
            return Ok(());
        };
        let written = match (&self.momentum, delayed_pair(&self.lengths)) {
            (Some(momentum), Some(pair)) => {
                if epoch + 1 < pair.from_epoch {
                    return Ok(());
                }
                momentum.codes(be, x)?
            }
            _ => match self.lengths.first() {
                Some(LengthLoss::Bank { loss, .. }) if loss.clamp_unit => {
                    be.unary(Unary::Clamp { lo: -1.0, hi: 1.0 }, codes)?
                }
                _ => codes.clone(),
            },
        };
        bank.update(be, idx, &written, labels)
    }
}

/// MDSH's pair term, if the losses have one.
fn delayed_pair<B: Backend>(lengths: &[LengthLoss<B>]) -> Option<DelayedPair> {
    lengths.iter().find_map(|l| match l {
        LengthLoss::Mdsh { pair, .. } => *pair,
        _ => None,
    })
}

/// A model's loss state: the memory bank (`bank.codes`, `bank.labels`), MDSH's momentum model
/// (`momentum.` and its parameter names) and each length's own state (`K.`, `K` the length's position).
impl<B: Backend> LossState<B> for LossSet<B> {
    fn save_state(&self, backend: &B) -> Result<Vec<NamedParam>, TrainError> {
        let mut out = Vec::new();
        if let Some(bank) = &self.bank {
            out.push(download(backend, "bank.codes", &bank.codes)?);
            out.push(download(backend, "bank.labels", &bank.labels)?);
        }
        if let Some(head) = &self.momentum {
            out.extend(head.model.export(backend, "momentum.")?);
        }
        for (k, loss) in self.lengths.iter().enumerate() {
            out.extend(loss.save_state(backend)?.into_iter().map(|mut t| {
                t.name.insert_str(0, &format!("{k}."));
                t
            }));
        }
        Ok(out)
    }

    fn load_state(&mut self, backend: &B, tensors: &StateTensors) -> Result<(), TrainError> {
        if let Some(bank) = &mut self.bank {
            tensors.restore(backend, "bank.codes", &mut bank.codes)?;
            tensors.restore(backend, "bank.labels", &mut bank.labels)?;
        }
        if let Some(head) = &mut self.momentum {
            let ids: Vec<_> = head.model.params.iter().map(|(id, _)| id).collect();
            for id in ids {
                let p = head.model.params.get_mut(id);
                let name = format!("momentum.{}", p.name);
                tensors.restore(backend, &name, &mut p.value)?;
            }
        }
        for (k, loss) in self.lengths.iter_mut().enumerate() {
            let own = StateTensors::from(tensors.with_prefix(&format!("{k}.")));
            loss.load_state(backend, &own)?;
        }
        Ok(())
    }
}

/// The per-length losses keep their targets, which their construction derives from the seed,
/// and nothing that a step changes; a variant with such state saves it here.
impl<B: Backend> LossState<B> for LengthLoss<B> {
    fn save_state(&self, _backend: &B) -> Result<Vec<NamedParam>, TrainError> {
        match self {
            LengthLoss::Csq { .. }
            | LengthLoss::Dpn { .. }
            | LengthLoss::Bank { .. }
            | LengthLoss::Hashnet { .. }
            | LengthLoss::Dch { .. }
            | LengthLoss::Dtsh { .. }
            | LengthLoss::Lcdsh { .. }
            | LengthLoss::Shcir { .. }
            | LengthLoss::Mdsh { .. } => Ok(Vec::new()),
        }
    }

    fn load_state(&mut self, _backend: &B, _tensors: &StateTensors) -> Result<(), TrainError> {
        match self {
            LengthLoss::Csq { .. }
            | LengthLoss::Dpn { .. }
            | LengthLoss::Bank { .. }
            | LengthLoss::Hashnet { .. }
            | LengthLoss::Dch { .. }
            | LengthLoss::Dtsh { .. }
            | LengthLoss::Lcdsh { .. }
            | LengthLoss::Shcir { .. }
            | LengthLoss::Mdsh { .. } => Ok(()),
        }
    }
}
