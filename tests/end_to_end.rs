//! Across the crates: train nested codes, save them in the protocol's packing, load them back and
//! search every prefix length; the neighbours must share the query's class far above chance.

use nhl::index::eval::Labels;
use nhl::index::{search, Codes};
use nhl::kernels::cpu::CpuBackend;
use nhl::train::config::TrainConfig;
use nhl::train::data::{load_protocol, Protocol};
use nhl::train::trainer::train;

#[test]
fn trained_codes_round_trip_through_npy_and_find_same_class_neighbours() -> anyhow::Result<()> {
    let full = load_protocol(Protocol::FmnistT10k, None)?;
    let pick = |per_class: usize, block: usize| -> Vec<usize> {
        (0..10)
            .flat_map(|c| (0..per_class).map(move |i| c * block + i))
            .collect()
    };
    let mut split = full.clone();
    split.query = full.query.subset(&pick(5, 100));
    split.train = full.train.subset(&pick(30, 500));
    split.database = full.train.subset(&pick(30, 500));
    let config = TrainConfig {
        bits: vec![8, 16, 32],
        hidden: 64,
        epochs: 4,
        batch_size: 32,
        ..TrainConfig::default()
    };
    let outcome = train(&CpuBackend::<f32>::new(), &split, &config, &mut |_| {})?;

    let dir = std::env::temp_dir().join(format!("nhl-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let longest = &outcome.codes[2];
    longest.database.write_npy(&dir.join("database.npy"))?;
    longest.query.write_npy(&dir.join("query.npy"))?;
    let database = Codes::read_npy(&dir.join("database.npy"), Some(32))?;
    let query = Codes::read_npy(&dir.join("query.npy"), Some(32))?;
    std::fs::remove_dir_all(&dir)?;
    assert_eq!(database.to_bytes(), longest.database.to_bytes());

    let (Labels::Single(q_labels), Labels::Single(db_labels)) =
        (&split.query.labels, &split.database.labels)
    else {
        unreachable!("Fashion-MNIST is single-label")
    };
    for (i, &bits) in config.bits.iter().enumerate() {
        // The saved 32-bit codes' prefixes are the trained shorter codes.
        assert_eq!(
            database.prefix(bits)?.to_codes().to_bytes(),
            outcome.codes[i].database.to_bytes()
        );
        let hits = search::knn(query.prefix(bits)?, database.prefix(bits)?, 10)?;
        let same: usize = (0..query.len())
            .map(|q| {
                hits.ids_of(q)
                    .iter()
                    .filter(|&&id| db_labels[id as usize] == q_labels[q])
                    .count()
            })
            .sum();
        let precision = same as f64 / (10 * query.len()) as f64;
        assert!(
            precision > 0.3,
            "{bits} bits: precision@10 {precision} (chance is 0.1)"
        );
    }
    Ok(())
}
