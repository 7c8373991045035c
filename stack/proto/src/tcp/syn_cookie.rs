//! SYN cookies (RFC 4987): when the SYN backlog is full, the SYN-ACK's ISN encodes what the
//! connection needs, and the handshake's last ACK brings it back, so no state is kept for the
//! SYN. The layout is Linux's (`net/ipv4/syncookies.c`):
//!
//! ```text
//! cookie = H0(tuple) + client ISN + (counter << 24) + ((H1(tuple, counter) + MSS index) mod 2^24)
//! ```
//!
//! with `H0`, `H1` SipHash-2-4 under two secret keys and `counter` a 64-second clock, so a
//! cookie is valid for the period it was made in and the next one. The MSS is one of four
//! common values ([`MSS_TABLE`], Linux's `msstab`). Window scale and SACK-permitted cannot fit
//! in the ISN: when the SYN had timestamps they ride in the low six bits of our SYN-ACK's TSval,
//! which the peer echoes in every TSecr ([`encode_timestamp`], Linux's
//! `cookie_init_timestamp`); without timestamps the connection goes without both, as Linux's.
//!
//! Pure and sans-IO: the caller passes the time and the 4-tuple.

use super::{FourTuple, IsnGenerator, SeqNumber};
use crate::time::Instant;

/// The peer MSS values a cookie can encode (Linux's IPv4 `msstab`): the largest not above the
/// peer's announced MSS is used.
pub(crate) const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];

/// Bits of the cookie below the counter.
const COOKIE_BITS: u32 = 24;
const COOKIE_MASK: u32 = (1 << COOKIE_BITS) - 1;
/// The counter ticks every 64 s (Linux: every 60 s).
const COUNTER_PERIOD_SECS: u64 = 64;
/// A cookie is valid in the counter period it was made in and the next (Linux's
/// `MAX_SYNCOOKIE_AGE`).
const MAX_AGE: u32 = 2;
/// Low bits of the TSval that carry the options.
const TS_OPTION_BITS: u32 = 6;
const TS_OPTION_MASK: u32 = (1 << TS_OPTION_BITS) - 1;
/// Window scale field of the options: this value says "no window scaling".
const TS_WSCALE_NONE: u32 = 0xf;
const TS_SACK: u32 = 1 << 4;
/// The ECN bit of Linux's layout: synack does not negotiate ECN, so it is never set.
const TS_ECN: u32 = 1 << 5;
/// Labels that derive the cookie keys from the interface's secret.
const KEY_LABELS: [u64; 2] = [0x7379_6e63_6f6f_6b30, 0x7379_6e63_6f6f_6b31];

/// Why a returning ACK's cookie was refused. A forged cookie mostly shows as one of the first
/// two: the counter and the MSS index are recovered through the hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CookieError {
    /// The counter it carries is older than two periods (or was forged).
    #[error("SYN cookie expired or forged")]
    Expired,
    /// The MSS index it carries is out of the table (forged).
    #[error("SYN cookie forged")]
    Forged,
    /// The options in the echoed timestamp are impossible (ECN, which we never offer).
    #[error("SYN cookie options invalid")]
    BadOptions,
}

/// The options of the SYN, as our SYN-ACK's timestamp carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct CookieOptions {
    /// The peer's window scale shift (at most 14), if window scaling is on.
    pub window_scale: Option<u8>,
    /// SACK-permitted.
    pub sack_permitted: bool,
}

/// Makes and checks SYN cookies under two secret keys. `Copy` and 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct SynCookies {
    keys: [[u64; 2]; 2],
}

impl core::fmt::Debug for SynCookies {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print the secret.
        f.write_str("SynCookies { .. }")
    }
}

impl SynCookies {
    /// Cookies under fixed keys (tests).
    #[cfg(test)]
    pub(crate) const fn with_keys(keys: [[u64; 2]; 2]) -> SynCookies {
        SynCookies { keys }
    }

