//! Prefilters in front of the Aho-Corasick automaton: they find the short regions of a text
//! that may hold a pattern, and the automaton only runs there.
//!
//! With a thousand secrets and their encodings (about 9,000–14,000 patterns) Aho-Corasick's
//! contiguous NFA scans log text at roughly 0.15 GiB/s and its DFA at 0.45 GiB/s while using
//! about 170 MiB; its own prefilters do not help because the patterns start with every
//! printable byte.
//!
//! Long patterns (at least [`LONG`] bytes; every pattern if there are many short ones) go
//! through a sampling q-gram filter. Every such pattern is at least `m` bytes long, so any
//! occurrence covers one of the positions `0, s, 2s, …` where `s = m - q + 1`, with a whole
//! q-gram of the pattern's first `m` bytes there. We look at only those positions, hash the
//! q-gram (q = 8, one load) into a bitset of all such q-grams, confirm a hit in an exact
//! set, and make a region around a confirmed hit. On text that holds no secret almost
//! nothing is confirmed, and the scan costs one load and one bit test every `s` bytes.
//!
//! Short patterns would make that stride 1, so while there are at most 64 of them they go to
//! Teddy, aho-corasick's SIMD searcher for small sets, instead.
//!
//! Regions of both kinds are merged in order when they overlap. Every occurrence lies whole
//! inside one region, and overlapping occurrences share a region, so the leftmost-longest
//! matches found region by region are exactly those of one pass over the whole text.

use std::{
    collections::HashSet,
    hash::{BuildHasherDefault, Hasher},
    iter::Peekable,
    ops::Range,
};

use aho_corasick::packed;

/// Patterns at least this long go through the sampling filter when short ones exist.
pub(super) const LONG: usize = 16;
/// The most short patterns Teddy takes.
const TEDDY_MAX: usize = 64;
const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

/// Grams are looked up, never inserted, from the text, so the set's layout depends only on
/// the patterns: a multiplicative hash is enough, and SipHash cost a tenth of the scan.
#[derive(Default)]
struct GramHasher(u64);

impl Hasher for GramHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(MULTIPLIER);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ (n >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        self.0 ^= self.0 >> 32;
    }
}

type GramSet = HashSet<u64, BuildHasherDefault<GramHasher>>;

/// Finds the regions of a text that may hold a pattern.
pub(super) struct Prefilter {
    grams: Option<Grams>,
    short: Option<Short>,
}

struct Short {
    searcher: packed::Searcher,
    /// How far past a short occurrence's start a region must reach: the longest pattern, and
    /// far enough to cover short occurrences the searcher skipped because they overlap it.
    reach: usize,
}

impl Prefilter {
    pub(super) fn new(patterns: &[&[u8]]) -> Prefilter {
        let max_len = patterns.iter().map(|p| p.len()).max().unwrap_or(1);
        let (short, long): (Vec<&[u8]>, Vec<&[u8]>) = patterns.iter().partition(|p| p.len() < LONG);
        let teddy = if short.is_empty() || short.len() > TEDDY_MAX {
            None
        } else {
            packed::Config::new()
                .match_kind(packed::MatchKind::LeftmostFirst)
                .builder()
                .extend(&short)
                .build()
        };
        match teddy {
            Some(searcher) => Prefilter {
                grams: (!long.is_empty()).then(|| Grams::new(&long, max_len)),
                short: Some(Short {
                    searcher,
                    reach: max_len.max(2 * LONG),
                }),
            },
            None => Prefilter {
                grams: (!patterns.is_empty()).then(|| Grams::new(patterns, max_len)),
                short: None,
            },
        }
    }

    /// Whether short patterns go to Teddy (for tests).
    #[cfg(test)]
    pub(super) fn uses_teddy(&self) -> bool {
        self.short.is_some()
    }

    /// The merged regions of `hay` that may hold an occurrence starting before `limit`, in
    /// order.
    pub(super) fn regions<'a>(&'a self, hay: &'a [u8], limit: usize) -> Regions<'a> {
        Regions {
            grams: self
                .grams
                .as_ref()
                .map(|g| g.regions(hay, limit).peekable()),
            short: self.short.as_ref().map(|short| {
                ShortRegions {
                    matches: short.searcher.find_iter(hay),
                    reach: short.reach,
                    len: hay.len(),
                    limit,
                }
                .peekable()
            }),
            current: None,
        }
    }
}

/// The sampling q-gram filter.
struct Grams {
    /// Bytes per gram, at most 8.
    q: usize,
    mask: u64,
    /// Distance between sampled positions.
    stride: usize,
    /// How far before a sampled position an occurrence may start.
    back: usize,
    /// How far after a sampled position an occurrence may end.
    reach: usize,
    shift: u32,
    bits: Box<[u64]>,
    exact: GramSet,
}

