//! Placeholders: `{{secret:NAME}}` references to vault secrets, the
//! `[REDACTED_SECRET:<rule-id>:<code>]` tokens that stand in for redacted values, their
//! resolution for execution, and the per-session map between values and tokens.
//!
//! Resolution is for execution only. [`for_shell`] rewrites a shell command so each value
//! reaches the child through an environment variable (`"${STAKPAK_SECRET_<n>}"`), never through
//! argv where `ps` would show it; [`substitute`] is the plain-text form for everything else.
//! Secret-bearing results are [`SecretString`]s, whose `Debug` prints `[REDACTED]`.

use std::{
    borrow::Borrow,
    collections::{BTreeMap, HashMap},
    fmt,
    hash::{Hash, Hasher},
    ops::Range,
};

use zeroize::Zeroizing;

/// Longest accepted `NAME` in `{{secret:NAME}}`.
pub const MAX_NAME_LEN: usize = 128;
/// Longest accepted rule id in a redaction placeholder.
pub const MAX_RULE_ID_LEN: usize = 64;
/// Length of the code that ends a redaction placeholder.
pub const CODE_LEN: usize = 6;
/// Prefix of every environment variable [`for_shell`] introduces.
pub const ENV_PREFIX: &str = "STAKPAK_SECRET_";

const VAULT_OPEN: &str = "{{secret:";
const VAULT_CLOSE: &str = "}}";
const REDACTED_OPEN: &str = "[REDACTED_SECRET:";
const CODE_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A secret value in memory: zeroed when dropped, `[REDACTED]` when debug-printed.
///
/// Deliberately not `Display`: code that needs the value calls [`SecretString::expose`],
/// which is easy to find in review.
#[derive(Clone, Default)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    pub fn new(value: String) -> Self {
        SecretString(Zeroizing::new(value))
    }

    /// The value itself. Every call site is a place where the secret leaves this wrapper.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        SecretString::new(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        SecretString::new(value.to_owned())
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl PartialEq for SecretString {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for SecretString {}

// Hashes exactly like `str`, so maps keyed by `SecretString` can be queried with `&str`.
impl Hash for SecretString {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.expose().hash(state);
    }
}

impl Borrow<str> for SecretString {
    fn borrow(&self) -> &str {
        self.expose()
    }
}

/// Which kind of placeholder a [`Reference`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReferenceKind {
    /// `{{secret:NAME}}`: a vault secret by name.
    Vault,
    /// `[REDACTED_SECRET:<rule-id>:<code>]`: a value redacted earlier in the session.
    Redacted,
}

/// One placeholder found in a text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    pub kind: ReferenceKind,
    /// For [`ReferenceKind::Vault`] the secret's name; for [`ReferenceKind::Redacted`] the whole
    /// placeholder, which is how [`SessionMap::resolve`] looks it up.
    pub name: String,
    /// Byte range of the whole placeholder in the text.
    pub range: Range<usize>,
}

impl Reference {
    /// The placeholder as it is written, for error messages (never a value).
    pub fn placeholder(&self) -> String {
        match self.kind {
            ReferenceKind::Vault => format!("{VAULT_OPEN}{}{VAULT_CLOSE}", self.name),
            ReferenceKind::Redacted => self.name.clone(),
        }
    }
}

/// Why a placeholder could not be resolved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlaceholderError {
    #[error("unknown secret placeholder {placeholder}")]
    Unknown { placeholder: String },
    #[error("secret placeholder {placeholder} cannot be expanded inside {context}")]
    NotExpandable {
        placeholder: String,
        context: &'static str,
    },
    #[error(
        "the value of secret placeholder {placeholder} contains a NUL byte and cannot be passed in the environment"
    )]
    NulInValue { placeholder: String },
}

