//! Initial sequence numbers per RFC 6528: a keyed hash of the 4-tuple plus a 4 µs clock.

use super::{FourTuple, SeqNumber};
use crate::time::Instant;

/// Generates ISNs (RFC 6528) and timestamp offsets (RFC 7323 5.4) from a secret key.
/// `Copy` and 16 bytes, so each worker holds its own.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IsnGenerator {
    key: [u64; 2],
}

impl core::fmt::Debug for IsnGenerator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print the secret.
        f.write_str("IsnGenerator { .. }")
    }
}

impl IsnGenerator {
    /// A generator with a fixed key (tests and simulations use this for determinism).
    pub const fn with_key(key: [u64; 2]) -> IsnGenerator {
        IsnGenerator { key }
    }

    /// A generator keyed by 16 secret bytes (the runtime reads them from its per-boot key
    /// file or draws them from the system's entropy; this crate does no I/O).
    pub fn from_key_bytes(bytes: [u8; 16]) -> IsnGenerator {
        IsnGenerator::from_bytes(bytes)
    }

    fn from_bytes(bytes: [u8; 16]) -> IsnGenerator {
        let k0 = u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default());
        let k1 = u64::from_le_bytes(bytes[8..].try_into().unwrap_or_default());
        IsnGenerator { key: [k0, k1] }
    }

    /// One keyed hash of the 4-tuple: its low half keys the ISN, its high half the timestamp
    /// offset (SipHash's output halves are independent, so one does not reveal the other).
    /// Opening a connection costs one hash, not two.
    ///
    /// It is SipHash-2-4 over the 13 bytes local address, local port (little-endian), remote
    /// address, remote port, and a zero byte, the same value as `siphasher`'s `SipHasher24`
    /// fed through the `Hasher` interface (a test holds them equal). The message has a fixed
    /// length, so it is laid out in its two 64-bit words directly rather than through the
    /// streaming interface's buffering, which cost more than the rounds themselves.
    fn hash(&self, tuple: &FourTuple) -> u64 {
        let [l0, l1, l2, l3] = tuple.local.addr.octets();
        let [lp0, lp1] = tuple.local.port.to_le_bytes();
        let [r0, r1, r2, r3] = tuple.remote.addr.octets();
        let [rp0, rp1] = tuple.remote.port.to_le_bytes();
        let m0 = u64::from_le_bytes([l0, l1, l2, l3, lp0, lp1, r0, r1]);
        // The last word: the remaining five bytes, and the message length in the top byte.
        let m1 = u64::from_le_bytes([r2, r3, rp0, rp1, 0, 0, 0, 13]);
        siphash24(self.key, [m0, m1])
    }

    /// The ISN (as [`IsnGenerator::isn`]) and the timestamp offset (as
    /// [`IsnGenerator::ts_offset`]) of a new connection, from one hash.
    pub fn isn_and_ts_offset(&self, now: Instant, tuple: &FourTuple) -> (SeqNumber, u32) {
        let h = self.hash(tuple);
        (SeqNumber((h as u32).wrapping_add(Self::clock(now))), (h >> 32) as u32)
    }

    /// M: the 4 µs timer of RFC 6528.
    fn clock(now: Instant) -> u32 {
        (now.as_nanos() / 4_000) as u32
    }

    /// ISN = M + F(localip, localport, remoteip, remoteport, secretkey), with M a 4 µs timer.
    pub fn isn(&self, now: Instant, tuple: &FourTuple) -> SeqNumber {
        self.isn_and_ts_offset(now, tuple).0
    }

    /// A per-connection offset for the timestamp clock, so TSval does not leak uptime.
    pub fn ts_offset(&self, tuple: &FourTuple) -> u32 {
        (self.hash(tuple) >> 32) as u32
    }

    /// A key for another use of the same secret (SYN cookies), derived by hashing `label`
    /// under this key, so one random seed serves both and neither reveals the other.
    pub(crate) fn derived_key(&self, label: u64) -> [u64; 2] {
        // SipHash of the 8-byte message `label`: one word, then the length in the top byte.
        [siphash24(self.key, [label, 8 << 56]), siphash24(self.key, [!label, 8 << 56])]
    }
}

/// A keyed hash of two 64-bit words (SipHash-2-4 under a key from `derived_key`).
pub(crate) fn keyed_hash(key: [u64; 2], a: u64, b: u64) -> u64 {
    // The length byte of a 14-byte message rides in b's top byte, which callers leave zero.
    siphash24(key, [a, (b & 0x00ff_ffff_ffff_ffff) | (14 << 56)])
}

/// SipHash-2-4 (Aumasson and Bernstein) of a message already padded into 64-bit words, the
/// last carrying the length in its top byte.
pub(super) fn siphash24(key: [u64; 2], words: [u64; 2]) -> u64 {
    #[inline(always)]
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    let mut v = [
        key[0] ^ 0x736f_6d65_7073_6575,
        key[1] ^ 0x646f_7261_6e64_6f6d,
        key[0] ^ 0x6c79_6765_6e65_7261,
        key[1] ^ 0x7465_6462_7974_6573,
    ];
    for m in words {
        v[3] ^= m;
        round(&mut v);
        round(&mut v);
        v[0] ^= m;
    }
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::tcp::Endpoint;
    use std::net::Ipv4Addr;

    fn tuple(port: u16) -> FourTuple {
        FourTuple {
            local: Endpoint::new(Ipv4Addr::new(198, 18, 0, 1), 80),
            remote: Endpoint::new(Ipv4Addr::new(198, 18, 0, 2), port),
        }
    }

    #[test]
    fn isn_is_keyed_per_tuple_and_advances_with_the_clock() {
        let g = IsnGenerator::with_key([1, 2]);
        let t0 = Instant::from_millis(1);
        assert_ne!(g.isn(t0, &tuple(1000)), g.isn(t0, &tuple(1001)));
        assert_ne!(g.isn(t0, &tuple(1000)), IsnGenerator::with_key([3, 4]).isn(t0, &tuple(1000)));
        // 4 µs per tick: 1 ms later the ISN is 250 further along.
        let later = g.isn(t0 + core::time::Duration::from_millis(1), &tuple(1000));
        assert_eq!(later.diff(g.isn(t0, &tuple(1000))), 250);
        assert_ne!(g.ts_offset(&tuple(1000)), g.ts_offset(&tuple(1001)));
        let (isn, ts_offset) = g.isn_and_ts_offset(t0, &tuple(1000));
        assert_eq!((isn, ts_offset), (g.isn(t0, &tuple(1000)), g.ts_offset(&tuple(1000))));
        assert_ne!(isn.0.wrapping_sub(IsnGenerator::clock(t0)), ts_offset, "independent halves");
        assert_eq!(format!("{g:?}"), "IsnGenerator { .. }");
    }

    #[test]
    fn hash_is_siphash24_of_the_tuple() {
        use core::hash::Hasher;
        use siphasher::sip::SipHasher24;
        for (key, port) in [([1u64, 2u64], 1000u16), ([7, 11], 80), ([u64::MAX, 0x0123_4567_89ab_cdef], 65535)] {
            let t = tuple(port);
            let mut h = SipHasher24::new_with_keys(key[0], key[1]);
            h.write(&t.local.addr.octets());
            h.write_u16(t.local.port);
            h.write(&t.remote.addr.octets());
            h.write_u16(t.remote.port);
            h.write_u8(0);
            assert_eq!(IsnGenerator::with_key(key).hash(&t), h.finish());
        }
    }
}
