//! Which class takes which place in the prefix-consistent centre rules (docs/METHOD.md 5.1, "Class
//! order"): the classes' means over the training items, and the order that puts the most
//! dissimilar classes on the shortest length's opposite centres.

use nhl_index::eval::Labels;

/// The per-class mean of `features` (`items x dim`), `n_classes x dim` in `f64`: over the items of
/// the class, or for multi-label data over the items that carry it. A class without items has a
/// mean of zeros.
pub fn class_means(features: &[f32], dim: usize, labels: &Labels, n_classes: usize) -> Vec<f64> {
    let mut sums = vec![0.0f64; n_classes * dim];
    let mut counts = vec![0usize; n_classes];
    let mut add = |class: usize, item: usize| {
        if class < n_classes {
            counts[class] += 1;
            let row = &features[item * dim..(item + 1) * dim];
            for (s, &v) in sums[class * dim..(class + 1) * dim].iter_mut().zip(row) {
                *s += f64::from(v);
            }
        }
    };
    match labels {
        Labels::Single(classes) => {
            for (item, &c) in classes.iter().enumerate() {
                add(c as usize, item);
            }
        }
        Labels::Multi { rows, .. } => {
            for (item, row) in rows.iter().enumerate() {
                for &c in row {
                    add(c as usize, item);
                }
            }
        }
    }
    for (c, &n) in counts.iter().enumerate() {
        for s in &mut sums[c * dim..(c + 1) * dim] {
            *s /= n.max(1) as f64;
        }
    }
    sums
}

/// Where each class goes in the prefix rules' class order (`--class-order dissimilar`, the
/// default; docs/METHOD.md 5.1, "Class order"): `order[label]` is the index `c` the rule gives
/// the class, from the `n_classes x dim` class means.
///
/// With `b0 < C <= 2 b0` classes (`b0` the shortest length), the rules put classes `c` and `c + b0`
/// on one `b0`-bit Hadamard row with opposite signs, for `c < C - b0`: those pairs sit at the
/// full distance `b0` where every other pair is `b0 / 2` apart, and each of their bits must send
/// the two classes opposite ways. Pairing two similar classes so asks the shortest code for its
/// hardest splits. This order gives the `C - b0` opposite slots to the most dissimilar classes:
/// it takes, one after the other, the pair of not yet placed classes whose means (`class_means`)
/// lie farthest apart in squared Euclidean distance (ties to the lower labels), the `k`-th pair's
/// lower label to index `k` and the other to `k + b0`; the remaining classes take the indices
/// `C - b0 .. b0 - 1` in label order. Outside `b0 < C <= 2 b0` every class keeps its label.
pub fn dissimilar_class_order(means: &[f64], n_classes: usize, shortest: usize) -> Vec<usize> {
    let n = n_classes;
    let dim = means.len() / n.max(1);
    if n <= shortest || n > 2 * shortest {
        return (0..n).collect();
    }
    let mean = |c: usize| &means[c * dim..(c + 1) * dim];
    // Every pair's distance once: the greedy passes below read it `C - b0` times.
    let distances: Vec<f64> = (0..n * n)
        .map(|i| {
            let (a, b) = (i / n, i % n);
            mean(a)
                .iter()
                .zip(mean(b))
                .map(|(x, y)| (x - y) * (x - y))
                .sum()
        })
        .collect();
    let far = |a: usize, b: usize| distances[a * n + b];
    let mut order = vec![usize::MAX; n];
    for k in 0..n - shortest {
        let mut best: Option<(f64, usize, usize)> = None;
        for a in (0..n).filter(|&a| order[a] == usize::MAX) {
            for b in (a + 1..n).filter(|&b| order[b] == usize::MAX) {
                let d = far(a, b);
                if best.is_none_or(|(bd, _, _)| d > bd) {
                    best = Some((d, a, b));
                }
            }
        }
        let (_, a, b) = best.expect("two unplaced classes remain while pairs are placed");
        order[a] = k;
        order[b] = k + shortest;
    }
    let unplaced = order.iter_mut().filter(|slot| **slot == usize::MAX);
    for (place, slot) in (n - shortest..).zip(unplaced) {
        *slot = place;
    }
    order
}

/// The rows of a `C x width` centre matrix built for class indices, moved to the labels that
/// `order` gives those indices: row `label` of the result is row `order[label]` of `centres`.
pub fn reorder_classes(centres: &[f32], width: usize, order: &[usize]) -> Vec<f32> {
    order
        .iter()
        .flat_map(|&c| centres[c * width..(c + 1) * width].iter().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_means_average_each_class_and_each_label_of_multi_label_items() {
        let features = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let single = class_means(&features, 2, &Labels::Single(vec![1, 0, 1]), 3);
        assert_eq!(single, [3.0, 4.0, 3.0, 4.0, 0.0, 0.0]);
        let multi = Labels::Multi {
            n_classes: 2,
            rows: vec![vec![0, 1], vec![1], vec![]],
        };
        assert_eq!(class_means(&features, 2, &multi, 2), [1.0, 2.0, 2.0, 3.0]);
    }

    /// Ten classes on a line, shortest length 8: the two farthest pairs take the opposite places
    /// (0, 8) and (1, 9), the rest the places 2-7 in label order.
    #[test]
    fn dissimilar_order_gives_the_opposite_places_to_the_farthest_classes() {
        let means = [3.0, 0.0, 4.0, 5.0, 100.0, 6.0, 7.0, 1.0, 8.0, 9.0];
        let order = dissimilar_class_order(&means, 10, 8);
        // (1, 4) lie farthest apart (100), then (7, 9) among the rest (8^2).
        assert_eq!(order, [2, 0, 3, 4, 8, 5, 6, 1, 7, 9]);
        // Every place once.
        let mut places = order.clone();
        places.sort_unstable();
        assert_eq!(places, (0..10).collect::<Vec<_>>());
        // Equal distances go to the lower labels.
        assert_eq!(dissimilar_class_order(&[0.0; 3], 3, 2), [0, 2, 1]);
        // No shared rows at the shortest length, or more than two classes per row: labels.
        assert_eq!(
            dissimilar_class_order(&means, 10, 16),
            (0..10).collect::<Vec<_>>()
        );
        assert_eq!(
            dissimilar_class_order(&means, 10, 4),
            (0..10).collect::<Vec<_>>()
        );
    }

    #[test]
    fn reordered_centres_give_each_label_the_row_of_its_place() {
        let centres = [1.0, 1.0, 1.0, -1.0, -1.0, 1.0];
        assert_eq!(
            reorder_classes(&centres, 2, &[2, 0, 1]),
            [-1.0, 1.0, 1.0, 1.0, 1.0, -1.0]
        );
    }
}
