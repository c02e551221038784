//! Small helpers used across the workspace: one FNV-1a hash and one weighted pick.

/// FNV-1a's 64-bit offset basis (the hash of no bytes).
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// Continues an FNV-1a hash `h` over `bytes`.
pub fn fnv1a_extend(h: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(h, |h, &b| (h ^ b as u64).wrapping_mul(FNV_PRIME))
}

/// The 64-bit FNV-1a hash of `bytes` (stable across platforms and versions: run ids and
/// hashed features depend on it).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_extend(FNV_OFFSET, bytes)
}

/// The index drawn by `u` in [0, 1) from weights that sum to 1: the first whose running
/// sum exceeds `u`, else the last (rounding), or 0 for no weights.
pub fn weighted_index(weights: impl IntoIterator<Item = f64>, u: f64) -> usize {
    let mut acc = 0.0;
    let mut last = 0;
    for (i, w) in weights.into_iter().enumerate() {
        acc += w;
        last = i;
        if u < acc {
            return i;
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        // From the FNV reference test suite (64-bit FNV-1a).
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(fnv1a_extend(fnv1a(b"foo"), b"bar"), fnv1a(b"foobar"));
    }

    #[test]
    fn weighted_index_follows_the_running_sum() {
        let w = [0.2, 0.5, 0.3];
        assert_eq!(weighted_index(w, 0.0), 0);
        assert_eq!(weighted_index(w, 0.19), 0);
        assert_eq!(weighted_index(w, 0.2), 1);
        assert_eq!(weighted_index(w, 0.69), 1);
        assert_eq!(weighted_index(w, 0.7), 2);
        // Rounding leaves u above the total: the last index.
        assert_eq!(weighted_index([0.5, 0.4999], 0.99995), 1);
        assert_eq!(weighted_index([], 0.5), 0);
    }
}
