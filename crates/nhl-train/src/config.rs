//! What a training run is asked to do: method, NHL mode, lengths, the loss's hyper-parameters
//! and optimiser settings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The base hashing loss (docs/METHOD.md section 5); its hyper-parameters are listed by
/// [`crate::losses::params::specs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Central similarity quantisation: BCE of `tanh(u)` against Hadamard hash centres.
    Csq,
    /// Deep polarisation network: hinge `max(0, m - u * t)` against class target vectors.
    Dpn,
    /// Deep supervised hashing: contrastive loss against a memory bank.
    Dsh,
    /// Deep hashing network: pairwise likelihood against a memory bank plus log-cosh quantisation.
    Dhn,
    /// Deep balanced discrete hashing: DHN's likelihood on clamped codes plus a bit-balance term.
    Dbdh,
    /// Deep pairwise-supervised hashing: DHN's likelihood plus a sign quantisation term.
    Dpsh,
    /// HashNet: class-balanced pairwise likelihood of `tanh(scale u)` within the batch, the
    /// scale growing with the epochs (continuation).
    Hashnet,
    /// Deep Cauchy hashing: Cauchy cross-entropy of cosine distances within the batch.
    Dch,
    /// Deep triplet supervised hashing: triplet likelihood within the batch.
    Dtsh,
    /// LCDSH: pairwise likelihood within the batch plus agreement with the sign codes' similarity.
    Lcdsh,
    /// SHCIR: softmax over cosine similarities to class centres, single-label data only.
    Shcir,
    /// MDSH: multi-label BCE over cosine similarities to class centres, and a delayed pair term
    /// against a bank of a momentum model's codes.
    Mdsh,
}

impl Method {
    /// Every method, in the order the documents list them.
    pub const ALL: [Method; 12] = [
        Method::Csq,
        Method::Dpn,
        Method::Dsh,
        Method::Dhn,
        Method::Dbdh,
        Method::Dpsh,
        Method::Hashnet,
        Method::Dch,
        Method::Dtsh,
        Method::Lcdsh,
        Method::Shcir,
        Method::Mdsh,
    ];

    /// The lowercase name of the flags, `metrics.json` and checkpoints (`csq`, `hashnet`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Method::Csq => "csq",
            Method::Dpn => "dpn",
            Method::Dsh => "dsh",
            Method::Dhn => "dhn",
            Method::Dbdh => "dbdh",
            Method::Dpsh => "dpsh",
            Method::Hashnet => "hashnet",
            Method::Dch => "dch",
            Method::Dtsh => "dtsh",
            Method::Lcdsh => "lcdsh",
            Method::Shcir => "shcir",
            Method::Mdsh => "mdsh",
        }
    }

    /// The distillation weight `lambda_D` of a run that does not set one (docs/METHOD.md section
    /// 3): 1 (the protocol's), except 0.1 (the reference's command-line default) for the losses
    /// built on the bank likelihood (DHN, DBDH, DPSH). Their gradient is linear in the bank's
    /// codes, so it vanishes near the zero codes training starts from, where the scale-free
    /// distillation's gradient is largest; at weight 1 the distillation wins that start and
    /// collapses the short codes onto one code (docs/METHOD.md Q16).
    pub fn default_distill_weight(self) -> f32 {
        match self {
            Method::Dhn | Method::Dbdh | Method::Dpsh => 0.1,
            _ => 1.0,
        }
    }

    /// Every method's name, comma-separated, for messages.
    pub fn names() -> String {
        Method::ALL.map(Method::name).join(", ")
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which hash centres a run of CSQ, SHCIR or MDSH uses (docs/PROTOCOL.md, "CSQ hash centres").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Centres {
    /// Prefix-consistent centres whose codes give every bit its own class partition
    /// ([`crate::targets::csq_diverse_centres`]): the default.
    #[default]
    Diverse,
    /// The previous version's diverse rows, which leave one bit of every code of 16 bits or more
    /// constant when there are more than 8 classes
    /// ([`crate::targets::csq_diverse_plain_centres`]); kept so that the figures measured with
    /// them can be rerun.
    #[serde(rename = "diverse-plain")]
    DiversePlain,
    /// One centre per class for the longest length, the shorter centres its prefixes, class `c`
    /// on Hadamard row `c` ([`crate::targets::csq_prefix_centres`]): the protocol's rule.
    Prefix,
    /// The reference's centres, drawn independently for every length
    /// ([`crate::targets::csq_centres`]); a comparison with the reference's own code uses them.
    Independent,
}

/// Which class takes which place in the prefix-consistent centre rules (docs/METHOD.md 5.1,
/// "Class order"); the independent centres keep the labels' order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassOrder {
    /// The default: [`ClassOrder::Dissimilar`] for CSQ, [`ClassOrder::Labels`] for SHCIR and
    /// MDSH, where the dissimilar order measured lower (docs/RESULTS.md section 7).
    #[default]
    Auto,
    /// The most dissimilar classes (by their training means) share the shortest length's rows as
    /// opposites ([`crate::targets::dissimilar_class_order`]).
    Dissimilar,
    /// Class `c` takes place `c`, as the protocol's rule states it.
    Labels,
}

impl ClassOrder {
    /// Whether `method` trains in the dissimilar order: asked for, or `Auto` with CSQ.
    pub fn dissimilar_for(self, method: Method) -> bool {
        match self {
            ClassOrder::Auto => method == Method::Csq,
            ClassOrder::Dissimilar => true,
            ClassOrder::Labels => false,
        }
    }
}