/// Why session-map bytes could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum SessionMapError {
    #[error("cannot seed the session map from the system's random source")]
    Random(#[source] getrandom::Error),
    #[error("session map is malformed: {reason}")]
    Malformed { reason: &'static str },
}

/// True when `name` is a valid `NAME` for `{{secret:NAME}}` (and so for a vault secret):
/// `[A-Za-z_][A-Za-z0-9_.-]{0,127}`.
pub fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    match bytes.first() {
        Some(b) if b.is_ascii_alphabetic() || *b == b'_' => {}
        _ => return false,
    }
    bytes.len() <= MAX_NAME_LEN && bytes.iter().all(|b| is_name_byte(*b))
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// True when `rule_id` is valid inside a redaction placeholder: `[A-Za-z0-9_.-]{1,64}`.
pub fn is_valid_rule_id(rule_id: &str) -> bool {
    !rule_id.is_empty() && rule_id.len() <= MAX_RULE_ID_LEN && rule_id.bytes().all(is_name_byte)
}

/// The `{{secret:NAME}}` placeholder for a name.
pub fn vault_placeholder(name: &str) -> String {
    format!("{VAULT_OPEN}{name}{VAULT_CLOSE}")
}

/// Whether `text` may hold a placeholder: it contains the opening of one of either kind
/// (`{{secret:` or `[REDACTED_SECRET:`). A cheap test before asking secretd to resolve a
/// text: when it is false, [`references`] finds nothing and resolving would return the text
/// unchanged, so a caller may skip the round trip.
pub fn may_hold_placeholder(text: &str) -> bool {
    text.contains(VAULT_OPEN) || text.contains(REDACTED_OPEN)
}

/// Every placeholder in `text`, both kinds, in order of position; malformed ones are text.
pub fn references(text: &str) -> Vec<Reference> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(offset) = memchr::memchr2(b'{', b'[', &bytes[at..]) {
        let start = at + offset;
        match parse_at(text, start) {
            Some(reference) => {
                at = reference.range.end;
                found.push(reference);
            }
            None => at = start + 1,
        }
    }
    found
}

/// The placeholder that starts exactly at `start`, if one does.
fn parse_at(text: &str, start: usize) -> Option<Reference> {
    let rest = &text[start..];
    if let Some(after) = rest.strip_prefix(VAULT_OPEN) {
        let len = after.bytes().take_while(|b| is_name_byte(*b)).count();
        let name = &after[..len];
        if is_valid_name(name) && after[len..].starts_with(VAULT_CLOSE) {
            let end = start + VAULT_OPEN.len() + len + VAULT_CLOSE.len();
            return Some(Reference {
                kind: ReferenceKind::Vault,
                name: name.to_owned(),
                range: start..end,
            });
        }
        return None;
    }
    if let Some(after) = rest.strip_prefix(REDACTED_OPEN) {
        let (rule, _code) = split_redacted(after)?;
        let end = start + REDACTED_OPEN.len() + rule.len() + 1 + CODE_LEN + 1;
        return Some(Reference {
            kind: ReferenceKind::Redacted,
            name: text[start..end].to_owned(),
            range: start..end,
        });
    }
    None
}

/// Splits `<rule-id>:<code>]…` (the text after `[REDACTED_SECRET:`) into rule id and code.
fn split_redacted(after: &str) -> Option<(&str, &str)> {
    let rule_len = after.bytes().take_while(|b| is_name_byte(*b)).count();
    let rule = &after[..rule_len];
    let rest = after[rule_len..].strip_prefix(':')?;
    let code = rest.get(..CODE_LEN)?;
    let valid = is_valid_rule_id(rule)
        && code.bytes().all(|b| CODE_ALPHABET.contains(&b))
        && rest[CODE_LEN..].starts_with(']');
    valid.then_some((rule, code))
}

