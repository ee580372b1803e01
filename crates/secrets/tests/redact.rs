//! The exact-value redactor: every encoded form, chunk boundaries, overlapping values,
//! non-UTF-8 input, and rule-based detection on top.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use stakpak_secrets::{
    placeholder::SessionMap,
    redact::{
        Alphabet, Detect, Detected, Detection, Form, RedactError, Redactor, RedactorBuilder,
        encoded_forms,
    },
};

const VALUE: &[u8] = b"p4ss w0rd?>~/";

fn redactor(values: &[(&[u8], &str)]) -> Redactor {
    let mut builder = RedactorBuilder::new();
    for (value, replacement) in values {
        builder.add(value, replacement).unwrap();
    }
    builder.build().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Expected strings computed independently (Python's base64, binascii and urllib).
#[test]
fn encoded_forms_of_a_value() {
    let forms: Vec<(Form, String)> = encoded_forms(VALUE)
        .into_iter()
        .map(|e| (e.form, text(&e.bytes)))
        .collect();
    let std = Alphabet::Standard;
    let url = Alphabet::UrlSafe;
    let aligned = |alphabet, offset| Form::Base64Aligned { alphabet, offset };
    let expected: Vec<(Form, String)> = vec![
        (Form::Raw, "p4ss w0rd?>~/"),
        (Form::HexLower, "7034737320773072643f3e7e2f"),
        (Form::HexUpper, "7034737320773072643F3E7E2F"),
        (Form::Percent { upper: true }, "p4ss%20w0rd%3F%3E~%2F"),
        (Form::Percent { upper: false }, "p4ss%20w0rd%3f%3e~%2f"),
        (Form::FormUrlEncoded, "p4ss+w0rd%3F%3E~%2F"),
        (
            Form::Base64 {
                alphabet: std,
                padded: true,
            },
            "cDRzcyB3MHJkPz5+Lw==",
        ),
        (
            Form::Base64 {
                alphabet: std,
                padded: false,
            },
            "cDRzcyB3MHJkPz5+Lw",
        ),
        (
            Form::Base64 {
                alphabet: url,
                padded: true,
            },
            "cDRzcyB3MHJkPz5-Lw==",
        ),
        (
            Form::Base64 {
                alphabet: url,
                padded: false,
            },
            "cDRzcyB3MHJkPz5-Lw",
        ),
        (aligned(std, 0), "cDRzcyB3MHJkPz5+L"),
        (aligned(std, 1), "A0c3MgdzByZD8+fi"),
        (aligned(std, 2), "wNHNzIHcwcmQ/Pn4v"),
        (aligned(url, 0), "cDRzcyB3MHJkPz5-L"),
        (aligned(url, 1), "A0c3MgdzByZD8-fi"),
        (aligned(url, 2), "wNHNzIHcwcmQ_Pn4v"),
    ]
    .into_iter()
    .map(|(f, s)| (f, s.to_owned()))
    .collect();
    assert_eq!(forms, expected);
}

#[test]
fn forms_that_coincide_are_listed_once() {
    // Nothing to escape and a length divisible by 3: raw = percent forms, padded = unpadded
    // = aligned at 0, standard = URL-safe, and the hex has no letters.
    let forms: Vec<Form> = encoded_forms(b"abcdef")
        .into_iter()
        .map(|e| e.form)
        .collect();
    let std = Alphabet::Standard;
    assert_eq!(
        forms,
        vec![
            Form::Raw,
            Form::HexLower,
            Form::Base64 {
                alphabet: std,
                padded: true
            },
            Form::Base64Aligned {
                alphabet: std,
                offset: 1
            },
            Form::Base64Aligned {
                alphabet: std,
                offset: 2
            },
        ]
    );
}

#[test]
fn every_form_is_redacted() {
    let redactor = redactor(&[(VALUE, "[R]")]);
    for encoded in encoded_forms(VALUE) {
        let mut input = b"before ".to_vec();
        input.extend_from_slice(&encoded.bytes);
        input.extend_from_slice(b" after");
        assert_eq!(
            text(&redactor.redact(&input)),
            "before [R] after",
            "{:?}",
            encoded.form
        );
    }
}

/// A value inside a larger blob that is base64-encoded as a whole, at each byte offset mod 3,
/// in every alphabet and padding: the characters that depend only on the value are replaced.
#[test]
fn base64_of_a_blob_containing_the_value_at_each_alignment() {
    let redactor = redactor(&[(VALUE, "[R]")]);
    let engines = [
        ("standard", &STANDARD),
        ("standard unpadded", &STANDARD_NO_PAD),
        ("url-safe", &URL_SAFE),
        ("url-safe unpadded", &URL_SAFE_NO_PAD),
    ];
    for (name, engine) in engines {
        for before in 0..7usize {
            for after in 0..4usize {
                let mut blob: Vec<u8> = (0..before).map(|i| 0xa0 + i as u8).collect();
                blob.extend_from_slice(VALUE);
                blob.extend((0..after).map(|i| 0xf0 + i as u8));
                let encoded = engine.encode(&blob);
                let end = before + VALUE.len();
                let keep_start = 4 * (before / 3) + [0, 2, 3][before % 3];
                let keep_end = 4 * (end / 3) + [0, 1, 2][end % 3];
                // At offset 0 with nothing after, the value's own base64 ends the stream, and
                // the longest pattern (its whole encoding, padding included) takes the rest.
                let head = &encoded[..keep_start];
                let tail = if after == 0 && before % 3 == 0 {
                    ""
                } else {
                    &encoded[keep_end..]
                };
                let expected = format!("{head}[R]{tail}");
                let got = text(&redactor.redact(encoded.as_bytes()));
                assert_eq!(got, expected, "{name}, {before} before, {after} after");
            }
        }
    }
}

/// An input with values in several forms, binary bytes and a near miss, shared by the
/// chunking tests.
fn mixed_input() -> (Redactor, Vec<u8>, String) {
    let redactor = redactor(&[
        (b"AKIAEXAMPLEKEY123456", "[A]"),
        (b"hunter2hunter2", "[H]"),
        (b"hunter2hunter2/and more", "[L]"),
        (&[0xff, 0x00, 0xfe, 0x41, 0x42], "[BIN]"),
    ]);
    let mut input = Vec::new();
    input.extend_from_slice(b"key=AKIAEXAMPLEKEY123456\n");
    input.extend_from_slice(b"pw hunter2hunter2 and hunter2hunter2/and more!\n");
    input.extend_from_slice(b"hex 414b49414558414d504c454b4559313233343536 ");
    input.extend_from_slice(b"b64 QUtJQUVYQU1QTEVLRVkxMjM0NTY= ");
    input.extend_from_slice(b"url hunter2hunter2%2Fand%20more ");
    input.extend_from_slice(&[0xc3, 0x28, 0xff, 0x00, 0xfe, 0x41, 0x42, 0x80]);
    input.extend_from_slice(b" near miss hunter2hunter ");
    input.extend_from_slice(b"AKIAEXAMPLEKEY123456");
    let expected = "key=[A]\n\
                    pw [H] and [L]!\n\
                    hex [A] b64 [A] url [L] \u{fffd}([BIN]\u{fffd} near miss hunter2hunter [A]"
        .to_owned();
    (redactor, input, expected)
}

#[test]
fn one_shot_redaction_of_mixed_input() {
    let (redactor, input, expected) = mixed_input();
    assert_eq!(text(&redactor.redact(&input)), expected);
}

fn stream_chunks(redactor: &Redactor, chunks: &[&[u8]]) -> Vec<u8> {
    let mut stream = redactor.stream();
    let mut out = Vec::new();
    for chunk in chunks {
        stream.push_into(chunk, &mut out);
        assert!(stream.held() <= redactor.max_pattern_len().saturating_sub(1));
    }
    stream.finish_into(&mut out);
    out
}

#[test]
fn a_split_at_every_byte_gives_the_one_shot_output() {
    let (redactor, input, _) = mixed_input();
    let whole = redactor.redact(&input);
    for split in 0..=input.len() {
        let (a, b) = input.split_at(split);
        assert_eq!(stream_chunks(&redactor, &[a, b]), whole, "split at {split}");
    }
}

#[test]
fn one_byte_chunks_give_the_one_shot_output() {
    let (redactor, input, _) = mixed_input();
    let chunks: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(stream_chunks(&redactor, &chunks), redactor.redact(&input));
}

/// Fixed chunk sizes from 1 byte to the whole input: chunks shorter than twice the longest
/// pattern are buffered, longer ones scanned in place with only the boundary copied.
#[test]
fn every_chunk_size_gives_the_one_shot_output() {
    let (redactor, input, _) = mixed_input();
    let whole = redactor.redact(&input);
    for size in 1..=input.len() {
        let chunks: Vec<&[u8]> = input.chunks(size).collect();
        assert_eq!(stream_chunks(&redactor, &chunks), whole, "chunks of {size}");
    }
}

#[test]
fn three_way_splits_give_the_one_shot_output() {
    let (redactor, input, _) = mixed_input();
    let whole = redactor.redact(&input);
    for first in (0..input.len()).step_by(7) {
        for second in (first..=input.len()).step_by(5) {
            let chunks = [&input[..first], &input[first..second], &input[second..]];
            assert_eq!(stream_chunks(&redactor, &chunks), whole, "{first}/{second}");
        }
    }
}

#[test]
fn empty_chunks_and_an_empty_stream() {
    let (redactor, input, expected) = mixed_input();
    assert_eq!(
        text(&stream_chunks(&redactor, &[b"", &input, b""])),
        expected
    );
    assert_eq!(stream_chunks(&redactor, &[]), b"");
}

#[test]
fn overlapping_values_take_the_longest_at_the_leftmost_start() {
    let redactor = redactor(&[
        (b"abcd1234", "[SHORT]"),
        (b"abcd1234efgh", "[LONG]"),
        (b"1234efgh5678", "[INNER]"),
    ]);
    let cases: [(&str, &str); 5] = [
        ("abcd1234", "[SHORT]"),
        ("abcd1234efgh", "[LONG]"),
        ("abcd1234efgh5678", "[LONG]5678"),
        ("xxabcd1234efgxx", "xx[SHORT]efgxx"),
        ("abcd1234efgh5678 1234efgh5678", "[LONG]5678 [INNER]"),
    ];
    for (input, expected) in cases {
        assert_eq!(
            text(&redactor.redact(input.as_bytes())),
            expected,
            "{input}"
        );
        let chunks: Vec<&[u8]> = input.as_bytes().chunks(1).collect();
        assert_eq!(
            text(&stream_chunks(&redactor, &chunks)),
            expected,
            "{input} in bytes"
        );
    }
}

#[test]
fn non_utf8_input_passes_through_untouched_around_values() {
    let redactor = redactor(&[(b"secret-value", "[S]")]);
    let mut input: Vec<u8> = (0..=255u8).collect();
    input.extend_from_slice(b"secret-value");
    input.extend((0..=255u8).rev());
    let mut expected: Vec<u8> = (0..=255u8).collect();
    expected.extend_from_slice(b"[S]");
    expected.extend((0..=255u8).rev());
    assert_eq!(redactor.redact(&input), expected);
    let chunks: Vec<&[u8]> = input.chunks(3).collect();
    assert_eq!(stream_chunks(&redactor, &chunks), expected);
}

#[test]
fn a_short_value_is_refused() {
    let mut builder = RedactorBuilder::new();
    let err = builder.add(b"abc", "[X]").map(|_| ()).unwrap_err();
    assert!(matches!(err, RedactError::ValueTooShort { len: 3, min: 4 }));
    assert_eq!(
        err.to_string(),
        "a value of 3 bytes is too short to redact exactly; the minimum is 4"
    );
    let mut builder = RedactorBuilder::new().min_value_len(3);
    assert!(builder.add(b"abc", "[X]").is_ok());
}

#[test]
fn an_empty_redactor_passes_everything_through() {
    let redactor = RedactorBuilder::new().build().unwrap();
    assert_eq!(redactor.redact(b"anything \xff"), b"anything \xff");
    assert_eq!(stream_chunks(&redactor, &[b"a", b"b"]), b"ab");
    assert_eq!(Redactor::empty().redact(b"x"), b"x");
}

use support::rng::XorShift as Rng;

impl Rng {
    fn token(&mut self, len: usize) -> Vec<u8> {
        const ALPHABET: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-+/";
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len())])
            .collect()
    }
}