impl Grams {
    /// A filter for `patterns` (not empty), at most `max_len` bytes long.
    fn new(patterns: &[&[u8]], max_len: usize) -> Grams {
        let min_len = patterns.iter().map(|p| p.len()).min().unwrap_or(1).max(1);
        let q = min_len.min(8);
        let mask = if q == 8 {
            u64::MAX
        } else {
            (1u64 << (8 * q)) - 1
        };
        let per_pattern = min_len - q + 1;
        let grams = patterns.len().saturating_mul(per_pattern).max(1);
        // About 1.5% of the bits set: few false hits, and 512 KiB or less stays in L2.
        let log_bits = (grams.saturating_mul(64))
            .next_power_of_two()
            .trailing_zeros()
            .clamp(12, 22);
        let mut filter = Grams {
            q,
            mask,
            stride: per_pattern,
            back: min_len - q,
            reach: max_len,
            shift: 64 - log_bits,
            bits: vec![0u64; 1 << (log_bits - 6)].into_boxed_slice(),
            exact: GramSet::with_capacity_and_hasher(grams, BuildHasherDefault::default()),
        };
        for pattern in patterns {
            for start in 0..per_pattern {
                let gram = filter.gram(pattern, start);
                let bit = filter.bit(gram);
                filter.bits[bit >> 6] |= 1 << (bit & 63);
                filter.exact.insert(gram);
            }
        }
        filter
    }

    fn gram(&self, hay: &[u8], at: usize) -> u64 {
        let mut word = [0u8; 8];
        let available = &hay[at.min(hay.len())..];
        let n = available.len().min(8);
        word[..n].copy_from_slice(&available[..n]);
        u64::from_le_bytes(word) & self.mask
    }

    #[inline(always)]
    fn bit(&self, gram: u64) -> usize {
        (gram.wrapping_mul(MULTIPLIER) >> self.shift) as usize
    }

    #[inline(always)]
    fn hit(&self, gram: u64) -> bool {
        let bit = self.bit(gram);
        self.bits[bit >> 6] & (1 << (bit & 63)) != 0 && self.exact.contains(&gram)
    }

    fn regions<'a>(&'a self, hay: &'a [u8], limit: usize) -> GramRegions<'a> {
        let (last, fast_stop) = if hay.len() < self.q {
            (0, 0)
        } else {
            let last = (hay.len() - self.q).min(limit.saturating_add(self.back));
            let fast_stop = if hay.len() >= 8 {
                (hay.len() - 8).min(last) + 1
            } else {
                0
            };
            (last + 1, fast_stop)
        };
        GramRegions {
            grams: self,
            hay,
            at: 0,
            stop: last,
            fast_stop,
        }
    }
}

/// One region per confirmed hit, in order (not merged).
struct GramRegions<'a> {
    grams: &'a Grams,
    hay: &'a [u8],
    at: usize,
    /// Sampled positions go up to, not including, this.
    stop: usize,
    /// Below this a whole 8-byte load fits.
    fast_stop: usize,
}

impl Iterator for GramRegions<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        let grams = self.grams;
        // The hot loop: one 8-byte load, a multiply and a bit test per sample; the exact
        // check runs only when the bit is set.
        while self.at < self.fast_stop {
            let at = self.at;
            self.at += grams.stride;
            let mut word = [0u8; 8];
            word.copy_from_slice(&self.hay[at..at + 8]);
            let gram = u64::from_le_bytes(word) & grams.mask;
            let bit = grams.bit(gram);
            if grams.bits[bit >> 6] & (1 << (bit & 63)) != 0 && grams.exact.contains(&gram) {
                return Some(self.region(at));
            }
        }
        while self.at < self.stop {
            let at = self.at;
            self.at += grams.stride;
            if grams.hit(grams.gram(self.hay, at)) {
                return Some(self.region(at));
            }
        }
        None
    }
}

impl GramRegions<'_> {
    fn region(&self, at: usize) -> Range<usize> {
        at.saturating_sub(self.grams.back)..(at + self.grams.reach).min(self.hay.len())
    }
}

/// One region per short occurrence Teddy reports, in order (not merged).
struct ShortRegions<'s, 'h> {
    matches: packed::FindIter<'s, 'h>,
    reach: usize,
    len: usize,
    limit: usize,
}

impl Iterator for ShortRegions<'_, '_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        let found = self.matches.next()?;
        (found.start() < self.limit)
            .then(|| found.start()..(found.start() + self.reach).min(self.len))
    }
}

/// Regions from both sources, in order, overlapping ones merged.
pub(super) struct Regions<'a> {
    grams: Option<Peekable<GramRegions<'a>>>,
    short: Option<Peekable<ShortRegions<'a, 'a>>>,
    current: Option<Range<usize>>,
}

impl Regions<'_> {
    fn next_unmerged(&mut self) -> Option<Range<usize>> {
        let from_grams = self.grams.as_mut().and_then(|g| g.peek()).map(|r| r.start);
        let from_short = self.short.as_mut().and_then(|s| s.peek()).map(|r| r.start);
        match (from_grams, from_short) {
            (Some(g), Some(s)) if s < g => self.short.as_mut()?.next(),
            (Some(_), _) => self.grams.as_mut()?.next(),
            (None, Some(_)) => self.short.as_mut()?.next(),
            (None, None) => None,
        }
    }
}

impl Iterator for Regions<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        loop {
            let Some(region) = self.next_unmerged() else {
                return self.current.take();
            };
            match &mut self.current {
                Some(open) if region.start <= open.end => open.end = open.end.max(region.end),
                Some(open) => return Some(std::mem::replace(open, region)),
                None => self.current = Some(region),
            }
        }
    }
}