/// Replaces every placeholder in `text` by its value from `resolve`.
///
/// For uses other than a shell command (a file to write, an HTTP header). The result holds
/// values, so it is a [`SecretString`]. The first placeholder `resolve` does not know is the
/// error, named by its placeholder.
pub fn substitute<F>(text: &str, mut resolve: F) -> Result<SecretString, PlaceholderError>
where
    F: FnMut(&Reference) -> Option<SecretString>,
{
    let found = references(text);
    let mut out = Zeroizing::new(String::with_capacity(text.len()));
    let mut at = 0;
    for reference in &found {
        let value = resolve(reference).ok_or_else(|| PlaceholderError::Unknown {
            placeholder: reference.placeholder(),
        })?;
        // `out` may grow past its capacity; reserve first so no half-filled buffer holding
        // earlier values is freed without being zeroed.
        reserve_zeroizing(&mut out, reference.range.start - at + value.len());
        out.push_str(&text[at..reference.range.start]);
        out.push_str(value.expose());
        at = reference.range.end;
    }
    reserve_zeroizing(&mut out, text.len() - at);
    out.push_str(&text[at..]);
    Ok(SecretString(out))
}

/// Grows `buffer` to hold `additional` more bytes, zeroing the old allocation.
fn reserve_zeroizing(buffer: &mut Zeroizing<String>, additional: usize) {
    if buffer.capacity() - buffer.len() >= additional {
        return;
    }
    let wanted = (buffer.len() + additional).max(buffer.capacity() * 2);
    let mut bigger = String::with_capacity(wanted);
    bigger.push_str(buffer);
    // Dropping the old `Zeroizing` value zeroes its allocation.
    *buffer = Zeroizing::new(bigger);
}

/// A shell command ready for execution: `command` holds only variable references, `env` the
/// values to put into the child's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellCommand {
    pub command: String,
    /// `STAKPAK_SECRET_<n>` → value, `n` counting from 0 in order of first appearance.
    pub env: BTreeMap<String, SecretString>,
}

/// Rewrites a shell command so each placeholder becomes a reference to an environment
/// variable, quoted as its position in the command needs, and returns the variables' values.
///
/// Unquoted `{{secret:A}}` becomes `"${STAKPAK_SECRET_0}"` (quoted, so a value with spaces or
/// `*` stays one word); inside double quotes `${STAKPAK_SECRET_0}`; inside single quotes the
/// quote is closed around it (`'…'"${STAKPAK_SECRET_0}"'…'`), likewise for `$'…'`; in an
/// unquoted here-document `${STAKPAK_SECRET_0}`. A placeholder in a quoted here-document
/// cannot be expanded and is an error; one in a comment is left alone and not resolved.
/// The same placeholder twice uses the same variable.
pub fn for_shell<F>(command: &str, mut resolve: F) -> Result<ShellCommand, PlaceholderError>
where
    F: FnMut(&Reference) -> Option<SecretString>,
{
    let spots = shell_spots(command)?;
    let mut out = String::with_capacity(command.len());
    let mut env = BTreeMap::new();
    let mut variables: HashMap<(ReferenceKind, String), String> = HashMap::new();
    let mut at = 0;
    for spot in spots {
        out.push_str(&command[at..spot.range.start]);
        at = spot.range.end;
        let SpotKind::Placeholder { reference, quoting } = spot.what else {
            continue;
        };
        let key = (reference.kind, reference.name.clone());
        let variable = match variables.get(&key) {
            Some(variable) => variable.clone(),
            None => {
                let value = resolve(&reference).ok_or_else(|| PlaceholderError::Unknown {
                    placeholder: reference.placeholder(),
                })?;
                if value.expose().contains('\0') {
                    return Err(PlaceholderError::NulInValue {
                        placeholder: reference.placeholder(),
                    });
                }
                let variable = format!("{ENV_PREFIX}{}", variables.len());
                env.insert(variable.clone(), value);
                variables.insert(key, variable.clone());
                variable
            }
        };
        out.push_str(&quoting.wrap(&variable));
    }
    out.push_str(&command[at..]);
    Ok(ShellCommand { command: out, env })
}

/// How the shell reads the spot where a placeholder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    Unquoted,
    Double,
    Single,
    AnsiC,
    HereDoc,
}