/// How each length's base loss enters the shared objective of the nested modes (docs/METHOD.md
/// section 4, "Length scale"). A single-length model has one length, so it is unaffected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LengthScale {
    /// The default: [`LengthScale::PerBit`] for DSH, whose loss and margin `m = 2b` grow in
    /// proportion to the length and whose `full` runs it raised on both protocols it was measured
    /// on, [`LengthScale::Plain`] for every other loss (docs/RESULTS.md section 7).
    #[default]
    Auto,
    /// `L_k` as the loss defines it, summed over the lengths as the reference does.
    Plain,
    /// `(b_1 / b_k) L_k`, the shortest length's loss as it is and each longer one per bit of its
    /// length: for losses whose value grows with the length (DSH's squared distances and margin
    /// `2b`, the likelihoods' unnormalised inner products), where the longer lengths' plain losses
    /// outweigh the shorter ones' on the outputs they share.
    PerBit,
}

impl LengthScale {
    /// Whether `method` trains with the per-bit scale: asked for, or `Auto` with DSH.
    pub fn per_bit_for(self, method: Method) -> bool {
        match self {
            LengthScale::Auto => method == Method::Dsh,
            LengthScale::Plain => false,
            LengthScale::PerBit => true,
        }
    }

    /// The factor of each length's base loss for `method`, for lengths `bits` (increasing):
    /// `b_1 / b_k` where [`LengthScale::per_bit_for`] holds, else 1.
    pub fn factors(self, method: Method, bits: &[usize]) -> Vec<f64> {
        if self.per_bit_for(method) {
            bits.iter().map(|&b| bits[0] as f64 / b as f64).collect()
        } else {
            vec![1.0; bits.len()]
        }
    }
}

/// How the lengths are trained (docs/METHOD.md section 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One nested head, the plain sum of the per-length losses.
    Nested,
    /// `nested` plus long-to-short cascade self-distillation.
    Distill,
    /// `nested` with the dominance-aware weighting.
    Adaptive,
    /// Weighting and distillation together.
    Full,
    /// The baseline: an independent model per length, trained one after the other.
    Single,
}

impl Mode {
    /// True when the dominance-aware weights are computed.
    pub fn adaptive(self) -> bool {
        matches!(self, Mode::Adaptive | Mode::Full)
    }
    /// True when the cascade distillation term is added.
    pub fn distill(self) -> bool {
        matches!(self, Mode::Distill | Mode::Full)
    }
}

/// All settings of a run; [`TrainConfig::default`] is the protocol default (docs/PROTOCOL.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Base loss.
    pub method: Method,
    /// NHL mode.
    pub mode: Mode,
    /// Code lengths, strictly increasing; the longest is the width of the nested head.
    pub bits: Vec<usize>,
    /// Backbone hidden width (Linear(d -> hidden) + ReLU).
    pub hidden: usize,
    /// Passes over the training set.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f32,
    /// Coupled L2 weight decay (added to the gradient).
    pub weight_decay: f32,
    /// Distillation weight `lambda_D`.
    pub distill_weight: f32,
    /// Dominance threshold factor `beta`.
    pub beta: f32,
    /// Seed of initialisation, shuffling and any random targets.
    pub seed: u64,
    /// Replicates the reference's leftover gradient (docs/METHOD.md section 9, Q3): with the weighting
    /// on, the hash layer also receives the unweighted gradient of the longest length's
    /// objective. Off by default; the backbone is never affected.
    #[serde(default)]
    pub reference_grad_leak: bool,
    /// Evaluate mAP@ALL every this many epochs (0: only after training). The reference reports
    /// each length's best mAP over such validations, selected on the query set itself; we report
    /// it beside the final model's figures, never instead of them.
    #[serde(default)]
    pub eval_every: usize,
    /// The hash centres of CSQ, SHCIR and MDSH: prefix-consistent with diverse rows (the
    /// default), prefix-consistent on the protocol's rows, or the reference's independent centres
    /// per length.
    #[serde(default)]
    pub centres: Centres,
    /// Which class takes which place in the prefix-consistent centres: the most dissimilar
    /// classes on the shortest length's opposite pairs, the labels' order, or (the default) the
    /// first for CSQ and the second for SHCIR and MDSH.
    #[serde(default)]
    pub class_order: ClassOrder,
    /// The factor of each length's base loss in the nested modes: auto (the default: per bit for
    /// DSH, plain for the other losses), plain or per bit.
    #[serde(default)]
    pub length_scale: LengthScale,
    /// The loss's hyper-parameters that differ from their defaults (`--loss-param name=value`),
    /// checked against the method's table by [`crate::losses::params::LossParams::resolve`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub loss_params: BTreeMap<String, f64>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            method: Method::Csq,
            mode: Mode::Full,
            bits: vec![8, 16, 32, 64, 128],
            hidden: 1024,
            epochs: 30,
            batch_size: 64,
            lr: 1e-3,
            weight_decay: 1e-5,
            distill_weight: 1.0,
            beta: 1.0,
            seed: 0,
            reference_grad_leak: false,
            eval_every: 0,
            centres: Centres::Diverse,
            class_order: ClassOrder::Auto,
            length_scale: LengthScale::Auto,
            loss_params: BTreeMap::new(),
        }
    }
}
