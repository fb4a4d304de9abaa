//! Retrieval quality of every code length (docs/PROTOCOL.md, "mAP@K"): mAP@ALL with the stable tie
//! order, the tie-aware mAP beside it, and precision at a few cut-offs.

use nhl_index::eval::{evaluate, Labels};
use nhl_index::{Codes, CodesView};

use crate::error::TrainError;

/// The cut-offs every report carries: precision@1, @10 and @100.
pub const PRECISION_KS: [usize; 3] = [1, 10, 100];

/// The figures of one code length.
#[derive(Clone, Debug, PartialEq)]
pub struct LengthMetrics {
    /// Code length.
    pub bits: usize,
    /// mAP@ALL, ties broken by database position (the protocol's figure).
    pub map: f64,
    /// Expected mAP@ALL over all orders within tied groups (McSherry and Najork).
    pub map_tie_aware: f64,
    /// `(k, mean precision over the first k ranked items)`.
    pub precision_at: Vec<(usize, f64)>,
}

/// Evaluates each `(bits, query codes, database codes)` against the labels. Cut-offs beyond the
/// database size are left out (they would count absent items as irrelevant).
pub fn evaluate_lengths<'a>(
    codes: impl IntoIterator<Item = (usize, CodesView<'a>, CodesView<'a>)>,
    query_labels: &Labels,
    database_labels: &Labels,
    precision_ks: &[usize],
) -> Result<Vec<LengthMetrics>, TrainError> {
    codes
        .into_iter()
        .map(|(bits, query, database)| {
            let n_db = database.len();
            let ks: Vec<usize> = precision_ks
                .iter()
                .copied()
                .filter(|&k| k <= n_db)
                .collect();
            let m = evaluate(query, database, query_labels, database_labels, None, &ks)?;
            Ok(LengthMetrics {
                bits,
                map: m.map,
                map_tie_aware: m.map_tie_aware,
                precision_at: m.precision_at,
            })
        })
        .collect()
}

/// The `(bits, query, database)` prefix views of nested codes for every length in `bits`: the
/// b-bit code is the first b bits of the longest code.
pub fn nested_views<'a>(
    query: &'a Codes,
    database: &'a Codes,
    bits: &[usize],
) -> Result<Vec<(usize, CodesView<'a>, CodesView<'a>)>, TrainError> {
    bits.iter()
        .map(|&b| Ok((b, query.prefix(b)?, database.prefix(b)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_evaluated_in_order_with_their_prefixes() {
        // Two classes; with 2 bits the codes separate them perfectly, the first bit alone ties
        // the query with everything.
        let signs = |rows: &[[f32; 2]]| rows.iter().flatten().copied().collect::<Vec<f32>>();
        let q = Codes::from_signs(2, 2, &signs(&[[1.0, 1.0], [1.0, -1.0]])).unwrap();
        let d = Codes::from_signs(
            4,
            2,
            &signs(&[[1.0, -1.0], [1.0, 1.0], [1.0, -1.0], [1.0, 1.0]]),
        )
        .unwrap();
        let ql = Labels::Single(vec![0, 1]);
        let dl = Labels::Single(vec![1, 0, 1, 0]);
        let views = nested_views(&q, &d, &[1, 2]).unwrap();
        let m = evaluate_lengths(views, &ql, &dl, &PRECISION_KS).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].bits, m[1].bits), (1, 2));
        assert_eq!(m[1].map, 1.0);
        assert!(m[0].map < 1.0);
        // Only k = 1 fits a database of 4.
        assert_eq!(m[1].precision_at, vec![(1, 1.0)]);
        assert!(nested_views(&q, &d, &[3]).is_err());
    }
}
