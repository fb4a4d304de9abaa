//! Which centres the losses of a [`LossSet`] train towards, for every `--centres` and
//! `--class-order` choice.

use nhl_index::eval::Labels;
use nhl_kernels::cpu::CpuBackend;
use nhl_kernels::testing::random_vec;
use nhl_kernels::Backend;

use super::{LengthLoss, LossSet};
use crate::config::{Centres, ClassOrder, Method, TrainConfig};
use crate::data::Dataset;
use crate::model::NestedHashModel;
use crate::targets::{
    class_means, csq_centres, csq_diverse_centres, csq_diverse_plain_centres, csq_prefix_centres,
    dissimilar_class_order, prefix_columns, reorder_classes, target_table,
};

/// Thirty items of six random features, three of each of ten classes.
fn tiny_set() -> Dataset {
    Dataset {
        features: random_vec(2, 30 * 6, 0.0, 1.0)
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        dim: 6,
        labels: Labels::Single((0..30).map(|i| i % 10).collect()),
        n_classes: 10,
    }
}

/// The losses of `config` for a fresh model on `train`, as the trainer builds them.
fn loss_set(
    cpu: &CpuBackend<f32>,
    train: &Dataset,
    config: &TrainConfig,
) -> LossSet<CpuBackend<f32>> {
    let code_bits = *config.bits.last().unwrap();
    let model =
        NestedHashModel::new(cpu, train.dim, config.hidden, code_bits, config.seed).unwrap();
    LossSet::new(cpu, config, train, &config.bits, &model).unwrap()
}

/// Every `--centres` and `--class-order` choice reaches the CSQ targets of every length: the
/// diverse rows' prefixes by default, the protocol's rows' prefixes with `prefix`, each moved
/// to the dissimilar class order unless `--class-order labels`, and the reference's centres,
/// built for each length on its own and in label order, with `independent`. SHCIR's centres
/// keep the labels' order by default.
#[test]
fn the_centres_choice_reaches_every_lengths_targets() {
    let mut train = tiny_set();
    // Classes 3 and 6 far apart from each other and from the rest: the first opposite pair.
    for (i, row) in train.features.chunks_exact_mut(6).enumerate() {
        let shift = match i % 10 {
            3 => 5.0,
            6 => -5.0,
            _ => 0.0,
        };
        row.iter_mut().for_each(|v| *v += shift);
    }
    let order = dissimilar_class_order(&class_means(&train.features, 6, &train.labels, 10), 10, 8);
    assert_eq!((order[3], order[6]), (0, 8));
    let cpu = CpuBackend::<f32>::new();
    let bits = [8, 16, 32, 64];
    let targets = |centres: Centres, class_order: ClassOrder| -> Vec<Vec<f32>> {
        let config = TrainConfig {
            bits: bits.to_vec(),
            hidden: 8,
            seed: 5,
            centres,
            class_order,
            ..TrainConfig::default()
        };
        assert_eq!(config.method, Method::Csq);
        loss_set(&cpu, &train, &config)
            .lengths
            .iter()
            .map(|loss| match loss {
                LengthLoss::Csq { targets, .. } => cpu.download(targets).unwrap(),
                _ => unreachable!("CSQ losses"),
            })
            .collect()
    };
    let table = |centres: &[f32], b: usize| target_table(centres, b, &train.labels, 5).unwrap();
    let diverse = csq_diverse_centres(&bits, 10, 5);
    let prefix = csq_prefix_centres(&bits, 10, 5);
    let plain = csq_diverse_plain_centres(&bits, 10, 5);
    let defaults = TrainConfig::default();
    assert_eq!(
        (defaults.centres, defaults.class_order),
        (Centres::Diverse, ClassOrder::Auto)
    );
    for (k, &b) in bits.iter().enumerate() {
        let want_diverse = table(&prefix_columns(&diverse, 64, b), b);
        let want_prefix = table(&prefix_columns(&prefix, 64, b), b);
        let moved = |centres: &[f32]| {
            table(
                &prefix_columns(&reorder_classes(centres, 64, &order), 64, b),
                b,
            )
        };
        for class_order in [ClassOrder::Auto, ClassOrder::Dissimilar] {
            assert_eq!(
                targets(Centres::Diverse, class_order)[k],
                moved(&diverse),
                "{b} bits"
            );
        }
        assert_eq!(
            targets(Centres::Prefix, ClassOrder::Dissimilar)[k],
            moved(&prefix),
            "{b} bits"
        );
        assert_ne!(moved(&diverse), want_diverse, "{b} bits");
        assert_eq!(
            targets(Centres::Diverse, ClassOrder::Labels)[k],
            want_diverse,
            "{b} bits"
        );
        assert_eq!(
            targets(Centres::Prefix, ClassOrder::Labels)[k],
            want_prefix,
            "{b} bits"
        );
        assert_eq!(
            targets(Centres::DiversePlain, ClassOrder::Labels)[k],
            table(&prefix_columns(&plain, 64, b), b),
            "{b} bits"
        );
        assert_eq!(
            targets(Centres::DiversePlain, ClassOrder::Auto)[k],
            moved(&plain),
            "{b} bits"
        );
        for class_order in [ClassOrder::Dissimilar, ClassOrder::Labels] {
            assert_eq!(
                targets(Centres::Independent, class_order)[k],
                table(&csq_centres(b, 10, 5), b),
                "{b} bits"
            );
        }
        // The rules part at 16 bits, where the diverse rows' sign bit (bit 3) is first read.
        assert_eq!(want_diverse == want_prefix, b <= 8, "{b} bits");
    }
    // SHCIR reads the centres themselves: in the labels' order unless asked otherwise.
    let shcir_centres = |class_order: ClassOrder| -> Vec<f32> {
        let config = TrainConfig {
            method: Method::Shcir,
            bits: bits.to_vec(),
            hidden: 8,
            seed: 5,
            class_order,
            ..TrainConfig::default()
        };
        match &loss_set(&cpu, &train, &config).lengths[0] {
            LengthLoss::Shcir { centres, .. } => cpu.download(centres).unwrap(),
            _ => unreachable!("SHCIR losses"),
        }
    };
    let labels_8 = prefix_columns(&diverse, 64, 8);
    let dissimilar_8 = prefix_columns(&reorder_classes(&diverse, 64, &order), 64, 8);
    assert_eq!(shcir_centres(ClassOrder::Auto), labels_8);
    assert_eq!(shcir_centres(ClassOrder::Labels), labels_8);
    assert_eq!(shcir_centres(ClassOrder::Dissimilar), dissimilar_8);
}