/// 1,200 values with all their forms in one automaton; values planted in every form are all
/// replaced, and random chunking changes nothing.
#[test]
fn twelve_hundred_values_in_one_automaton() {
    let mut rng = Rng(0x5eed);
    let values: Vec<Vec<u8>> = (0..1200)
        .map(|_| {
            let len = 16 + rng.below(49);
            rng.token(len)
        })
        .collect();
    let mut builder = RedactorBuilder::new();
    for (i, value) in values.iter().enumerate() {
        builder.add(value, &format!("[V{i}]")).unwrap();
    }
    let redactor = builder.build().unwrap();
    let mut input = Vec::new();
    let mut expected = Vec::new();
    for round in 0..400 {
        let filler = format!(
            "2024-05-01T12:00:{:02}Z INFO request id={round} ok ",
            round % 60
        );
        input.extend_from_slice(filler.as_bytes());
        expected.extend_from_slice(filler.as_bytes());
        let index = rng.below(values.len());
        let forms = encoded_forms(&values[index]);
        input.extend_from_slice(&forms[rng.below(forms.len())].bytes);
        expected.extend_from_slice(format!("[V{index}]").as_bytes());
        input.push(b'\n');
        expected.push(b'\n');
    }
    assert_eq!(text(&redactor.redact(&input)), text(&expected));
    let mut chunks = Vec::new();
    let mut at = 0;
    while at < input.len() {
        let len = (1 + rng.below(300)).min(input.len() - at);
        chunks.push(&input[at..at + len]);
        at += len;
    }
    assert_eq!(text(&stream_chunks(&redactor, &chunks)), text(&expected));
}

