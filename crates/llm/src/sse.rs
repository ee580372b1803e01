//! A server-sent events parser (the WHATWG `text/event-stream` format), fed bytes as they
//! arrive: lines end in LF, CRLF or CR, possibly split across reads.

/// One dispatched event: its `event:` name (empty if none) and its `data:` lines joined
/// with newlines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    pub event: String,
    pub data: String,
}

/// The most one event (or one line) may hold before the stream is judged malformed.
const MAX_EVENT: usize = 16 << 20;

#[derive(Debug, Default)]
pub(crate) struct SseParser {
    buf: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Feeds `bytes`; every event they complete is appended to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), String> {
        self.buf.extend_from_slice(bytes);
        self.lines(false, out)?;
        if self.buf.len() + self.data.len() > MAX_EVENT {
            return Err(format!("an event longer than {MAX_EVENT} bytes"));
        }
        Ok(())
    }

    /// The stream ended: a last line without its line end still counts, and an event
    /// whose blank line never came is dispatched.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) -> Result<(), String> {
        self.lines(true, out)?;
        if !self.buf.is_empty() {
            let line = std::mem::take(&mut self.buf);
            self.line(&line, out)?;
        }
        self.line(b"", out)
    }

    fn lines(&mut self, eof: bool, out: &mut Vec<SseEvent>) -> Result<(), String> {
        let mut start = 0;
        while let Some(offset) = self.buf[start..]
            .iter()
            .position(|b| *b == b'\n' || *b == b'\r')
        {
            let end = start + offset;
            let next = match (self.buf[end], self.buf.get(end + 1)) {
                (b'\r', Some(b'\n')) => end + 2,
                // A CR at the end of what we have may be the first half of a CRLF.
                (b'\r', None) if !eof => break,
                _ => end + 1,
            };
            let line = self.buf[start..end].to_vec();
            self.line(&line, out)?;
            start = next;
        }
        self.buf.drain(..start);
        Ok(())
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), String> {
        if line.is_empty() {
            if self.has_data {
                let mut data = std::mem::take(&mut self.data);
                if data.ends_with('\n') {
                    data.pop();
                }
                out.push(SseEvent {
                    event: std::mem::take(&mut self.event),
                    data,
                });
            }
            self.event.clear();
            self.has_data = false;
            return Ok(());
        }
        let line = std::str::from_utf8(line)
            .map_err(|_| "the event stream is not valid UTF-8".to_owned())?;
        if line.starts_with(':') {
            return Ok(()); // a comment, e.g. a keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            _ => {} // id, retry, and fields the format tells us to ignore
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.to_owned(),
            data: data.to_owned(),
        }
    }

    /// Parses `input` fed in pieces of `step` bytes.
    fn parse(input: &str, step: usize) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        for piece in input.as_bytes().chunks(step) {
            parser.push(piece, &mut out).unwrap();
        }
        parser.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn events_whatever_the_read_boundaries() {
        let cases: Vec<(&str, Vec<SseEvent>)> = vec![
            (
                "data: {\"a\":1}\n\ndata: [DONE]\n\n",
                vec![ev("", "{\"a\":1}"), ev("", "[DONE]")],
            ),
            (
                "event: message_start\r\ndata: {}\r\n\r\nevent: ping\r\ndata: {}\r\n\r\n",
                vec![ev("message_start", "{}"), ev("ping", "{}")],
            ),
            ("data: a\rdata: b\r\r", vec![ev("", "a\nb")]),
            (": keep-alive\n\ndata:x\n\n", vec![ev("", "x")]),
            ("event: lonely\n\n", vec![]),
            (
                "data: no blank line at the end",
                vec![ev("", "no blank line at the end")],
            ),
            ("id: 7\nretry: 10\ndata: é\n\n", vec![ev("", "é")]),
        ];
        for (input, expected) in cases {
            for step in [1, 2, 3, 7, input.len()] {
                assert_eq!(parse(input, step), expected, "{input:?} in steps of {step}");
            }
        }
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        assert!(parser.push(b"data: \xff\n\n", &mut out).is_err());
    }
}
