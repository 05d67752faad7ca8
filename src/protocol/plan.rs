//! The part plan: how a file of a given size is cut into parts.
//!
//! Owns the arithmetic of PROTOCOL.md §3 (offsets are multiples of the part size, the last part is
//! the remainder) and nothing else: which parts still need sending is the upload engine's business,
//! it only asks [`missing`] here.

use std::collections::BTreeSet;
use std::fmt;

/// The part sizes the service accepts (PROTOCOL.md §2): 512 KiB or 1 MiB, nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PartSize {
    HalfMiB,
    OneMiB,
}

impl PartSize {
    pub const fn bytes(self) -> u64 {
        match self {
            PartSize::HalfMiB => 524_288,
            PartSize::OneMiB => 1_048_576,
        }
    }

    /// The part size for a byte count, or `None` if the service would refuse it.
    pub fn from_bytes(bytes: u64) -> Option<PartSize> {
        match bytes {
            524_288 => Some(PartSize::HalfMiB),
            1_048_576 => Some(PartSize::OneMiB),
            _ => None,
        }
    }
}

impl fmt::Display for PartSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.bytes())
    }
}

/// One part of a file: `len` bytes at `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Part {
    pub index: u32,
    pub offset: u64,
    pub len: u64,
}

/// Every part of a file of `file_size` bytes, in offset order. An empty file has no part.
pub fn plan(file_size: u64, part_size: PartSize) -> Vec<Part> {
    let p = part_size.bytes();
    (0..file_size.div_ceil(p))
        .map(|i| {
            let offset = i * p;
            Part {
                index: i as u32,
                offset,
                len: p.min(file_size - offset),
            }
        })
        .collect()
}

/// The parts of the plan whose offset is not in `confirmed`, in offset order.
pub fn missing(file_size: u64, part_size: PartSize, confirmed: &BTreeSet<u64>) -> Vec<Part> {
    plan(file_size, part_size)
        .into_iter()
        .filter(|part| !confirmed.contains(&part.offset))
        .collect()
}

/// Whether `(offset, len)` is exactly one part of the plan: the rule the service enforces.
pub fn is_valid_part(file_size: u64, part_size: PartSize, offset: u64, len: u64) -> bool {
    let p = part_size.bytes();
    offset % p == 0 && offset < file_size && len == p.min(file_size - offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn six_million_bytes_in_one_mib_parts_is_the_protocol_example() {
        let parts = plan(6_000_000, PartSize::OneMiB);
        assert_eq!(parts.len(), 6);
        let offsets: Vec<u64> = parts.iter().map(|p| p.offset).collect();
        assert_eq!(
            offsets,
            [0, 1_048_576, 2_097_152, 3_145_728, 4_194_304, 5_242_880]
        );
        assert!(parts[..5].iter().all(|p| p.len == 1_048_576));
        assert_eq!(parts[5].len, 757_120);
        assert_eq!(parts[5].offset, 5_242_880);
    }

    #[test]
    fn exact_multiple_has_no_short_last_part() {
        let parts = plan(2 * 524_288, PartSize::HalfMiB);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.len == 524_288));
    }

    #[test]
    fn empty_file_has_no_part() {
        assert!(plan(0, PartSize::OneMiB).is_empty());
    }

    #[test]
    fn only_the_two_protocol_sizes_are_part_sizes() {
        assert_eq!(PartSize::from_bytes(524_288), Some(PartSize::HalfMiB));
        assert_eq!(PartSize::from_bytes(1_048_576), Some(PartSize::OneMiB));
        for bad in [0, 1, 524_287, 1_048_577, 2_097_152, 4_194_304] {
            assert_eq!(PartSize::from_bytes(bad), None, "{bad}");
        }
    }

    #[test]
    fn valid_part_rule_matches_the_plan() {
        let size = 6_000_000;
        for part in plan(size, PartSize::OneMiB) {
            assert!(is_valid_part(size, PartSize::OneMiB, part.offset, part.len));
        }
        assert!(!is_valid_part(size, PartSize::OneMiB, 1, 1_048_576));
        assert!(!is_valid_part(size, PartSize::OneMiB, 0, 1_048_575));
        assert!(!is_valid_part(size, PartSize::OneMiB, 5_242_880, 1_048_576));
        assert!(!is_valid_part(size, PartSize::OneMiB, 6_291_456, 1));
    }

    fn part_size() -> impl Strategy<Value = PartSize> {
        prop_oneof![Just(PartSize::HalfMiB), Just(PartSize::OneMiB)]
    }

    proptest! {
        #[test]
        fn plan_tiles_the_file_without_gap_or_overlap(size in 0u64..50_000_000, ps in part_size()) {
            let parts = plan(size, ps);
            let mut next = 0u64;
            for (i, part) in parts.iter().enumerate() {
                prop_assert_eq!(part.index as usize, i);
                prop_assert_eq!(part.offset, next);
                prop_assert_eq!(part.offset % ps.bytes(), 0);
                prop_assert!(part.len > 0 && part.len <= ps.bytes());
                prop_assert!(is_valid_part(size, ps, part.offset, part.len));
                next += part.len;
            }
            prop_assert_eq!(next, size);
        }

        #[test]
        fn missing_skips_exactly_the_confirmed_offsets(
            size in 1u64..30_000_000,
            ps in part_size(),
            picks in proptest::collection::vec(any::<bool>(), 60),
        ) {
            let all = plan(size, ps);
            let confirmed: BTreeSet<u64> = all
                .iter()
                .zip(picks.iter().cycle())
                .filter(|(_, pick)| **pick)
                .map(|(p, _)| p.offset)
                .collect();
            let left = missing(size, ps, &confirmed);
            prop_assert_eq!(left.len() + confirmed.len(), all.len());
            for part in &left {
                prop_assert!(!confirmed.contains(&part.offset));
            }
            let mut union: Vec<u64> = left.iter().map(|p| p.offset).chain(confirmed.iter().copied()).collect();
            union.sort_unstable();
            let expected: Vec<u64> = all.iter().map(|p| p.offset).collect();
            prop_assert_eq!(union, expected);
        }
    }
}