/// A toy detector: `AKIA` keys on one line, and PEM blocks over many lines.
struct Toy {
    key: regex::Regex,
    pem: regex::Regex,
    upper: regex::Regex,
}

impl Toy {
    fn new() -> Self {
        Toy {
            key: regex::Regex::new(r"AKIA[0-9A-Z]{16}").unwrap(),
            pem: regex::Regex::new(
                r"-----BEGIN PRIVATE KEY-----\n(?:[A-Za-z0-9+/=]+\n){1,30}-----END PRIVATE KEY-----",
            )
            .unwrap(),
            // Would match the text inside an exact-value placeholder; must be ignored there.
            upper: regex::Regex::new(r"REDACTED_[A-Z]+").unwrap(),
        }
    }
}

impl Detect for Toy {
    fn max_lines(&self) -> usize {
        6
    }

    fn detect(&self, text: &str) -> Vec<Detection> {
        let rules = [
            ("aws-access-key", &self.key),
            ("private-key", &self.pem),
            ("upper", &self.upper),
        ];
        rules
            .into_iter()
            .flat_map(|(id, re)| {
                re.find_iter(text).map(move |m| Detection {
                    rule_id: id.to_owned(),
                    range: m.range(),
                })
            })
            .collect()
    }
}

fn detecting_input() -> (Redactor, Vec<u8>) {
    let redactor = redactor(&[(b"vault-secret-value", "[REDACTED_SECRET:vault:aaaaaa]")]);
    let mut input = Vec::new();
    input.extend_from_slice(b"first AKIAABCDEFGHIJKLMNOP then vault-secret-value\n");
    for i in 0..12 {
        input.extend_from_slice(format!("filler line {i}\n").as_bytes());
    }
    input.extend_from_slice(b"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n");
    input.extend_from_slice(b"again AKIAABCDEFGHIJKLMNOP and AKIAZZZZZZZZZZZZZZZZ \xff\xfe\n");
    input.extend_from_slice(b"no newline at the end AKIAQQQQQQQQQQQQQQQQ");
    (redactor, input)
}