    /// Cookies under keys derived from the ISN generator's secret (the interface's random
    /// seed; a fixed one in tests and simulations).
    pub(crate) fn from_isn(isn: &IsnGenerator) -> SynCookies {
        SynCookies { keys: [isn.derived_key(KEY_LABELS[0]), isn.derived_key(KEY_LABELS[1])] }
    }

    /// The counter: 64-second periods since the clock's origin.
    pub(crate) fn counter(now: Instant) -> u32 {
        (now.as_nanos() / 1_000_000_000 / COUNTER_PERIOD_SECS) as u32
    }

    /// SipHash-2-4 of the 4-tuple and a 24-bit counter: 15 bytes, in two words.
    fn hash(&self, which: usize, tuple: &FourTuple, count: u32) -> u32 {
        let [l0, l1, l2, l3] = tuple.local.addr.octets();
        let [lp0, lp1] = tuple.local.port.to_le_bytes();
        let [r0, r1, r2, r3] = tuple.remote.addr.octets();
        let [rp0, rp1] = tuple.remote.port.to_le_bytes();
        let [c0, c1, c2, _] = count.to_le_bytes();
        let m0 = u64::from_le_bytes([l0, l1, l2, l3, lp0, lp1, r0, r1]);
        let m1 = u64::from_le_bytes([r2, r3, rp0, rp1, c0, c1, c2, 15]);
        super::isn::siphash24(self.keys[which], [m0, m1]) as u32
    }

    /// The index in [`MSS_TABLE`] of the largest MSS not above `mss` (the smallest entry for
    /// a smaller one, as Linux: 536 is the least any IPv4 host must take).
    pub(crate) fn mss_index(mss: u16) -> u8 {
        MSS_TABLE.iter().rposition(|&m| m <= mss).unwrap_or(0) as u8
    }

    /// The cookie for a SYN of `tuple` whose sequence number is `client_isn` and whose MSS is
    /// `mss`: our ISN for the SYN-ACK. The MSS the connection will use is
    /// `MSS_TABLE[mss_index(mss)]`.
    pub(crate) fn generate(&self, now: Instant, tuple: &FourTuple, client_isn: SeqNumber, mss: u16) -> SeqNumber {
        let count = Self::counter(now);
        let data = u32::from(Self::mss_index(mss));
        let cookie = self
            .hash(0, tuple, 0)
            .wrapping_add(client_isn.0)
            .wrapping_add(count << COOKIE_BITS)
            .wrapping_add(self.hash(1, tuple, count).wrapping_add(data) & COOKIE_MASK);
        SeqNumber(cookie)
    }

    /// Checks the cookie an ACK returns (its acknowledgment number less one) for `tuple`,
    /// whose SYN had `client_isn` (the ACK's sequence number less one); returns the MSS it
    /// encodes.
    pub(crate) fn check(
        &self,
        now: Instant,
        tuple: &FourTuple,
        client_isn: SeqNumber,
        cookie: SeqNumber,
    ) -> Result<u16, CookieError> {
        let count = Self::counter(now);
        let rest = cookie.0.wrapping_sub(self.hash(0, tuple, 0).wrapping_add(client_isn.0));
        // The counter's low 8 bits sit above the hashed part; their distance from now is the age.
        let age = count.wrapping_sub(rest >> COOKIE_BITS) & (u32::MAX >> COOKIE_BITS);
        if age >= MAX_AGE {
            return Err(CookieError::Expired);
        }
        let data = rest.wrapping_sub(self.hash(1, tuple, count.wrapping_sub(age))) & COOKIE_MASK;
        MSS_TABLE.get(data as usize).copied().ok_or(CookieError::Forged)
    }
}