impl Quoting {
    fn wrap(self, variable: &str) -> String {
        match self {
            Quoting::Unquoted => format!("\"${{{variable}}}\""),
            Quoting::Double | Quoting::HereDoc => format!("${{{variable}}}"),
            Quoting::Single => format!("'\"${{{variable}}}\"'"),
            Quoting::AnsiC => format!("'\"${{{variable}}}\"$'"),
        }
    }
}

/// A range of the command to rewrite: a placeholder, or a byte to drop.
struct Spot {
    range: Range<usize>,
    what: SpotKind,
}

enum SpotKind {
    Placeholder {
        reference: Reference,
        quoting: Quoting,
    },
    /// A backslash in front of a placeholder: the backslash would escape the quote we add.
    Drop,
}

impl Spot {
    fn placeholder(reference: Reference, quoting: Quoting) -> Spot {
        Spot {
            range: reference.range.clone(),
            what: SpotKind::Placeholder { reference, quoting },
        }
    }
}

/// The lexical context the scanner is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    /// Top level, or inside `$(…)` with its parenthesis depth, or inside backticks.
    Code {
        parens: usize,
        backtick: bool,
    },
    Double,
    Single,
    AnsiC,
}

impl Context {
    /// The command itself, outside any substitution.
    const TOP: Self = Self::Code {
        parens: 0,
        backtick: false,
    };
    /// Just inside `$(`.
    const DOLLAR_PAREN: Self = Self::Code {
        parens: 1,
        backtick: false,
    };
    /// Just inside a backtick.
    const BACKTICK: Self = Self::Code {
        parens: 0,
        backtick: true,
    };
}

struct HereDoc {
    delimiter: String,
    strip_tabs: bool,
    quoted: bool,
}

/// Walks a shell command once, tracking quotes, `$(…)`, backticks, comments and
/// here-documents, and lists where each placeholder stands and how it is quoted there.
///
/// Not a full parser: it only needs to know the quoting at each placeholder. What it does not
/// model (`case` patterns inside `$(…)`, `${…}` nesting) only matters when a placeholder sits
/// inside it, and then the rewrite is still a valid variable reference.
fn shell_spots(command: &str) -> Result<Vec<Spot>, PlaceholderError> {
    let bytes = command.as_bytes();
    let mut found = references(command).into_iter().peekable();
    let mut spots = Vec::new();
    let mut stack = vec![Context::TOP];
    let mut here_docs: Vec<HereDoc> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        // References never overlap and come in order; skip those passed over (in comments
        // or here-document bodies, which are handled where they are read).
        while found.peek().is_some_and(|r| r.range.start < i) {
            found.next();
        }
        let context = *stack.last().unwrap_or(&Context::TOP);
        if let Some(reference) = found.next_if(|r| r.range.start == i) {
            let quoting = match context {
                Context::Code { .. } => Quoting::Unquoted,
                Context::Double => Quoting::Double,
                Context::Single => Quoting::Single,
                Context::AnsiC => Quoting::AnsiC,
            };
            i = reference.range.end;
            spots.push(Spot::placeholder(reference, quoting));
            continue;
        }
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        match context {
            Context::Code { parens, backtick } => match b {
                b'\\' => {
                    if found.peek().is_some_and(|r| r.range.start == i + 1) {
                        spots.push(Spot {
                            range: i..i + 1,
                            what: SpotKind::Drop,
                        });
                        i += 1;
                    } else {
                        i += 2;
                    }
                    continue;
                }
                b'\'' => stack.push(Context::Single),
                b'"' => stack.push(Context::Double),
                b'$' if next == Some(b'\'') => {
                    stack.push(Context::AnsiC);
                    i += 2;
                    continue;
                }
                b'$' if next == Some(b'(') => {
                    stack.push(Context::DOLLAR_PAREN);
                    i += 2;
                    continue;
                }
                b'`' if backtick => {
                    stack.pop();
                }
                b'`' => stack.push(Context::BACKTICK),
                b'(' if parens > 0 => set_top(&mut stack, parens + 1, backtick),
                b')' if parens == 1 => {
                    stack.pop();
                }
                b')' if parens > 1 => set_top(&mut stack, parens - 1, backtick),
                b'#' if starts_word(bytes, i) => {
                    i += memchr::memchr(b'\n', &bytes[i..]).unwrap_or(bytes.len() - i);
                    continue;
                }
                b'<' if next == Some(b'<') && bytes.get(i + 2) != Some(&b'<') => {
                    let (here_doc, end) = read_here_doc_word(command, i + 2);
                    if let Some(here_doc) = here_doc {
                        here_docs.push(here_doc);
                    }
                    i = end;
                    continue;
                }
                b'<' if next == Some(b'<') => {
                    // `<<<` is a here-string: an ordinary word follows.
                    i += 3;
                    continue;
                }
                b'\n' if !here_docs.is_empty() => {
                    i = read_here_doc_bodies(command, i + 1, &mut here_docs, &mut spots)?;
                    continue;
                }
                _ => {}
            },
            // In both, a backslash escapes the byte after it.
            Context::Double | Context::AnsiC if b == b'\\' => {
                i += 2;
                continue;
            }
            Context::Double => match b {
                b'"' => {
                    stack.pop();
                }
                b'$' if next == Some(b'(') => {
                    stack.push(Context::DOLLAR_PAREN);
                    i += 2;
                    continue;
                }
                b'`' => stack.push(Context::BACKTICK),
                _ => {}
            },
            Context::Single | Context::AnsiC => {
                if b == b'\'' {
                    stack.pop();
                }
            }
        }
        i += 1;
    }
    Ok(spots)
}

