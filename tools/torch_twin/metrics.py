"""mAP@ALL with the stable tie order and the tie-aware mAP (docs/PROTOCOL.md, "mAP@K"),
written independently of crates/nhl-index so that each can check the other."""

import numpy as np


def hamming(query_bits, database_bits):
    """Integer Hamming distances `[n_query, n_database]` between {0, 1} matrices."""
    q = query_bits.astype(np.float32) * 2 - 1
    d = database_bits.astype(np.float32) * 2 - 1
    bits = query_bits.shape[1]
    # <q, d> = bits - 2 * hamming, exact in f32 for these small integers.
    return ((bits - q @ d.T) / 2).round().astype(np.int32)


def map_all(query_bits, query_labels, database_bits, database_labels):
    """`(stable mAP@ALL, tie-aware mAP@ALL)` of single-label data."""
    n_db = len(database_labels)
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, n_db + 1))])
    ranks = np.arange(1, n_db + 1, dtype=np.float64)
    stable, tie_aware = [], []
    for start in range(0, len(query_labels), 256):
        dists = hamming(query_bits[start : start + 256], database_bits)
        for dist, label in zip(dists, query_labels[start : start + 256]):
            rel = database_labels == label
            total = rel.sum()
            if total == 0:
                stable.append(0.0)
                tie_aware.append(0.0)
                continue
            # Stable order: ties by database position.
            order = np.argsort(dist, kind="stable")
            hits = rel[order]
            stable.append(float(np.sum(np.cumsum(hits)[hits] / ranks[hits]) / total))
            # Tie-aware (McSherry and Najork): a group of n items at ranks p+1..p+n holding r
            # relevant ones, R_b relevant before it, contributes
            # sum_j [(r/n)(R_b + 1) + (j-1) r(r-1)/(n(n-1))] / (p + j).
            n = np.bincount(dist, minlength=dist.max() + 1).astype(np.float64)
            r = np.bincount(dist, weights=rel, minlength=len(n))
            keep = n > 0
            n, r = n[keep], r[keep]
            p = np.concatenate([[0.0], np.cumsum(n)[:-1]])
            r_before = np.concatenate([[0.0], np.cumsum(r)[:-1]])
            ip, ipn = p.astype(np.int64), (p + n).astype(np.int64)
            s1 = harmonic[ipn] - harmonic[ip]
            s2 = n - (p + 1) * s1
            pair = np.where(n > 1, r * (r - 1) / np.maximum(n * (n - 1), 1), 0.0)
            tie_aware.append(float(np.sum(r / n * (r_before + 1) * s1 + pair * s2) / total))
    return float(np.mean(stable)), float(np.mean(tie_aware))


def unpack_codes(packed, bits):
    """{0, 1} matrix from the run directory's packed codes (bit j in byte j/8 at j%8)."""
    return np.unpackbits(packed, axis=1, bitorder="little")[:, :bits]