/// Our SYN-ACK's TSval carrying `options` in its low six bits: the timestamp clock's value
/// `ts_now` with its low bits replaced, moved one step back if that put it in the future, so
/// our later TSvals never go backwards (Linux's `cookie_init_timestamp`).
pub(crate) fn encode_timestamp(ts_now: u32, options: CookieOptions) -> u32 {
    let mut bits = options.window_scale.map_or(TS_WSCALE_NONE, |s| u32::from(s.min(14)));
    if options.sack_permitted {
        bits |= TS_SACK;
    }
    let ts = (ts_now & !TS_OPTION_MASK) | bits;
    if (ts.wrapping_sub(ts_now) as i32) > 0 {
        ts.wrapping_sub(1 << TS_OPTION_BITS)
    } else {
        ts
    }
}

/// The options a returning ACK's TSecr carries (Linux's `cookie_timestamp_decode`).
pub(crate) fn decode_timestamp(tsecr: u32) -> Result<CookieOptions, CookieError> {
    let bits = tsecr & TS_OPTION_MASK;
    if bits & TS_ECN != 0 {
        return Err(CookieError::BadOptions);
    }
    let shift = bits & TS_WSCALE_NONE;
    Ok(CookieOptions {
        window_scale: (shift != TS_WSCALE_NONE).then_some(shift as u8),
        sack_permitted: bits & TS_SACK != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::Endpoint;
    use core::time::Duration;
    use std::net::Ipv4Addr;

    const COOKIES: SynCookies = SynCookies::with_keys([[1, 2], [3, 4]]);

    fn tuple(port: u16) -> FourTuple {
        FourTuple {
            local: Endpoint::new(Ipv4Addr::new(198, 18, 0, 1), 80),
            remote: Endpoint::new(Ipv4Addr::new(198, 18, 0, 2), port),
        }
    }

    /// A time well past the origin, so "two periods ago" exists.
    fn t0() -> Instant {
        Instant::from_millis(10_000_000)
    }

    #[test]
    fn every_mss_bucket_round_trips() {
        for (mss, expected) in
            [(536, 536), (1000, 536), (1300, 1300), (1439, 1300), (1440, 1440), (1460, 1460), (9000, 1460), (100, 536)]
        {
            for isn in [0u32, 1, 0x7fff_ffff, u32::MAX] {
                let t = tuple(40000);
                let cookie = COOKIES.generate(t0(), &t, SeqNumber(isn), mss);
                assert_eq!(COOKIES.check(t0(), &t, SeqNumber(isn), cookie), Ok(expected), "mss {mss} isn {isn}");
            }
        }
        assert_eq!(SynCookies::mss_index(1460), 3);
        assert_eq!(SynCookies::mss_index(0), 0);
    }

    #[test]
    fn every_option_combination_round_trips_through_the_timestamp() {
        for shift in [None, Some(0u8), Some(1), Some(7), Some(14)] {
            for sack_permitted in [false, true] {
                let options = CookieOptions { window_scale: shift, sack_permitted };
                for ts_now in [0x1000_0000u32, 0x1000_003f, 0x1000_0020, 63, u32::MAX] {
                    let ts = encode_timestamp(ts_now, options);
                    assert_eq!(decode_timestamp(ts), Ok(options), "{options:?} at {ts_now:#x}");
                    // Never in the future, and less than one step (64) in the past.
                    let behind = ts_now.wrapping_sub(ts);
                    assert!(behind < 64, "{ts:#x} vs {ts_now:#x}");
                }
            }
        }
        // A shift above 14 is sent as 14 (RFC 7323 2.3).
        let ts = encode_timestamp(0x1000_0000, CookieOptions { window_scale: Some(15), sack_permitted: false });
        assert_eq!(decode_timestamp(ts).unwrap().window_scale, Some(14));
        // The ECN slot is never set by us: an echo with it is refused.
        assert_eq!(decode_timestamp(0x1000_0000 | TS_ECN), Err(CookieError::BadOptions));
    }

    #[test]
    fn a_cookie_lives_two_counter_periods() {
        let t = tuple(40000);
        let isn = SeqNumber(12345);
        let cookie = COOKIES.generate(t0(), &t, isn, 1460);
        let period = Duration::from_secs(COUNTER_PERIOD_SECS);
        // Made at the start of a period: valid through the next one.
        let start = Instant::from_millis(SynCookies::counter(t0()) as u64 * COUNTER_PERIOD_SECS * 1000);
        let cookie_at_start = COOKIES.generate(start, &t, isn, 1460);
        assert_eq!(
            COOKIES.check(start + (period + period - Duration::from_millis(1)), &t, isn, cookie_at_start),
            Ok(1460)
        );
        assert_eq!(COOKIES.check(start + period + period, &t, isn, cookie_at_start), Err(CookieError::Expired));
        assert_eq!(COOKIES.check(t0() + period, &t, isn, cookie), Ok(1460));
        assert!(COOKIES.check(t0() + period * 2, &t, isn, cookie).is_err());
        assert!(COOKIES.check(t0() + period * 10, &t, isn, cookie).is_err());
    }

    #[test]
    fn a_cookie_is_bound_to_its_tuple_its_client_isn_and_its_keys() {
        let t = tuple(40000);
        let isn = SeqNumber(777);
        let cookie = COOKIES.generate(t0(), &t, isn, 1460);
        assert!(COOKIES.check(t0(), &tuple(40001), isn, cookie).is_err());
        let mut other_addr = t;
        other_addr.remote.addr = Ipv4Addr::new(198, 18, 0, 3);
        assert!(COOKIES.check(t0(), &other_addr, isn, cookie).is_err());
        let mut other_local = t;
        other_local.local.port = 81;
        assert!(COOKIES.check(t0(), &other_local, isn, cookie).is_err());
        // The client's ISN is added in, as in Linux: an ISN a little off shifts the MSS index
        // (so 778 reads as the 1440 bucket), one further off leaves the table.
        assert_eq!(COOKIES.check(t0(), &t, SeqNumber(778), cookie), Ok(1440));
        assert!(COOKIES.check(t0(), &t, SeqNumber(781), cookie).is_err());
        assert!(COOKIES.check(t0(), &t, SeqNumber(777 + 100_000), cookie).is_err());
        assert!(SynCookies::with_keys([[1, 2], [3, 5]]).check(t0(), &t, isn, cookie).is_err());
        assert!(SynCookies::with_keys([[9, 2], [3, 4]]).check(t0(), &t, isn, cookie).is_err());
        // Keys derived from different seeds differ; the same seed gives the same keys.
        let a = SynCookies::from_isn(&IsnGenerator::with_key([1, 2]));
        assert_eq!(a, SynCookies::from_isn(&IsnGenerator::with_key([1, 2])));
        assert_ne!(a, SynCookies::from_isn(&IsnGenerator::with_key([1, 3])));
        assert_eq!(format!("{a:?}"), "SynCookies { .. }");
    }

    #[test]
    fn random_acks_almost_never_validate() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(4987);
        let t = tuple(40000);
        // Guessing blind: a forged cookie passes with probability 2/256 * 4/2^24, about 2e-9.
        let mut accepted = 0;
        for _ in 0..1_000_000 {
            let isn = SeqNumber(rng.gen());
            if COOKIES.check(t0(), &t, isn, SeqNumber(rng.gen())).is_ok() {
                accepted += 1;
            }
        }
        assert_eq!(accepted, 0);
        // Knowing a valid cookie for one tuple does not help for a neighbouring one, and
        // flipping any single bit of a valid cookie breaks it.
        let isn = SeqNumber(5);
        let cookie = COOKIES.generate(t0(), &t, isn, 1460);
        for bit in 0..32 {
            let flipped = SeqNumber(cookie.0 ^ (1 << bit));
            let result = COOKIES.check(t0(), &t, isn, flipped);
            // Flipping the index bits may land on another valid MSS, but never the same one.
            assert_ne!(result, Ok(1460), "bit {bit}");
            if bit >= 2 {
                assert!(result.is_err(), "bit {bit}");
            }
        }
        let near = (0..1000u16).filter(|&p| COOKIES.check(t0(), &tuple(p), isn, cookie).is_ok()).count();
        assert_eq!(near, 0);
    }
}
