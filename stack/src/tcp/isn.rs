//! Initial sequence numbers per RFC 6528: a keyed hash of the 4-tuple plus a 4 µs clock.

use core::hash::Hasher;
use siphasher::sip::SipHasher24;

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

    /// A generator with a key from the operating system's entropy (`/dev/urandom`), falling
    /// back to std's randomly seeded hasher keys if that cannot be read.
    pub fn from_entropy() -> IsnGenerator {
        let mut bytes = [0u8; 16];
        let ok =
            std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes)).is_ok();
        if ok {
            let k0 = u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default());
            let k1 = u64::from_le_bytes(bytes[8..].try_into().unwrap_or_default());
            return IsnGenerator { key: [k0, k1] };
        }
        use std::hash::BuildHasher;
        let s = std::collections::hash_map::RandomState::new();
        IsnGenerator { key: [s.hash_one(1u8), s.hash_one(2u8)] }
    }

    /// One keyed hash of the 4-tuple: its low half keys the ISN, its high half the timestamp
    /// offset (SipHash's output halves are independent, so one does not reveal the other).
    /// Opening a connection costs one hash, not two.
    fn hash(&self, tuple: &FourTuple) -> u64 {
        let mut h = SipHasher24::new_with_keys(self.key[0], self.key[1]);
        h.write(&tuple.local.addr.octets());
        h.write_u16(tuple.local.port);
        h.write(&tuple.remote.addr.octets());
        h.write_u16(tuple.remote.port);
        h.write_u8(0);
        h.finish()
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
        let a = IsnGenerator::from_entropy();
        let b = IsnGenerator::from_entropy();
        assert_ne!(a, b);
    }
}
