//! The Internet checksum (RFC 1071), its incremental update (RFC 1624) and the pseudo-header.

use std::net::Ipv4Addr;

/// The ones-complement sum of `data` as big-endian 16-bit words, an odd last byte padded with
/// zero. The result is a partial sum: add partial sums freely (a few dozen cannot overflow),
/// then [`fold`] them. It is at most `0xffff`.
///
/// It runs on every packet, so it adds 32-bit words into two `u64` accumulators, which has no
/// carry chain and lets the compiler vectorise the loop; carries are folded at the end. The
/// words are read in native byte order: the ones-complement sum is independent of byte order
/// up to one final swap (RFC 1071 2.B), which saves a byte swap per word.
///
/// Headers and short segments (most of a connection's life) take a scalar path instead: a
/// 64-bit add with end-around carry per eight bytes, which beats setting up the vector loop.
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    if data.len() <= SHORT_LEN {
        return sum_short(data);
    }
    sum_long(data)
}

/// Up to this many bytes, [`sum`] takes the scalar path.
const SHORT_LEN: usize = 96;

/// [`sum`] for short buffers: 64-bit words added with end-around carry (RFC 1071 2.B lets
/// the sum be taken in any word size and folded at the end).
#[inline]
fn sum_short(data: &[u8]) -> u32 {
    let mut total: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let word = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let (s, carry) = total.overflowing_add(word);
        total = s + u64::from(carry);
    }
    // The remainder starts at an offset that is a multiple of eight, so its 16-bit words
    // line up with the others; together they are below 2^33, so one more carry suffices.
    let mut tail: u64 = 0;
    let mut rest = chunks.remainder();
    if let [a, b, c, d, more @ ..] = rest {
        tail += u64::from(u32::from_ne_bytes([*a, *b, *c, *d]));
        rest = more;
    }
    if let [a, b, more @ ..] = rest {
        tail += u64::from(u16::from_ne_bytes([*a, *b]));
        rest = more;
    }
    if let [a] = rest {
        tail += u64::from(u16::from_ne_bytes([*a, 0]));
    }
    let (s, carry) = total.overflowing_add(tail);
    fold_native(s + u64::from(carry))
}

/// Folds a native-order 64-bit ones-complement sum to the 16-bit sum of big-endian words.
#[inline]
fn fold_native(total: u64) -> u32 {
    // 2^16 - 1 divides 2^64 - 1, so folding the 64-bit sum gives the 16-bit sum.
    let mut folded = (total >> 32) + (total & 0xffff_ffff);
    folded = (folded >> 32) + (folded & 0xffff_ffff);
    folded = (folded >> 16) + (folded & 0xffff);
    folded = (folded >> 16) + (folded & 0xffff);
    u32::from(u16::from_be(folded as u16))
}

/// [`sum`] for long buffers, vectorised.
fn sum_long(data: &[u8]) -> u32 {
    let mut total: u64 = 0;
    // Each block adds at most 2^17 words below 2^32 to an accumulator, far from overflow.
    for block in data.chunks(1 << 20) {
        let (mut even, mut odd) = (0u64, 0u64);
        let mut chunks = block.chunks_exact(8);
        for chunk in &mut chunks {
            even += u64::from(u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]));
            odd += u64::from(u32::from_ne_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]));
        }
        // The remainder starts at an even offset, so its words line up with the others.
        let mut rest = chunks.remainder();
        if let [a, b, c, d, tail @ ..] = rest {
            even += u64::from(u32::from_ne_bytes([*a, *b, *c, *d]));
            rest = tail;
        }
        if let [a, b, tail @ ..] = rest {
            odd += u64::from(u16::from_ne_bytes([*a, *b]));
            rest = tail;
        }
        if let [a] = rest {
            even += u64::from(u16::from_ne_bytes([*a, 0]));
        }
        let block_sum = even + odd;
        let (s, carry) = total.overflowing_add(block_sum);
        total = s + u64::from(carry);
    }
    fold_native(total)
}

/// Folds the carries of a partial sum into 16 bits; not complemented.
#[inline]
pub fn fold(sum: u32) -> u16 {
    let s = (sum >> 16) + (sum & 0xffff);
    let s = (s >> 16) + (s & 0xffff);
    s as u16
}