fn detect_chunks(redactor: &Redactor, chunks: &[&[u8]]) -> (String, Vec<Detected>) {
    let toy = Toy::new();
    let mut stream = redactor.detecting_stream(&toy);
    let mut names = SessionMap::with_seed(7);
    let mut out = Vec::new();
    let mut found = Vec::new();
    for chunk in chunks {
        found.extend(stream.push(chunk, &mut names, &mut out));
    }
    found.extend(stream.finish(&mut names, &mut out));
    (text(&out), found)
}

#[test]
fn detection_on_top_of_exact_values() {
    let (redactor, input) = detecting_input();
    let (out, found) = detect_chunks(&redactor, &[&input]);
    let mut names = SessionMap::with_seed(7);
    let key = names.placeholder_for("aws-access-key", "AKIAABCDEFGHIJKLMNOP");
    let pem_text = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----";
    let pem = names.placeholder_for("private-key", pem_text);
    let zed = names.placeholder_for("aws-access-key", "AKIAZZZZZZZZZZZZZZZZ");
    let last = names.placeholder_for("aws-access-key", "AKIAQQQQQQQQQQQQQQQQ");
    let filler: String = (0..12).map(|i| format!("filler line {i}\n")).collect();
    let expected = format!(
        "first {key} then [REDACTED_SECRET:vault:aaaaaa]\n{filler}{pem}\nagain {key} and {zed} \u{fffd}\u{fffd}\nno newline at the end {last}"
    );
    assert_eq!(out, expected);
    let detected = |rule: &str, placeholder: &String| Detected {
        rule_id: rule.to_owned(),
        placeholder: placeholder.clone(),
    };
    assert_eq!(
        found,
        vec![
            detected("aws-access-key", &key),
            detected("private-key", &pem),
            detected("aws-access-key", &key),
            detected("aws-access-key", &zed),
            detected("aws-access-key", &last),
        ]
    );
}

