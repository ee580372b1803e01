//! Streams: exact-value redaction across chunk boundaries, and rule-based detection on top.

use std::{fmt, ops::Range};

use super::{Namer, Redactor};
use crate::placeholder::{ReferenceKind, references};

/// Exact-value redaction of one byte stream, chunk by chunk.
///
/// Holds back at most `max_pattern_len - 1` bytes between chunks (a value may still be
/// completing there) and nothing else, whatever the input size; when no value holds a
/// newline, nothing up to the last newline is held ([`RedactStream::flush_lines_into`]), so
/// line-by-line output is not delayed. The output of any split of an input into chunks is
/// the same as [`Redactor::redact`] of the whole input.
pub struct RedactStream {
    redactor: Redactor,
    /// Bytes held back from earlier chunks.
    held: Vec<u8>,
    /// Scratch space for the few bytes around a chunk boundary.
    junction: Vec<u8>,
}

impl fmt::Debug for RedactStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedactStream")
            .field("held", &self.held.len())
            .finish_non_exhaustive()
    }
}

impl RedactStream {
    pub(super) fn new(redactor: Redactor) -> Self {
        RedactStream {
            redactor,
            held: Vec::new(),
            junction: Vec::new(),
        }
    }

    /// Redacts what it can of `chunk`, returning the output.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len());
        self.push_into(chunk, &mut out);
        out
    }

    /// Redacts what it can of `chunk`, appending to `out` (no allocation once `out` has
    /// grown to a chunk's size).
    ///
    /// A large chunk is scanned where it lies: only the held-back bytes and the chunk's
    /// first `keep` bytes are copied, to settle the matches that start in the held bytes;
    /// the scan then resumes inside the chunk at the first unsettled position. Resuming
    /// there gives the same matches as one pass, because no match starts before it
    /// unsettled.
    pub fn push_into(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let keep = self.redactor.max_pattern_len().saturating_sub(1);
        if chunk.len() < 2 * keep + 1 {
            self.held.extend_from_slice(chunk);
            if self.held.len() > keep {
                let limit = self.held.len() - keep;
                let done = self.redactor.emit(&self.held, limit, out);
                self.held.drain(..done);
            }
            return;
        }
        let mut resume = 0;
        if !self.held.is_empty() {
            self.junction.clear();
            self.junction.extend_from_slice(&self.held);
            self.junction.extend_from_slice(&chunk[..keep]);
            // Matches starting in the held bytes end within `keep` bytes of the chunk.
            let done = self.redactor.emit(&self.junction, self.held.len(), out);
            resume = done - self.held.len();
            self.held.clear();
        }
        // `resume <= keep` and the chunk is longer than `2 * keep`, so `limit > 0`.
        let rest = &chunk[resume..];
        let limit = rest.len() - keep;
        let done = self.redactor.emit(rest, limit, out);
        self.held.extend_from_slice(&rest[done..]);
    }

    /// Releases the held-back bytes up to and including the last newline, when no pattern
    /// holds a newline (a match then cannot start before it and end after it). Called after
    /// every push by [`DetectingStream`]; the output stays that of the whole input.
    pub fn flush_lines_into(&mut self, out: &mut Vec<u8>) {
        if !self.redactor.newline_free() {
            return;
        }
        if let Some(newline) = memchr::memrchr(b'\n', &self.held) {
            let done = self.redactor.emit(&self.held, newline + 1, out);
            self.held.drain(..done);
        }
    }

    /// Ends the stream: redacts and returns what was held back.
    pub fn finish(self) -> Vec<u8> {
        let mut out = Vec::new();
        self.finish_into(&mut out);
        out
    }

    pub fn finish_into(mut self, out: &mut Vec<u8>) {
        let end = self.held.len();
        self.redactor.emit(&self.held, end, out);
        self.held.clear();
    }

    /// Bytes held back right now.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

/// A value a rule found: `range` is a byte range of the text given to [`Detect::detect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    pub rule_id: String,
    pub range: Range<usize>,
}

/// Rule-based detection, plugged into a [`DetectingStream`].
pub trait Detect {
    /// The most lines one detection can span (1: matches never cross a newline). The
    /// stream holds back that many lines, so memory stays bounded by the window.
    fn max_lines(&self) -> usize {
        1
    }

