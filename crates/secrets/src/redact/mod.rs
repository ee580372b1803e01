//! The exact-value redactor: every known secret value, with its base64, hex and URL-encoded
//! forms, in one leftmost-longest Aho-Corasick automaton behind a q-gram prefilter, applied
//! to byte streams chunk by chunk.
//!
//! A [`Redactor`] is built once per set of values ([`RedactorBuilder`]) and shared; each
//! output stream gets a [`RedactStream`], which holds back the last `max_pattern_len - 1`
//! bytes between chunks so a value split across chunks is still caught, and never holds
//! more. [`DetectingStream`] adds rule-based detection on top, through the [`Detect`] trait,
//! with a bounded window of lines. Input may be any bytes; nothing here assumes UTF-8.

mod filter;
mod stream;

use std::{collections::HashSet, fmt, sync::Arc};

use aho_corasick::{AhoCorasick, Input, MatchKind};
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::placeholder::{SecretString, SessionMap};

pub use stream::{Detect, Detected, DetectingStream, Detection, RedactStream};

use filter::Prefilter;

/// Shortest value accepted for exact matching unless the builder says otherwise: shorter
/// values would match ordinary text.
pub const DEFAULT_MIN_VALUE_LEN: usize = 4;

/// Why a redactor could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    #[error("a value of {len} bytes is too short to redact exactly; the minimum is {min}")]
    ValueTooShort { len: usize, min: usize },
    #[error("cannot build the redaction automaton")]
    Automaton(#[source] aho_corasick::BuildError),
}

/// Gives the placeholder that replaces a value; the session map is the usual one.
pub trait Namer {
    fn placeholder(&mut self, rule_id: &str, value: &str) -> String;
}

impl Namer for SessionMap {
    fn placeholder(&mut self, rule_id: &str, value: &str) -> String {
        self.placeholder_for(rule_id, value)
    }
}

/// The base64 alphabet of a form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alphabet {
    Standard,
    UrlSafe,
}

/// One way a value can be written in output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Form {
    Raw,
    HexLower,
    HexUpper,
    /// RFC 3986 percent-encoding of every byte outside `A-Za-z0-9-._~`.
    Percent {
        upper: bool,
    },
    /// `application/x-www-form-urlencoded`: as [`Form::Percent`] but a space is `+`.
    FormUrlEncoded,
    /// The value's own base64, from its first byte to its last character.
    Base64 {
        alphabet: Alphabet,
        padded: bool,
    },
    /// The characters of the value's base64 that are the same wherever it sits in a longer
    /// base64 stream at this byte offset modulo 3 (`offset` 0, 1 or 2).
    Base64Aligned {
        alphabet: Alphabet,
        offset: u8,
    },
}

/// A value in one of its forms. `Debug` does not show the bytes.
#[derive(Clone)]
pub struct Encoded {
    pub form: Form,
    pub bytes: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for Encoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoded")
            .field("form", &self.form)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Every form of `value` the redactor looks for, without repeats: when two forms are the
/// same bytes only the first is listed, in the order of [`Form`]'s variants.
pub fn encoded_forms(value: &[u8]) -> Vec<Encoded> {
    let mut forms: Vec<Encoded> = Vec::with_capacity(14);
    let mut push = |form: Form, bytes: Zeroizing<Vec<u8>>| {
        if !bytes.is_empty() && !forms.iter().any(|f| *f.bytes == *bytes) {
            forms.push(Encoded { form, bytes });
        }
    };
    push(Form::Raw, Zeroizing::new(value.to_vec()));
    push(Form::HexLower, hex(value, b"0123456789abcdef"));
    push(Form::HexUpper, hex(value, b"0123456789ABCDEF"));
    push(Form::Percent { upper: true }, percent(value, true, false));
    push(Form::Percent { upper: false }, percent(value, false, false));
    push(Form::FormUrlEncoded, percent(value, true, true));
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let engines = [
        (Alphabet::Standard, &STANDARD, &STANDARD_NO_PAD),
        (Alphabet::UrlSafe, &URL_SAFE, &URL_SAFE_NO_PAD),
    ];
    for (alphabet, padded, unpadded) in engines {
        push(
            Form::Base64 {
                alphabet,
                padded: true,
            },
            Zeroizing::new(padded.encode(value).into_bytes()),
        );
        push(
            Form::Base64 {
                alphabet,
                padded: false,
            },
            Zeroizing::new(unpadded.encode(value).into_bytes()),
        );
    }
    for (alphabet, _, unpadded) in engines {
        for offset in 0..3u8 {
            push(
                Form::Base64Aligned { alphabet, offset },
                base64_aligned(unpadded, value, usize::from(offset)),
            );
        }
    }
    forms
}

fn hex(value: &[u8], digits: &[u8; 16]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(value.len() * 2));
    for b in value {
        out.push(digits[usize::from(b >> 4)]);
        out.push(digits[usize::from(b & 15)]);
    }
    out
}

