//! Randomness from the kernel for ids, hex strings and strings over an alphabet
//! (passwords, tokens).
//!
//! A failure of the kernel's source is an error the caller sees: nothing here falls back to
//! the clock, to zeros or to an empty string, because two such ids would collide and such a
//! password would be guessable.

use std::fmt;

/// Bytes in an id of [`id`]: 12 hex digits, 48 bits.
pub const ID_BYTES: usize = 6;

/// Why no random value could be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RandomError {
    /// The kernel's random source failed.
    Source(getrandom::Error),
    /// [`string`] was given no symbols, or more than 256.
    Alphabet(usize),
}

impl fmt::Display for RandomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RandomError::Source(e) => write!(f, "no randomness from the kernel: {e}"),
            RandomError::Alphabet(n) => {
                write!(f, "an alphabet needs 1 to 256 symbols, this one has {n}")
            }
        }
    }
}

impl std::error::Error for RandomError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RandomError::Source(e) => Some(e),
            RandomError::Alphabet(_) => None,
        }
    }
}

/// Fills `buf` from the kernel's random source.
pub fn fill(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buf).map_err(RandomError::Source)
}

/// `bytes` random bytes as lower-case hex (two digits each).
pub fn hex(bytes: usize) -> Result<String, RandomError> {
    hex_with(bytes, &mut getrandom::fill)
}

/// A new id: `prefix`, `-` and 12 random hex digits (`x-3f09a1c2b7de`).
pub fn id(prefix: &str) -> Result<String, RandomError> {
    Ok(format!("{prefix}-{}", hex(ID_BYTES)?))
}

/// `len` symbols drawn uniformly from `alphabet` (1 to 256 distinct bytes; ASCII makes one
/// character of each).
pub fn string(alphabet: &[u8], len: usize) -> Result<String, RandomError> {
    string_with(alphabet, len, &mut getrandom::fill)
}

/// The source of random bytes, a parameter so the tests can make it fail.
type Source<'a> = dyn FnMut(&mut [u8]) -> Result<(), getrandom::Error> + 'a;

fn hex_with(bytes: usize, source: &mut Source<'_>) -> Result<String, RandomError> {
    let mut buf = vec![0u8; bytes];
    source(&mut buf).map_err(RandomError::Source)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Rejection sampling: a byte maps to `alphabet[byte % n]` only below the largest multiple
/// of `n` that fits in a byte, so every symbol has the same number of bytes leading to it.
/// (`byte % n` alone favours the first `256 % n` symbols.)
fn string_with(
    alphabet: &[u8],
    len: usize,
    source: &mut Source<'_>,
) -> Result<String, RandomError> {
    let n = alphabet.len();
    if n == 0 || n > 256 {
        return Err(RandomError::Alphabet(n));
    }
    let limit = 256 - 256 % n;
    let mut out = String::with_capacity(len);
    let mut taken = 0;
    // At most half of the bytes are rejected (n = 129), so a few rounds suffice; each round
    // asks for what is still missing plus a margin.
    let mut buf = vec![0u8; len + len / 2 + 16];
    while taken < len {
        source(&mut buf).map_err(RandomError::Source)?;
        for &b in &buf {
            if taken == len {
                break;
            }
            if usize::from(b) < limit {
                out.push(char::from(alphabet[usize::from(b) % n]));
                taken += 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn failing(_: &mut [u8]) -> Result<(), getrandom::Error> {
        Err(getrandom::Error::UNSUPPORTED)
    }

    #[test]
    fn ids_have_their_prefix_and_twelve_hex_digits() {
        let a = id("x").unwrap();
        let b = id("x").unwrap();
        assert_eq!(a.len(), 2 + 12, "{a}");
        assert!(a.starts_with("x-"));
        assert!(
            a[2..]
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
        assert_eq!(hex(8).unwrap().len(), 16);
        assert_eq!(hex(0).unwrap(), "");
    }

    #[test]
    fn a_failing_source_is_an_error_never_a_weak_value() {
        let e = hex_with(6, &mut failing).unwrap_err();
        assert_eq!(e, RandomError::Source(getrandom::Error::UNSUPPORTED));
        assert!(
            e.to_string().starts_with("no randomness from the kernel"),
            "{e}"
        );
        assert!(string_with(b"ab", 8, &mut failing).is_err());
    }

    #[test]
    fn an_empty_or_oversized_alphabet_is_refused() {
        assert_eq!(string(b"", 4), Err(RandomError::Alphabet(0)));
        let big = vec![b'a'; 257];
        assert_eq!(string(&big, 4), Err(RandomError::Alphabet(257)));
        assert_eq!(string(b"ab", 0).unwrap(), "");
    }

    #[test]
    fn strings_have_their_length_and_only_symbols_of_the_alphabet() {
        for len in [1, 8, 64, 128, 1000] {
            let s = string(b"abc", len).unwrap();
            assert_eq!(s.len(), len);
            assert!(s.bytes().all(|c| b"abc".contains(&c)), "{s}");
        }
        assert_eq!(string(b"z", 5).unwrap(), "zzzzz");
    }

    #[test]
    fn bytes_past_the_last_whole_multiple_are_rejected() {
        // With 3 symbols only bytes below 255 count: 255 is skipped, then 0, 1, 2, 254 map
        // to a, b, c, c.
        let mut feed = vec![255u8, 0, 1, 2, 254];
        let mut source = |buf: &mut [u8]| {
            for (slot, b) in buf
                .iter_mut()
                .zip(feed.drain(..).chain(std::iter::repeat(0)))
            {
                *slot = b;
            }
            Ok(())
        };
        assert_eq!(string_with(b"abc", 4, &mut source).unwrap(), "abcc");
    }

    #[test]
    fn every_symbol_is_about_as_likely() {
        // 200 symbols: `byte % 200` would give the first 56 twice the chance of the others.
        let alphabet: Vec<u8> = (0..200u8).collect();
        let draws = 200 * 500;
        let mut counts = [0usize; 256];
        let s = string_with(&alphabet, draws, &mut getrandom::fill).unwrap();
        for c in s.chars() {
            counts[c as usize] += 1;
        }
        let low: usize = counts[..56].iter().sum();
        let high: usize = counts[56..200].iter().sum();
        let (low, high) = (low as f64 / 56.0, high as f64 / 144.0);
        // Each mean is 500 with a standard deviation near 3; a biased draw gives about 870
        // against 430.
        assert!((low / high - 1.0).abs() < 0.1, "{low} against {high}");
        assert!(
            counts[..200].iter().all(|&c| (300..700).contains(&c)),
            "{counts:?}"
        );
        assert!(counts[200..].iter().all(|&c| c == 0));
    }
}