fn set_top(stack: &mut [Context], parens: usize, backtick: bool) {
    if let Some(top) = stack.last_mut() {
        *top = Context::Code { parens, backtick };
    }
}

/// A `#` starts a comment only at the start of a word.
fn starts_word(bytes: &[u8], i: usize) -> bool {
    i == 0
        || matches!(
            bytes[i - 1],
            b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'(' | b')'
        )
}

/// Reads the delimiter word after `<<` (at `start`), returning the here-document it announces
/// and where scanning resumes.
fn read_here_doc_word(command: &str, start: usize) -> (Option<HereDoc>, usize) {
    let bytes = command.as_bytes();
    let mut i = start;
    let strip_tabs = bytes.get(i) == Some(&b'-');
    if strip_tabs {
        i += 1;
    }
    while matches!(bytes.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    let mut delimiter = String::new();
    let mut quoted = false;
    while let Some(&b) = bytes.get(i) {
        match b {
            b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'<' | b'>' | b'(' | b')' => break,
            b'\'' | b'"' => {
                quoted = true;
                let close = memchr::memchr(b, &bytes[i + 1..]).map_or(bytes.len(), |n| i + 1 + n);
                delimiter.push_str(&command[i + 1..close]);
                i = (close + 1).min(bytes.len());
            }
            b'\\' => {
                quoted = true;
                if let Some(c) = command[i + 1..].chars().next() {
                    delimiter.push(c);
                    i += 1 + c.len_utf8();
                } else {
                    i += 1;
                }
            }
            _ => {
                let c = command[i..].chars().next().unwrap_or('\u{fffd}');
                delimiter.push(c);
                i += c.len_utf8();
            }
        }
    }
    let here_doc = (!delimiter.is_empty()).then_some(HereDoc {
        delimiter,
        strip_tabs,
        quoted,
    });
    (here_doc, i)
}

/// Reads the bodies of the pending here-documents, starting at `start` (just after a newline),
/// records the placeholders inside them, and returns where the command resumes.
fn read_here_doc_bodies(
    command: &str,
    start: usize,
    here_docs: &mut Vec<HereDoc>,
    spots: &mut Vec<Spot>,
) -> Result<usize, PlaceholderError> {
    let mut i = start;
    for here_doc in here_docs.drain(..) {
        let body_start = i;
        let mut body_end = command.len();
        let mut resume = command.len();
        while i < command.len() {
            let line_end =
                memchr::memchr(b'\n', &command.as_bytes()[i..]).map_or(command.len(), |n| i + n);
            let line = &command[i..line_end];
            let line = if here_doc.strip_tabs {
                line.trim_start_matches('\t')
            } else {
                line
            };
            if line == here_doc.delimiter {
                body_end = i;
                resume = (line_end + 1).min(command.len());
                break;
            }
            i = (line_end + 1).min(command.len());
            if line_end == command.len() {
                break;
            }
        }
        for mut reference in references(&command[body_start..body_end]) {
            if here_doc.quoted {
                return Err(PlaceholderError::NotExpandable {
                    placeholder: reference.placeholder(),
                    context: "a quoted here-document",
                });
            }
            reference.range = reference.range.start + body_start..reference.range.end + body_start;
            spots.push(Spot::placeholder(reference, Quoting::HereDoc));
        }
        i = resume;
    }
    Ok(i)
}

/// Values redacted in one session and the placeholders that stand for them.
///
/// The same value always gets the same placeholder (the rule that first saw it names it);
/// codes are drawn from a generator seeded from the system's random source, so they say
/// nothing about the value, and redrawn on collision, so no two values share one.
/// [`SessionMap::to_bytes`] is meant to be sealed with the vault key
/// ([`crate::vault::write_sealed`]).
#[derive(Clone, Default)]
pub struct SessionMap {
    entries: Vec<Entry>,
    by_value: HashMap<SecretString, usize>,
    by_code: HashMap<[u8; CODE_LEN], usize>,
    rng: SplitMix64,
}

#[derive(Clone)]
struct Entry {
    rule_id: String,
    code: [u8; CODE_LEN],
    value: SecretString,
}

impl fmt::Debug for SessionMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionMap")
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

const SESSION_MAGIC: &[u8; 8] = b"STKSMAP1";

impl SessionMap {
    /// An empty map whose codes come from the system's random source.
    pub fn new() -> Result<Self, SessionMapError> {
        let seed = getrandom::u64().map_err(SessionMapError::Random)?;
        Ok(Self::with_seed(seed))
    }

    /// An empty map with a fixed seed: the same inputs give the same placeholders. For tests.
    pub fn with_seed(seed: u64) -> Self {
        SessionMap {
            rng: SplitMix64(seed),
            ..SessionMap::default()
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The placeholder for `value`, making one if the value is new to the session.
    ///
    /// A rule id that is not `[A-Za-z0-9_.-]{1,64}` is cleaned (other bytes become `-`,
    /// longer ids are cut) rather than refused, so redaction never fails on a name.
    pub fn placeholder_for(&mut self, rule_id: &str, value: &str) -> String {
        if let Some(&index) = self.by_value.get(value) {
            return self.entries[index].placeholder();
        }
        let code = loop {
            let code = self.rng.code();
            if !self.by_code.contains_key(&code) {
                break code;
            }
        };
        let entry = Entry {
            rule_id: clean_rule_id(rule_id),
            code,
            value: SecretString::from(value),
        };
        let placeholder = entry.placeholder();
        self.by_value
            .insert(entry.value.clone(), self.entries.len());
        self.by_code.insert(code, self.entries.len());
        self.entries.push(entry);
        placeholder
    }

    /// The value a `[REDACTED_SECRET:…]` placeholder stands for, if it is from this session.
    pub fn resolve(&self, placeholder: &str) -> Option<&SecretString> {
        let (rule, code) = split_redacted(placeholder.strip_prefix(REDACTED_OPEN)?)?;
        if placeholder.len() != REDACTED_OPEN.len() + rule.len() + 1 + CODE_LEN + 1 {
            return None;
        }
        let code: [u8; CODE_LEN] = code.as_bytes().try_into().ok()?;
        let entry = &self.entries[*self.by_code.get(&code)?];
        (entry.rule_id == rule).then_some(&entry.value)
    }

    /// Every value in the session with its rule id, in the order they were first seen (to
    /// build the exact-value redactor).
    pub fn values(&self) -> impl Iterator<Item = (&str, &SecretString)> {
        self.entries.iter().map(|e| (e.rule_id.as_str(), &e.value))
    }

    /// The map as bytes, values included: seal them before they touch a disk.
    ///
    /// Layout (little-endian): `STKSMAP1`, generator state `u64`, entry count `u32`, then per
    /// entry rule-id length `u8`, rule id, code (6 bytes), value length `u32`, value.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let size = 8
            + 8
            + 4
            + self
                .entries
                .iter()
                .map(|e| 1 + e.rule_id.len() + CODE_LEN + 4 + e.value.len())
                .sum::<usize>();
        let mut out = Zeroizing::new(Vec::with_capacity(size));
        out.extend_from_slice(SESSION_MAGIC);
        out.extend_from_slice(&self.rng.0.to_le_bytes());
        out.extend_from_slice(&len_u32(self.entries.len()).to_le_bytes());
        for entry in &self.entries {
            // Rule ids are cleaned to at most 64 bytes, so the length fits a byte.
            out.push(entry.rule_id.len() as u8);
            out.extend_from_slice(entry.rule_id.as_bytes());
            out.extend_from_slice(&entry.code);
            out.extend_from_slice(&len_u32(entry.value.len()).to_le_bytes());
            out.extend_from_slice(entry.value.expose().as_bytes());
        }
        out
    }

    /// Reads back what [`SessionMap::to_bytes`] wrote.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SessionMapError> {
        let malformed = |reason| SessionMapError::Malformed { reason };
        let mut input = Cursor { bytes, at: 0 };
        if input.take(8).ok_or(malformed("too short"))? != SESSION_MAGIC {
            return Err(malformed("wrong magic"));
        }
        let state = input.u64().ok_or(malformed("too short"))?;
        let count = input.u32().ok_or(malformed("too short"))?;
        let mut map = SessionMap::with_seed(state);
        for _ in 0..count {
            let rule_len = input.u8().ok_or(malformed("entry cut short"))?;
            let rule = input
                .take(usize::from(rule_len))
                .ok_or(malformed("entry cut short"))?;
            let rule = std::str::from_utf8(rule).map_err(|_| malformed("rule id is not utf-8"))?;
            if !is_valid_rule_id(rule) {
                return Err(malformed("invalid rule id"));
            }
            let code: [u8; CODE_LEN] = input
                .take(CODE_LEN)
                .and_then(|c| c.try_into().ok())
                .ok_or(malformed("entry cut short"))?;
            if !code.iter().all(|b| CODE_ALPHABET.contains(b)) {
                return Err(malformed("invalid code"));
            }
            let value_len = input.u32().ok_or(malformed("entry cut short"))?;
            let value = input
                .take(value_len as usize)
                .ok_or(malformed("entry cut short"))?;
            let value = std::str::from_utf8(value).map_err(|_| malformed("value is not utf-8"))?;
            if map.by_value.contains_key(value) || map.by_code.contains_key(&code) {
                return Err(malformed("duplicate entry"));
            }
            let entry = Entry {
                rule_id: rule.to_owned(),
                code,
                value: SecretString::from(value),
            };
            map.by_value.insert(entry.value.clone(), map.entries.len());
            map.by_code.insert(code, map.entries.len());
            map.entries.push(entry);
        }
        if input.at != bytes.len() {
            return Err(malformed("trailing bytes"));
        }
        Ok(map)
    }
}

impl Entry {
    fn placeholder(&self) -> String {
        let code = String::from_utf8_lossy(&self.code);
        format!("{REDACTED_OPEN}{}:{code}]", self.rule_id)
    }
}

fn clean_rule_id(rule_id: &str) -> String {
    let cleaned: String = rule_id
        .bytes()
        .take(MAX_RULE_ID_LEN)
        .map(|b| if is_name_byte(b) { char::from(b) } else { '-' })
        .collect();
    if cleaned.is_empty() {
        "secret".to_owned()
    } else {
        cleaned
    }
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Codes only need to be unpredictable from the value, which any generator independent of
/// the values gives; SplitMix64 keeps the map serialisable and deterministic under a seed.
#[derive(Clone, Default)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn code(&mut self) -> [u8; CODE_LEN] {
        let mut bits = self.next();
        let mut code = [0; CODE_LEN];
        for c in &mut code {
            *c = CODE_ALPHABET[(bits % 36) as usize];
            bits /= 36;
        }
        code
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(slice)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sandboxd had two sniffers before [`may_hold_placeholder`]: its file tools asked
    /// secretd when a text contained `{{secret:` or `[REDACTED_SECRET:`, `Exec` for each
    /// extra variable when it contained `{{` or `[REDACTED`. The function is the first; every
    /// text only the second caught holds no placeholder, so resolving it changed nothing.
    #[test]
    fn may_hold_placeholder_covers_both_old_sniffers() {
        let files_sniffer = |t: &str| t.contains("{{secret:") || t.contains("[REDACTED_SECRET:");
        let exec_sniffer = |t: &str| t.contains("{{") || t.contains("[REDACTED");
        // text → (files sniffer, exec sniffer, may_hold_placeholder)
        let cases: [(&str, (bool, bool, bool)); 16] = [
            ("", (false, false, false)),
            ("plain text", (false, false, false)),
            ("{{secret:DB_PASSWORD}}", (true, true, true)),
            ("user={{secret:a.b-c_1}};", (true, true, true)),
            ("[REDACTED_SECRET:aws-key:abc123]", (true, true, true)),
            ("x [REDACTED_SECRET:vault:zzzzzz] y", (true, true, true)),
            // Malformed but opened: still worth asking, as both sniffers did.
            ("{{secret:bad name}}", (true, true, true)),
            ("{{secret:", (true, true, true)),
            ("[REDACTED_SECRET:", (true, true, true)),
            // Only the exec sniffer caught these; none holds a placeholder.
            ("{{ template }}", (false, true, false)),
            ("{{secret}}", (false, true, false)),
            ("{{SECRET:A}}", (false, true, false)),
            ("[REDACTED]", (false, true, false)),
            ("[REDACTED_SECRET]", (false, true, false)),
            ("{ {secret:A}}", (false, false, false)),
            ("[redacted_secret:r:abc123]", (false, false, false)),
        ];
        for (text, (files, exec, new)) in cases {
            assert_eq!(
                (
                    files_sniffer(text),
                    exec_sniffer(text),
                    may_hold_placeholder(text)
                ),
                (files, exec, new),
                "{text:?}"
            );
            assert_eq!(new, files, "{text:?}: the file tools' sniffer is kept");
            if !new {
                assert!(references(text).is_empty(), "{text:?} holds a placeholder");
            }
        }
    }

    #[test]
    fn codes_are_six_chars_of_the_alphabet() {
        let mut rng = SplitMix64(7);
        for _ in 0..1000 {
            let code = rng.code();
            assert!(code.iter().all(|b| CODE_ALPHABET.contains(b)));
        }
    }

    #[test]
    fn rule_ids_are_cleaned() {
        let cases = [
            ("aws-access-key", "aws-access-key"),
            ("a b:c]", "a-b-c-"),
            ("", "secret"),
        ];
        for (input, expected) in cases {
            assert_eq!(clean_rule_id(input), expected, "{input:?}");
        }
        assert_eq!(clean_rule_id(&"x".repeat(100)), "x".repeat(64));
    }
}