fn percent(value: &[u8], upper: bool, plus_for_space: bool) -> Zeroizing<Vec<u8>> {
    let digits = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut out = Zeroizing::new(Vec::with_capacity(value.len() * 3));
    for &b in value {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else if b == b' ' && plus_for_space {
            out.push(b'+');
        } else {
            out.extend_from_slice(&[
                b'%',
                digits[usize::from(b >> 4)],
                digits[usize::from(b & 15)],
            ]);
        }
    }
    out
}

/// The base64 characters of `value` that do not depend on its neighbours when it starts at
/// `offset` (mod 3) bytes into a base64-encoded stream.
///
/// Encoding `offset` dummy bytes and then the value, the characters that mix dummy bits
/// (the first 0, 2 or 3) and the ones that would mix the unknown next byte (after the last
/// whole 3-byte group: 1 character kept of a 1-byte tail, 2 of a 2-byte tail) are dropped.
fn base64_aligned(
    engine: &base64::engine::GeneralPurpose,
    value: &[u8],
    offset: usize,
) -> Zeroizing<Vec<u8>> {
    let mut input = Zeroizing::new(Vec::with_capacity(offset + value.len()));
    input.resize(offset, 0);
    input.extend_from_slice(value);
    let encoded = Zeroizing::new(engine.encode(&input[..]).into_bytes());
    let skip = [0, 2, 3][offset];
    let len = input.len();
    let keep_end = 4 * (len / 3) + [0, 1, 2][len % 3];
    Zeroizing::new(encoded.get(skip..keep_end).unwrap_or_default().to_vec())
}

/// Builds a [`Redactor`] from values and the placeholder each is replaced by.
pub struct RedactorBuilder {
    min_len: usize,
    values: Vec<(Zeroizing<Vec<u8>>, usize)>,
    replacements: Vec<Box<[u8]>>,
}

impl fmt::Debug for RedactorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedactorBuilder")
            .field("min_len", &self.min_len)
            .field("values", &self.values.len())
            .finish()
    }
}

impl Default for RedactorBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RedactorBuilder {
    pub fn new() -> Self {
        RedactorBuilder {
            min_len: DEFAULT_MIN_VALUE_LEN,
            values: Vec::new(),
            replacements: Vec::new(),
        }
    }

    /// Shortest value [`RedactorBuilder::add`] accepts (at least 1).
    pub fn min_value_len(mut self, min: usize) -> Self {
        self.min_len = min.max(1);
        self
    }

    /// Redacts `value` and its encodings as `replacement`. A value added twice keeps the
    /// first replacement.
    pub fn add(&mut self, value: &[u8], replacement: &str) -> Result<&mut Self, RedactError> {
        if value.len() < self.min_len {
            return Err(RedactError::ValueTooShort {
                len: value.len(),
                min: self.min_len,
            });
        }
        self.values
            .push((Zeroizing::new(value.to_vec()), self.replacements.len()));
        self.replacements.push(replacement.as_bytes().into());
        Ok(self)
    }

    /// Redacts `value` as the placeholder `namer` gives it under `rule_id` (for a vault
    /// secret `"vault"`, for a value seen in the session the rule that found it).
    pub fn add_named(
        &mut self,
        rule_id: &str,
        value: &SecretString,
        namer: &mut dyn Namer,
    ) -> Result<&mut Self, RedactError> {
        if value.len() < self.min_len {
            return Err(RedactError::ValueTooShort {
                len: value.len(),
                min: self.min_len,
            });
        }
        let replacement = namer.placeholder(rule_id, value.expose());
        self.add(value.expose().as_bytes(), &replacement)
    }

    pub fn build(&self) -> Result<Redactor, RedactError> {
        let mut forms: Vec<(Zeroizing<Vec<u8>>, u32)> = Vec::new();
        for (value, replacement) in &self.values {
            for encoded in encoded_forms(value) {
                // An encoding shorter than the minimum would match as often as a short value.
                if encoded.bytes.len() >= self.min_len {
                    forms.push((encoded.bytes, *replacement as u32));
                }
            }
        }
        let mut seen: HashSet<&[u8]> = HashSet::with_capacity(forms.len());
        let mut patterns: Vec<&[u8]> = Vec::with_capacity(forms.len());
        let mut replacement_of: Vec<u32> = Vec::with_capacity(forms.len());
        for (bytes, replacement) in &forms {
            if seen.insert(&bytes[..]) {
                patterns.push(&bytes[..]);
                replacement_of.push(*replacement);
            }
        }
        if patterns.is_empty() {
            return Ok(Redactor(Arc::new(Inner {
                automaton: None,
                replacement_of,
                replacements: self.replacements.clone(),
                max_len: 0,
                newline_free: true,
            })));
        }
        let max_len = patterns.iter().map(|p| p.len()).max().unwrap_or(1);
        let newline_free = patterns.iter().all(|p| !p.contains(&b'\n'));
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .map_err(RedactError::Automaton)?;
        let filter = Prefilter::new(&patterns);
        Ok(Redactor(Arc::new(Inner {
            automaton: Some((ac, filter)),
            replacement_of,
            replacements: self.replacements.clone(),
            max_len,
            newline_free,
        })))
    }
}