    /// Where in `text` a detection spanning several lines could start (the start of a
    /// line), or `None` when none can: the stream then holds back only the unfinished last
    /// line. The default, for detectors that cannot tell, is the start of the text whenever
    /// `max_lines` is above 1.
    fn multiline_from(&self, text: &[u8]) -> Option<usize> {
        let _ = text;
        (self.max_lines() > 1).then_some(0)
    }

    /// Every value in `text`, by rule. Overlapping detections are allowed; the earliest
    /// (then the longest) wins.
    fn detect(&self, text: &str) -> Vec<Detection>;
}

/// `Detect` through a reference or a smart pointer: every method goes to the pointee.
macro_rules! detect_through {
    ($($pointer:ty),*) => {$(
        impl<D: Detect + ?Sized> Detect for $pointer {
            fn max_lines(&self) -> usize {
                (**self).max_lines()
            }

            fn multiline_from(&self, text: &[u8]) -> Option<usize> {
                (**self).multiline_from(text)
            }

            fn detect(&self, text: &str) -> Vec<Detection> {
                (**self).detect(text)
            }
        }
    )*};
}

detect_through!(&D, Box<D>, std::sync::Arc<D>);

/// A value a [`DetectingStream`] replaced: which rule, and the placeholder it got. Never the
/// value; the [`Namer`] (the session map) keeps that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub rule_id: String,
    pub placeholder: String,
}

/// Longest stretch without enough newlines that the detection stage holds back; past it
/// the stream judges what it has, and a detection longer than this may be cut.
pub const DEFAULT_MAX_HOLD: usize = 64 * 1024;
/// Held-back text is judged again only once this much more arrived (or a window's worth),
/// so small chunks do not make a wide window cost its width per line.
const MIN_BATCH: usize = 4096;

/// Exact-value redaction, then rule-based detection on what is left.
///
/// The detector sees whole lines: the stream holds back the unfinished last line and the
/// `max_lines() - 1` lines before it, judges everything before them, and replaces each
/// detection that starts there by the placeholder the [`Namer`] gives it. Detections that
/// overlap a placeholder already in the text are ignored.
pub struct DetectingStream<D> {
    exact: RedactStream,
    detector: D,
    /// Output of the exact stage that the detector has not judged yet.
    pending: Vec<u8>,
    /// Length of `pending` the last time the detector ran and held everything back.
    judged: usize,
    max_hold: usize,
}