#[test]
fn detection_is_the_same_for_every_split_and_for_single_bytes() {
    let (redactor, input) = detecting_input();
    let whole = detect_chunks(&redactor, &[&input]);
    for split in 0..=input.len() {
        let (a, b) = input.split_at(split);
        assert_eq!(detect_chunks(&redactor, &[a, b]), whole, "split at {split}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(detect_chunks(&redactor, &bytes), whole);
}

#[test]
fn detection_holds_back_a_bounded_window() {
    let redactor = redactor(&[]);
    let toy = Toy::new();
    let mut stream = redactor.detecting_stream(&toy).with_max_hold(1000);
    let mut names = SessionMap::with_seed(1);
    let mut out = Vec::new();
    let line = [b'x'; 99];
    for _ in 0..10_000 {
        stream.push(&line, &mut names, &mut out);
        // No newline at all: the hold is the cap plus one batch of unjudged input.
        assert!(
            stream.held() <= 1000 + 4096 + line.len(),
            "{}",
            stream.held()
        );
    }
    stream.finish(&mut names, &mut out);
    assert_eq!(out.len(), 99 * 10_000);
}

/// One-line detector, as the built-in rules are: complete lines can be judged at once.
struct OneLine(regex::Regex);

impl Detect for OneLine {
    fn detect(&self, text: &str) -> Vec<Detection> {
        self.0
            .find_iter(text)
            .map(|m| Detection {
                rule_id: "aws-access-key".into(),
                range: m.range(),
            })
            .collect()
    }
}

#[test]
fn complete_lines_leave_a_stream_at_once_unless_a_value_spans_lines() {
    let detector = OneLine(regex::Regex::new(r"AKIA[0-9A-Z]{16}").unwrap());
    let mut names = SessionMap::with_seed(7);

    // Values without newlines: each complete line is released by the push that ends it,
    // and the unfinished rest (which may be the start of a value) is held.
    let redactor = redactor(&[(b"vault-secret-value", "[REDACTED_SECRET:vault:aaaaaa]")]);
    let mut stream = redactor.detecting_stream(&detector);
    let mut out = Vec::new();
    stream.push(b"first line\nvault-sec", &mut names, &mut out);
    assert_eq!(text(&out), "first line\n");
    stream.push(b"ret-value ok\nsecond ", &mut names, &mut out);
    assert_eq!(
        text(&out),
        "first line\n[REDACTED_SECRET:vault:aaaaaa] ok\n"
    );
    stream.finish(&mut names, &mut out);
    assert_eq!(
        text(&out),
        "first line\n[REDACTED_SECRET:vault:aaaaaa] ok\nsecond "
    );

    // A value that holds a newline: the stream keeps its hold-back across lines.
    let redactor = redactor_with_newline();
    let mut stream = redactor.detecting_stream(&detector);
    let mut out = Vec::new();
    stream.push(b"ok\nline-one-of\n", &mut names, &mut out);
    assert!(!text(&out).contains("line-one-of"), "{}", text(&out));
    stream.push(b"line-two\n", &mut names, &mut out);
    stream.finish(&mut names, &mut out);
    assert_eq!(text(&out), "ok\n[REDACTED_SECRET:pem:bbbbbb]\n");
}

fn redactor_with_newline() -> Redactor {
    redactor(&[(b"line-one-of\nline-two", "[REDACTED_SECRET:pem:bbbbbb]")])
}

#[test]
fn the_built_in_detector_holds_lines_only_from_where_a_pem_block_may_start() {
    let detector =
        stakpak_secrets::detect::Detector::new(stakpak_secrets::detect::DetectOptions::default())
            .unwrap();
    let redactor = Redactor::empty();
    let mut stream = redactor.detecting_stream(detector);
    let mut names = SessionMap::with_seed(7);
    let mut out = Vec::new();

    stream.push(b"deploying\nstep 1 done\nstep 2", &mut names, &mut out);
    assert_eq!(text(&out), "deploying\nstep 1 done\n");

    // From the BEGIN line on, the block is held until it can be judged whole.
    let body = "MIIEowIBAAKCAQEAkm6YT7MToS+Usjz7SB/kgGLN23AcZe3ts/hwJqBSNf4A+N14\n\
                uUOjRw8qaH6jtJ3ljqPG7ApkMnhqIxcLyAgHaL2H8BEPfPeDIkxwL8gq/UdBRwLw\n\
                MExWe9NMCwjXqjNgrUklnAezGfRUSzaFw21wrb8Zq8MRNgn5mumZAMuncT1vqXr6\n";
    let begin = format!(" done\n-----BEGIN RSA PRIVATE KEY-----\n{body}");
    stream.push(begin.as_bytes(), &mut names, &mut out);
    assert_eq!(text(&out), "deploying\nstep 1 done\nstep 2 done\n");
    stream.push(
        b"-----END RSA PRIVATE KEY-----\nafter\n",
        &mut names,
        &mut out,
    );
    stream.finish(&mut names, &mut out);
    let all = text(&out);
    assert!(!all.contains("MIIEowIBAAKCAQEA"), "{all}");
    assert!(
        all.contains("-----BEGIN RSA PRIVATE KEY-----\n[REDACTED_SECRET:private-key:"),
        "{all}"
    );
    assert!(
        all.ends_with("-----END RSA PRIVATE KEY-----\nafter\n"),
        "{all}"
    );
}

#[test]
fn the_built_in_detector_gives_the_same_output_for_every_split() {
    let detector =
        stakpak_secrets::detect::Detector::new(stakpak_secrets::detect::DetectOptions::default())
            .unwrap();
    let redactor = redactor(&[(b"vault-secret-value", "[REDACTED_SECRET:vault:aaaaaa]")]);
    let input =
        b"a vault-secret-value\nAWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY\n\
-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n\
MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n-----END PRIVATE KEY-----\nend";
    let run = |chunks: &[&[u8]]| {
        let mut stream = redactor.detecting_stream(detector);
        let mut names = SessionMap::with_seed(7);
        let mut out = Vec::new();
        for chunk in chunks {
            stream.push(chunk, &mut names, &mut out);
        }
        stream.finish(&mut names, &mut out);
        out
    };
    let whole = run(&[input]);
    assert!(!text(&whole).contains("MIIEvQIBADAN"), "{}", text(&whole));
    assert!(!text(&whole).contains("vault-secret-value"));
    for at in 0..input.len() {
        let (a, b) = input.split_at(at);
        assert_eq!(text(&run(&[a, b])), text(&whole), "split at {at}");
    }
}