/// Exact-value redaction for a fixed set of values; cheap to clone and share.
///
/// The automaton holds the values in memory for its whole life and does not zero them
/// when dropped; the process that holds a redactor is the one that may hold secrets.
#[derive(Clone)]
pub struct Redactor(Arc<Inner>);

struct Inner {
    automaton: Option<(AhoCorasick, Prefilter)>,
    replacement_of: Vec<u32>,
    replacements: Vec<Box<[u8]>>,
    max_len: usize,
    /// No pattern holds a newline, so no match spans one.
    newline_free: bool,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("patterns", &self.pattern_count())
            .field("max_pattern_len", &self.0.max_len)
            .finish()
    }
}

impl Redactor {
    /// A redactor that knows no values and passes everything through.
    pub fn empty() -> Self {
        Redactor(Arc::new(Inner {
            automaton: None,
            replacement_of: Vec::new(),
            replacements: Vec::new(),
            max_len: 0,
            newline_free: true,
        }))
    }

    /// How many patterns (values times their distinct forms) the automaton holds.
    pub fn pattern_count(&self) -> usize {
        self.0.replacement_of.len()
    }

    /// Length of the longest pattern: a stream holds back one byte less than this.
    pub fn max_pattern_len(&self) -> usize {
        self.0.max_len
    }

    /// Whether no pattern holds a newline: then no match spans one, and a stream need not
    /// hold back anything before the last newline it has seen.
    pub fn newline_free(&self) -> bool {
        self.0.newline_free
    }

    /// Redacts a whole input at once.
    pub fn redact(&self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len());
        self.emit(input, input.len(), &mut out);
        out
    }

    /// A stream for one output channel.
    pub fn stream(&self) -> RedactStream {
        RedactStream::new(self.clone())
    }

    /// A stream that also runs `detector` over the text the exact values leave.
    pub fn detecting_stream<D: Detect>(&self, detector: D) -> DetectingStream<D> {
        DetectingStream::new(self.stream(), detector)
    }

    /// Writes `hay` with every match that starts before `limit` replaced, up to `limit` or
    /// the end of the last such match, whichever is later; returns that position.
    ///
    /// Matches starting before `limit` are final when `hay` extends at least
    /// `max_pattern_len - 1` bytes past `limit` (or is the end of the input): no longer
    /// match from the same start, and no earlier one, can lie beyond `hay`.
    pub(crate) fn emit(&self, hay: &[u8], limit: usize, out: &mut Vec<u8>) -> usize {
        let mut at = 0;
        if let Some((ac, filter)) = &self.0.automaton {
            'regions: for region in filter.regions(hay, limit) {
                let input = Input::new(hay).span(region);
                for found in ac.find_iter(input) {
                    if found.start() >= limit {
                        break 'regions;
                    }
                    let replacement = self.0.replacement_of[found.pattern().as_usize()];
                    out.extend_from_slice(&hay[at..found.start()]);
                    out.extend_from_slice(&self.0.replacements[replacement as usize]);
                    at = found.end();
                }
            }
        }
        if at < limit {
            out.extend_from_slice(&hay[at..limit]);
            at = limit;
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// The filtered search must find exactly what one plain pass of the automaton finds.
    #[test]
    fn prefilter_finds_what_the_automaton_finds() {
        let mut rng = Lcg(42);
        let alphabet = b"abcdef0123456789+/=_-XYZ \n";
        let mut teddy_rounds = 0;
        for round in 0..120 {
            let min_len = [4, 6, 8, 12, 16][round % 5];
            let mut builder = RedactorBuilder::new().min_value_len(min_len);
            let mut values = Vec::new();
            let count = if round % 2 == 0 {
                1 + rng.below(6)
            } else {
                1 + rng.below(30)
            };
            for i in 0..count {
                let len = min_len + rng.below(20);
                let value: Vec<u8> = (0..len)
                    .map(|_| alphabet[rng.below(alphabet.len())])
                    .collect();
                builder.add(&value, &format!("<{i}>")).unwrap();
                values.push(value);
            }
            let redactor = builder.build().unwrap();
            if redactor.0.automaton.as_ref().unwrap().1.uses_teddy() {
                teddy_rounds += 1;
            }
            let mut text = Vec::new();
            while text.len() < 4000 {
                if rng.below(10) == 0 {
                    let value = &values[rng.below(values.len())];
                    let forms = encoded_forms(value);
                    text.extend_from_slice(&forms[rng.below(forms.len())].bytes);
                } else {
                    text.push(alphabet[rng.below(alphabet.len())]);
                }
            }
            let (ac, _) = redactor.0.automaton.as_ref().unwrap();
            let mut expected = Vec::new();
            let mut at = 0;
            for found in ac.find_iter(&text) {
                expected.extend_from_slice(&text[at..found.start()]);
                let r = redactor.0.replacement_of[found.pattern().as_usize()];
                expected.extend_from_slice(&redactor.0.replacements[r as usize]);
                at = found.end();
            }
            expected.extend_from_slice(&text[at..]);
            assert_eq!(redactor.redact(&text), expected, "round {round}");
        }
        // Both ways of handling short patterns were exercised.
        assert!((1..120).contains(&teddy_rounds), "{teddy_rounds}");
    }
}