impl<D> fmt::Debug for DetectingStream<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DetectingStream")
            .field("exact", &self.exact)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl<D: Detect> DetectingStream<D> {
    pub(super) fn new(exact: RedactStream, detector: D) -> Self {
        DetectingStream {
            exact,
            detector,
            pending: Vec::new(),
            judged: 0,
            max_hold: DEFAULT_MAX_HOLD,
        }
    }

    /// Changes [`DEFAULT_MAX_HOLD`].
    pub fn with_max_hold(mut self, bytes: usize) -> Self {
        self.max_hold = bytes.max(1);
        self
    }

    /// Redacts what it can of `chunk` into `out`; returns what the detector found.
    pub fn push(
        &mut self,
        chunk: &[u8],
        namer: &mut dyn Namer,
        out: &mut Vec<u8>,
    ) -> Vec<Detected> {
        self.exact.push_into(chunk, &mut self.pending);
        // Complete lines go on to the detector now, not a few chunks later.
        self.exact.flush_lines_into(&mut self.pending);
        let cut = self.cut();
        let fresh = self.pending.len() - self.judged;
        if cut == 0 || (fresh < MIN_BATCH && fresh < self.pending.len() - cut) {
            return Vec::new();
        }
        self.judge(cut, namer, out)
    }

    /// Ends the stream, judging and writing everything held back.
    pub fn finish(mut self, namer: &mut dyn Namer, out: &mut Vec<u8>) -> Vec<Detected> {
        let exact = std::mem::replace(&mut self.exact, RedactStream::new(Redactor::empty()));
        exact.finish_into(&mut self.pending);
        let end = self.pending.len();
        self.judge(end, namer, out)
    }

    /// Bytes held back right now, in both stages.
    pub fn held(&self) -> usize {
        self.exact.held() + self.pending.len()
    }

    /// Where the text that may be judged now ends: before the unfinished last line and, from
    /// where a multi-line detection could start ([`Detect::multiline_from`]), the
    /// `max_lines() - 1` lines before it; or `max_hold` bytes before the end.
    fn cut(&self) -> usize {
        let single = memchr::memrchr(b'\n', &self.pending).map_or(0, |n| n + 1);
        let cut = match self.detector.multiline_from(&self.pending) {
            None => single,
            Some(from) => self.window_cut().max(from.min(single)),
        };
        let floor = self.pending.len().saturating_sub(self.max_hold);
        if cut >= floor {
            return cut;
        }
        let mut cut = floor;
        // Never split a UTF-8 character: that would hide a value from the detector.
        while cut > 0 && self.pending[cut] & 0xc0 == 0x80 && floor - cut < 3 {
            cut -= 1;
        }
        cut
    }

    /// Before the unfinished last line and the `max_lines() - 1` lines before it.
    fn window_cut(&self) -> usize {
        let mut cut = self.pending.len();
        for _ in 0..self.detector.max_lines().max(1) {
            match memchr::memrchr(b'\n', &self.pending[..cut]) {
                Some(newline) => cut = newline,
                None => {
                    cut = 0;
                    break;
                }
            }
        }
        if cut > 0 {
            cut += 1;
        }
        cut
    }

    fn judge(&mut self, cut: usize, namer: &mut dyn Namer, out: &mut Vec<u8>) -> Vec<Detected> {
        let text = &self.pending[..];
        let mut found = detect_bytes(&self.detector, text);
        found.sort_by(|a, b| {
            a.range
                .start
                .cmp(&b.range.start)
                .then(b.range.end.cmp(&a.range.end))
        });
        let mut detected = Vec::new();
        let mut at = 0;
        for detection in found {
            let Range { start, end } = detection.range;
            if start >= cut {
                break;
            }
            if start < at {
                continue;
            }
            // `detect_bytes` only returns ranges inside valid UTF-8 runs.
            let Ok(value) = std::str::from_utf8(&text[start..end]) else {
                continue;
            };
            let placeholder = namer.placeholder(&detection.rule_id, value);
            out.extend_from_slice(&text[at..start]);
            out.extend_from_slice(placeholder.as_bytes());
            detected.push(Detected {
                rule_id: detection.rule_id,
                placeholder,
            });
            at = end;
        }
        if at < cut {
            out.extend_from_slice(&text[at..cut]);
            at = cut;
        }
        self.pending.drain(..at);
        self.judged = self.pending.len();
        detected
    }
}

/// Runs the detector over each valid UTF-8 run of `bytes` (invalid bytes separate runs) and
/// returns detections in `bytes`' offsets, without those that touch a placeholder already
/// in the text or that do not fall on character boundaries.
fn detect_bytes<D: Detect>(detector: &D, bytes: &[u8]) -> Vec<Detection> {
    let mut all = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let (run, skip) = match std::str::from_utf8(&bytes[at..]) {
            Ok(text) => (text, 0),
            Err(e) => {
                let valid = e.valid_up_to();
                let run = std::str::from_utf8(&bytes[at..at + valid]).unwrap_or_default();
                (run, e.error_len().unwrap_or(bytes.len() - at - valid))
            }
        };
        if !run.is_empty() {
            let placeholders: Vec<Range<usize>> = references(run)
                .into_iter()
                .filter(|r| r.kind == ReferenceKind::Redacted)
                .map(|r| r.range)
                .collect();
            for mut detection in detector.detect(run) {
                let range = detection.range.clone();
                let usable = range.start < range.end
                    && run.get(range.clone()).is_some()
                    && !placeholders
                        .iter()
                        .any(|p| p.start < range.end && range.start < p.end);
                if usable {
                    detection.range = range.start + at..range.end + at;
                    all.push(detection);
                }
            }
        }
        at += run.len() + skip;
    }
    all
}