/// The Internet checksum of `data`: the complement of its folded ones-complement sum.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// The partial sum of the IPv4 pseudo-header of TCP or UDP (RFC 9293 3.1): addresses,
/// protocol and the segment's length.
#[inline]
pub fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u32 {
    let s = u32::from(src);
    let d = u32::from(dst);
    (s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff) + u32::from(protocol) + u32::from(length)
}

/// The checksum after one 16-bit word of the data changed from `old_word` to `new_word`
/// (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')).
#[inline]
pub fn update(old_checksum: u16, old_word: u16, new_word: u16) -> u16 {
    !fold(u32::from(!old_checksum) + u32::from(!old_word) + u32::from(new_word))
}

/// [`update`] for a 32-bit field such as an address.
#[inline]
pub fn update32(old_checksum: u16, old: u32, new: u32) -> u16 {
    let s = u32::from(!old_checksum)
        + u32::from(!(old >> 16) as u16)
        + u32::from(!old as u16)
        + (new >> 16)
        + (new & 0xffff);
    !fold(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The plain RFC 1071 loop, word by word.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for pair in data.chunks(2) {
            s += u32::from(pair[0]) << 8 | u32::from(*pair.get(1).unwrap_or(&0));
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    /// Ones-complement has two zeros; a recomputed and an updated checksum may differ by them.
    fn same_ones_complement(a: u16, b: u16) -> bool {
        a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0)
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
        assert_eq!(fold(sum(&[0xab])), 0xab00, "an odd byte is padded");
        assert_eq!(fold(sum(&[])), 0);
        assert_eq!(checksum(&[]), 0xffff);
    }

    #[test]
    fn known_ipv4_header() {
        // A classic example header whose checksum is b861.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
            0x00, 0xc7,
        ];
        assert_eq!(checksum(&header), 0xb861);
    }

    #[test]
    fn pseudo_header_sum() {
        let s = pseudo_header(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), 6, 40);
        assert_eq!(s, 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 6 + 40);
    }

    #[test]
    fn fold_handles_big_sums() {
        assert_eq!(fold(0xffff_ffff), 0xffff);
        assert_eq!(fold(0x0001_fffe), 0xffff);
        assert_eq!(fold(0x0002_0000), 2);
        // All ones in every word: the sum stays all ones (negative zero), whatever the length.
        assert_eq!(fold(sum(&[0xff; 1000])), 0xffff);
        assert_eq!(fold(sum(&[0xff; 1001])), 0xff00);
    }

    #[test]
    fn sums_across_internal_blocks() {
        // Longer than the 1 MiB blocks `sum` works in, with an odd tail.
        let data: Vec<u8> = (0..(2 << 20) + 3).map(|i: u32| (i.wrapping_mul(31) >> 3) as u8).collect();
        assert_eq!(fold(sum(&data)), reference_sum(&data));
    }

    proptest! {
        #[test]
        fn short_and_long_paths_agree(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(fold(sum_short(&data)), fold(sum_long(&data)));
        }

        #[test]
        fn fast_sum_matches_the_reference(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(fold(sum(&data)), reference_sum(&data));
            prop_assert!(sum(&data) <= 0xffff);
        }

        #[test]
        fn sum_is_independent_of_alignment(data in proptest::collection::vec(any::<u8>(), 2..100)) {
            // Split at an even offset: the partial sums add up to the whole.
            let at = (data.len() / 2) & !1;
            prop_assert_eq!(fold(sum(&data[..at]) + sum(&data[at..])), fold(sum(&data)));
        }

        #[test]
        fn update_equals_recomputation(mut data in proptest::collection::vec(any::<u8>(), 2..64),
                                       at in any::<prop::sample::Index>(), new: u16) {
            let at = at.index(data.len() / 2) * 2;
            let old = checksum(&data);
            let old_word = u16::from_be_bytes([data[at], data[at + 1]]);
            data[at..at + 2].copy_from_slice(&new.to_be_bytes());
            prop_assert!(same_ones_complement(update(old, old_word, new), checksum(&data)));
        }

        #[test]
        fn update32_equals_recomputation(mut data in proptest::collection::vec(any::<u8>(), 4..64),
                                         at in any::<prop::sample::Index>(), new: u32) {
            let at = at.index(data.len() / 2 - 1) * 2;
            let old = checksum(&data);
            let old_word = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
            data[at..at + 4].copy_from_slice(&new.to_be_bytes());
            prop_assert!(same_ones_complement(update32(old, old_word, new), checksum(&data)));
        }
    }
}
