//! The syntax tree of a shell command line: what the parser produces and the extractor walks.

/// A sequence of and-or lists separated by `;`, `&` or newlines.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Script {
    pub items: Vec<AndOr>,
}

/// `a && b || c`, possibly sent to the background with `&`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AndOr {
    pub first: Pipeline,
    pub rest: Vec<(Connector, Pipeline)>,
    pub background: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connector {
    And,
    Or,
}

/// `a | b |& c`, optionally negated with `!`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    pub negated: bool,
    pub commands: Vec<Command>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Simple(SimpleCommand),
    /// `( … )`
    Subshell(Script, Vec<Redirect>),
    /// `{ …; }`
    Group(Script, Vec<Redirect>),
    /// `if c; then b; elif c; then b; else b; fi`
    If {
        branches: Vec<(Script, Script)>,
        otherwise: Option<Script>,
        redirects: Vec<Redirect>,
    },
    /// `while c; do b; done` and `until c; do b; done`
    Loop {
        condition: Script,
        body: Script,
        redirects: Vec<Redirect>,
    },
    /// `for x in words; do b; done` (and `select`)
    For {
        var: String,
        words: Option<Vec<Word>>,
        body: Script,
        redirects: Vec<Redirect>,
    },
    /// `case w in p|q) b;; esac`
    Case {
        word: Word,
        arms: Vec<(Vec<Word>, Script)>,
        redirects: Vec<Redirect>,
    },
    /// `name() body` or `function name body`
    Function {
        name: String,
        body: Box<Command>,
    },
    /// `[[ … ]]`: words only, nothing runs unless a word substitutes.
    Test(Vec<Word>),
    /// `(( … ))`
    Arith(String),
}

/// `A=1 B=2 prog arg … <in >out`
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SimpleCommand {
    pub assigns: Vec<(String, Word)>,
    pub words: Vec<Word>,
    pub redirects: Vec<Redirect>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub fd: Option<u32>,
    pub op: RedirOp,
    /// The file, the fd to duplicate, or the here-doc delimiter / here-string.
    pub target: Word,
    /// The here-doc body, for `<<` and `<<-`.
    pub body: Option<HereDoc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirOp {
    /// `<`
    In,
    /// `>`
    Out,
    /// `>|`
    Clobber,
    /// `>>`
    Append,
    /// `<>`
    InOut,
    /// `>&` / `<&`
    Dup,
    /// `&>`
    OutErr,
    /// `&>>`
    AppendErr,
    /// `<<` / `<<-`
    HereDoc,
    /// `<<<`
    HereString,
}

/// A here-document. With a quoted delimiter the body is data; without, it expands
/// parameters and command substitutions (which run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HereDoc {
    /// Order of the here-doc in its parse; the body is read after the line ends and attached
    /// by this number.
    pub id: usize,
    pub text: String,
    pub expands: bool,
    /// Command substitutions in an expanding body: they run when the here-doc is read.
    pub substitutions: Vec<Script>,
    /// An expanding body held a substitution that does not parse.
    pub unparsed: bool,
}

/// One shell word: the concatenation of its parts (`a"b"$c` has three).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Word {
    pub parts: Vec<WordPart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WordPart {
    /// Unquoted text, backslash escapes resolved. `glob` is set when it holds an unquoted
    /// `*`, `?` or `[`.
    Lit { text: String, glob: bool },
    /// `'…'`
    Single(String),
    /// `"…"`
    Double(Vec<WordPart>),
    /// `$'…'`, escapes decoded.
    AnsiC(String),
    /// `$x`, `${x}`, `${x:-default}` (the operator text is kept in `op`).
    Param { name: String, op: Option<String> },
    /// `$(…)` or `` `…` ``
    CommandSub(Script),
    /// `<(…)` (`input`) or `>(…)`
    ProcessSub { input: bool, script: Script },
    /// `$((…))`
    Arith(String),
}

impl Word {
    pub fn lit(text: &str) -> Word {
        Word {
            parts: vec![WordPart::Lit {
                text: text.to_string(),
                glob: false,
            }],
        }
    }

    /// The word's value when it has no expansion at all (quotes removed), else `None`.
    pub fn literal(&self) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            if !push_literal(p, &mut out) {
                return None;
            }
        }
        Some(out)
    }

    /// True when any part is unquoted and holds a glob character.
    pub fn has_glob(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, WordPart::Lit { glob: true, .. }))
    }

    /// True when the word was written with quotes, escapes or `$'…'` anywhere.
    pub fn is_quoted(&self) -> bool {
        self.parts
            .iter()
            .any(|p| !matches!(p, WordPart::Lit { .. }))
    }
}

fn push_literal(p: &WordPart, out: &mut String) -> bool {
    match p {
        WordPart::Lit { text, .. } | WordPart::Single(text) | WordPart::AnsiC(text) => {
            out.push_str(text);
            true
        }
        WordPart::Double(inner) => inner.iter().all(|p| push_literal(p, out)),
        _ => false,
    }
}
