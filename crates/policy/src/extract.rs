//! From a syntax tree to the list of things the command line would do.
//!
//! Every program that would run becomes an [`Invocation`] — including those inside `$(…)`,
//! `<(…)`, `sh -c '…'`, `eval`, here-docs fed to a shell, `xargs`, `find -exec`, `ssh host
//! '…'` and behind wrappers (`sudo`, `env`, `timeout`, …) — and every file an output
//! redirection would write becomes a write. Words that are only data (`grep "rm -rf /"`) stay
//! arguments. What cannot be known statically is said, not guessed: a program named by a
//! variable, an `eval` of something not literal, code fed from another program's output.

use std::collections::HashMap;

use crate::shell::{self, Command, Pipeline, RedirOp, Script, SimpleCommand, Word, WordPart};

/// How deep `sh -c`, `eval` and the like may nest before the command is judged as a whole.
pub const MAX_NESTING: usize = 8;

/// One argument as the program would see it, as far as that can be known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    /// Quotes removed; variables written `$NAME`, substitutions `$(…)`.
    pub text: String,
    /// Holds a variable or substitution whose value is unknown.
    pub dynamic: bool,
    /// Holds an unquoted glob character.
    pub glob: bool,
}

impl Arg {
    pub fn literal(text: &str) -> Arg {
        Arg {
            text: text.to_string(),
            dynamic: false,
            glob: false,
        }
    }
}

/// A program the command line would run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Invocation {
    /// Its name, without path (`/usr/bin/rm` → `rm`).
    pub program: String,
    pub args: Vec<Arg>,
    /// Programs whose output this invocation runs as code (`curl … | sh`, `bash <(curl …)`,
    /// `eval "$(…)"`, `bash -c "$(…)"`).
    pub code_from: Vec<String>,
    /// Code given inline to an interpreter (`python -c`, `node -e`, a here-doc into `perl`).
    pub inline_code: Option<String>,
    /// Text fed on stdin by a here-doc or here-string.
    pub stdin_text: Option<String>,
    /// The program name is a variable or substitution that could not be resolved.
    pub dynamic_program: bool,
    /// The program name was hidden: `$'\x72m'`, a variable holding the name, `eval` of
    /// something that is not a literal.
    pub obfuscated: bool,
    /// Wrappers and shells this invocation was found through (`sudo`, `bash -c`, …).
    pub via: Vec<String>,
}

impl Invocation {
    /// `program arg …` as one line, for verdicts and logs.
    pub fn display(&self) -> String {
        let mut out = self.program.clone();
        for a in &self.args {
            out.push(' ');
            if a.text.is_empty() || a.text.contains(char::is_whitespace) {
                out.push('\'');
                out.push_str(&a.text.replace('\'', "'\\''"));
                out.push('\'');
            } else {
                out.push_str(&a.text);
            }
        }
        out
    }
}

/// Something the command line would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Run(Invocation),
    /// An output redirection writes (or truncates) this file.
    Write {
        path: String,
        append: bool,
    },
    /// A part that could not be parsed (a `sh -c` string, an `eval` text): never harmless.
    Unparsed {
        context: String,
        error: String,
    },
    /// Nesting beyond [`MAX_NESTING`].
    TooDeep {
        context: String,
    },
}

/// Parses `command` and lists its effects.
pub fn effects(command: &str) -> Result<Vec<Effect>, shell::ParseError> {
    let script = shell::parse(command)?;
    let mut x = Extractor::default();
    x.script(&script, &Input::None);
    Ok(x.out)
}

/// What a command's stdin is.
#[derive(Debug, Clone)]
enum Input {
    None,
    /// Text of a here-doc or here-string.
    Text(String),
    /// The output of these programs, and the literal text when it is knowable
    /// (`echo 'rm -rf /' | sh`).
    Pipe {
        programs: Vec<String>,
        literal: Option<String>,
    },
}

#[derive(Default)]
struct Extractor {
    out: Vec<Effect>,
    /// Variables assigned a literal earlier on the same line.
    vars: HashMap<String, String>,
    depth: usize,
    via: Vec<String>,
}

const SHELLS: &[&str] = &[
    "sh",
    "bash",
    "zsh",
    "dash",
    "ksh",
    "ash",
    "mksh",
    "yash",
    "fish",
    "busybox-sh",
];

fn is_shell(p: &str) -> bool {
    SHELLS.contains(&p)
}

fn is_interpreter(p: &str) -> bool {
    let base = p.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    matches!(
        base,
        "python"
            | "pypy"
            | "node"
            | "nodejs"
            | "perl"
            | "ruby"
            | "php"
            | "deno"
            | "bun"
            | "lua"
            | "Rscript"
            | "osascript"
    )
}

/// True when the shell splits the word's value into several words: an unquoted variable,
/// or an array expanded with a subscript (`"${a[@]}"`).
fn splits(word: &Word) -> bool {
    word.parts.iter().any(|p| match p {
        WordPart::Param { .. } => true,
        WordPart::Double(inner) => inner
            .iter()
            .any(|p| matches!(p, WordPart::Param { op: Some(op), .. } if op.starts_with('['))),
        _ => false,
    })
}

/// Brace expansion (`/{etc,usr}` → `/etc`, `/usr`; `{"r",}m` → `rm`, `m`): only braces and
/// commas written unquoted count. Words with an expansion (`$x`, `$(…)`), and words whose
/// expansion would exceed a small limit, are returned unchanged.
fn brace_expand(word: &Word) -> Vec<Word> {
    const LIMIT: usize = 64;
    // The word's text, each character with whether it was written unquoted.
    let mut text: Vec<(char, bool)> = Vec::new();
    for p in &word.parts {
        match p {
            WordPart::Lit { text: t, .. } => text.extend(t.chars().map(|c| (c, true))),
            WordPart::Single(t) | WordPart::AnsiC(t) => text.extend(t.chars().map(|c| (c, false))),
            WordPart::Double(_) => match (Word {
                parts: vec![p.clone()],
            })
            .literal()
            {
                Some(t) => text.extend(t.chars().map(|c| (c, false))),
                None => return vec![word.clone()],
            },
            _ => return vec![word.clone()],
        }
    }
    if !text.iter().any(|&(c, unquoted)| unquoted && c == ',') {
        return vec![word.clone()];
    }
    let mut done = Vec::new();
    let mut todo = vec![text];
    while let Some(t) = todo.pop() {
        match brace_split(&t) {
            Some(alternatives) if done.len() + todo.len() + alternatives.len() <= LIMIT => {
                todo.extend(alternatives.into_iter().rev())
            }
            Some(_) => return vec![word.clone()],
            None => done.push(t),
        }
    }
    if done.len() < 2 {
        return vec![word.clone()];
    }
    done.into_iter()
        .map(|t| {
            let glob = t
                .iter()
                .any(|&(c, unquoted)| unquoted && matches!(c, '*' | '?' | '['));
            let text: String = t.into_iter().map(|(c, _)| c).collect();
            Word {
                parts: vec![WordPart::Lit { text, glob }],
            }
        })
        .collect()
}

/// The first unquoted `{a,b}` group expanded one level: `x{a,b}y` → `xay`, `xby`.
fn brace_split(text: &[(char, bool)]) -> Option<Vec<Vec<(char, bool)>>> {
    for (open, _) in text
        .iter()
        .enumerate()
        .filter(|(_, (c, u))| *u && *c == '{')
    {
        let (mut depth, mut commas) = (0usize, Vec::new());
        for (i, &(c, unquoted)) in text.iter().enumerate().skip(open) {
            match c {
                _ if !unquoted => {}
                '{' => depth += 1,
                ',' if depth == 1 => commas.push(i),
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        if commas.is_empty() {
                            break;
                        }
                        let (head, tail) = (&text[..open], &text[i + 1..]);
                        let mut bounds = vec![open];
                        bounds.extend(&commas);
                        bounds.push(i);
                        return Some(
                            bounds
                                .windows(2)
                                .map(|w| [head, &text[w[0] + 1..w[1]], tail].concat())
                                .collect(),
                        );
                    }
                }
                _ => {}
            }
        }
    }
    None
}

/// A script path that names the process's own stdin.
fn is_stdin_path(p: &str) -> bool {
    matches!(p, "-" | "/dev/stdin" | "/dev/fd/0" | "/proc/self/fd/0")
}

/// The program name of a path (`/usr/bin/git` → `git`).
fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

impl Extractor {
    fn nested<F: FnOnce(&mut Self)>(&mut self, via: &str, f: F) {
        if self.depth >= MAX_NESTING {
            self.out.push(Effect::TooDeep {
                context: via.to_string(),
            });
            return;
        }
        self.depth += 1;
        self.via.push(via.to_string());
        f(self);
        self.via.pop();
        self.depth -= 1;
    }

    /// Parses `text` as shell code found through `via` and extracts it.
    fn shell_text(&mut self, text: &str, via: &str, stdin: &Input) {
        match shell::parse(text) {
            Ok(script) => self.nested(via, |x| x.script(&script, stdin)),
            Err(e) => self.out.push(Effect::Unparsed {
                context: via.to_string(),
                error: e.to_string(),
            }),
        }
    }

    fn script(&mut self, script: &Script, stdin: &Input) {
        for item in &script.items {
            self.pipeline(&item.first, stdin);
            for (_, p) in &item.rest {
                self.pipeline(p, stdin);
            }
        }
    }

    fn pipeline(&mut self, p: &Pipeline, stdin: &Input) {
        let mut input = stdin.clone();
        // Every earlier stage feeds the next one: in `curl … | tee f | sh` the code comes
        // from curl as much as from tee.
        let mut upstream = match stdin {
            Input::Pipe { programs, .. } => programs.clone(),
            _ => Vec::new(),
        };
        for cmd in &p.commands {
            self.command(cmd, &input);
            upstream.extend(producers(cmd, &self.vars));
            input = Input::Pipe {
                programs: upstream.clone(),
                literal: literal_output(cmd),
            };
        }
    }

    fn command(&mut self, cmd: &Command, stdin: &Input) {
        match cmd {
            Command::Simple(s) => self.simple(s, stdin),
            Command::Subshell(body, r) | Command::Group(body, r) => {
                let input = self.redirects(r).unwrap_or_else(|| stdin.clone());
                self.script(body, &input);
            }
            Command::If {
                branches,
                otherwise,
                redirects,
            } => {
                let input = self.redirects(redirects).unwrap_or_else(|| stdin.clone());
                for (c, b) in branches {
                    self.script(c, &input);
                    self.script(b, &input);
                }
                if let Some(o) = otherwise {
                    self.script(o, &input);
                }
            }
            Command::Loop {
                condition,
                body,
                redirects,
            } => {
                let input = self.redirects(redirects).unwrap_or_else(|| stdin.clone());
                self.script(condition, &input);
                self.script(body, &input);
            }
            Command::For {
                words,
                body,
                redirects,
                ..
            } => {
                for w in words.iter().flatten() {
                    self.substitutions(w);
                }
                let input = self.redirects(redirects).unwrap_or_else(|| stdin.clone());
                self.script(body, &input);
            }
            Command::Case {
                word,
                arms,
                redirects,
            } => {
                self.substitutions(word);
                let input = self.redirects(redirects).unwrap_or_else(|| stdin.clone());
                for (_, b) in arms {
                    self.script(b, &input);
                }
            }
            // A function's body is judged where it is defined: defining and calling it on one
            // line must not hide what it does.
            Command::Function { body, .. } => self.command(body, stdin),
            Command::Test(words) => {
                for w in words {
                    self.substitutions(w);
                }
            }
            Command::Arith(_) => {}
        }
    }

    /// Extracts what the redirections do; returns the stdin they give, if any.
    fn redirects(&mut self, redirects: &[shell::Redirect]) -> Option<Input> {
        let mut input = None;
        for r in redirects {
            self.substitutions(&r.target);
            match r.op {
                RedirOp::Out | RedirOp::Clobber | RedirOp::OutErr | RedirOp::InOut => {
                    self.out.push(Effect::Write {
                        path: self.arg(&r.target).text,
                        append: false,
                    })
                }
                RedirOp::Append | RedirOp::AppendErr => self.out.push(Effect::Write {
                    path: self.arg(&r.target).text,
                    append: true,
                }),
                RedirOp::HereDoc => {
                    if let Some(doc) = &r.body {
                        for s in &doc.substitutions {
                            self.nested("here-document substitution", |x| {
                                x.script(s, &Input::None)
                            });
                        }
                        if doc.unparsed {
                            self.out.push(Effect::Unparsed {
                                context: "here-document".into(),
                                error: "a substitution in the body does not parse".into(),
                            });
                        }
                        input = Some(Input::Text(doc.text.clone()));
                    }
                }
                RedirOp::HereString => {
                    let mut text = self.arg(&r.target).text;
                    text.push('\n');
                    input = Some(Input::Text(text));
                }
                RedirOp::In => {
                    // A process substitution as stdin: `sh < <(curl …)`.
                    let producers = process_sub_producers(&r.target, &self.vars);
                    if !producers.is_empty() {
                        input = Some(Input::Pipe {
                            programs: producers,
                            literal: None,
                        });
                    }
                }
                RedirOp::Dup => {}
            }
        }
        input
    }

    /// Runs every command and process substitution inside `word`.
    fn substitutions(&mut self, word: &Word) {
        for part in &word.parts {
            self.part_substitutions(part);
        }
    }

    fn part_substitutions(&mut self, part: &WordPart) {
        match part {
            WordPart::CommandSub(s) => self.nested("$(…)", |x| x.script(s, &Input::None)),
            WordPart::ProcessSub { script, .. } => {
                self.nested("<(…)", |x| x.script(script, &Input::None))
            }
            WordPart::Double(inner) => inner.iter().for_each(|p| self.part_substitutions(p)),
            _ => {}
        }
    }

    fn arg(&self, word: &Word) -> Arg {
        let mut arg = Arg {
            text: String::new(),
            dynamic: false,
            glob: word.has_glob(),
        };
        for p in &word.parts {
            render(p, &self.vars, &mut arg);
        }
        // A leading unquoted tilde is the home folder.
        arg.text = normalize_path(&arg.text);
        arg
    }

    fn simple(&mut self, cmd: &SimpleCommand, stdin: &Input) {
        for (_, value) in &cmd.assigns {
            self.substitutions(value);
        }
        for w in &cmd.words {
            self.substitutions(w);
        }
        let input = self
            .redirects(&cmd.redirects)
            .unwrap_or_else(|| stdin.clone());
        // `{r,}m -rf {/etc,/usr}` is `rm m -rf /etc /usr` by the time it runs.
        let words: Vec<Word> = cmd.words.iter().flat_map(brace_expand).collect();
        let Some(first) = words.first() else {
            // Assignments alone: remember literal values for later words on this line.
            for (name, value) in &cmd.assigns {
                match value.literal() {
                    Some(v) => {
                        self.vars.insert(name.clone(), v);
                    }
                    None => {
                        self.vars.remove(name);
                    }
                }
            }
            return;
        };
        // A known variable holding several words (`x="rm -rf"; $x /`, `a=(rm -rf /);
        // "${a[@]}"`) expands to several arguments, the first of which may be the program.
        let mut pieces: Vec<(Arg, Word)> = Vec::new();
        for w in &words {
            let arg = self.arg(w);
            if !arg.dynamic && arg.text.contains(char::is_whitespace) && splits(w) {
                pieces.extend(
                    arg.text
                        .split_whitespace()
                        .map(|t| (Arg::literal(&normalize_path(t)), Word::lit(t))),
                );
            } else {
                pieces.push((arg, w.clone()));
            }
        }
        let Some(((first_arg, _), rest)) = pieces.split_first() else {
            return;
        };
        let (program, dynamic, obfuscated) = self.program_name(first, first_arg);
        let (args, rest): (Vec<Arg>, Vec<Word>) = rest.iter().cloned().unzip();
        self.dispatch(
            Invocation {
                program,
                args,
                code_from: Vec::new(),
                inline_code: None,
                stdin_text: None,
                dynamic_program: dynamic,
                obfuscated,
                via: Vec::new(),
            },
            &input,
            &rest,
        );
    }

    /// The program name, from the first word as written and its value: `(name, dynamic,
    /// obfuscated)`.
    fn program_name(&self, word: &Word, arg: &Arg) -> (String, bool, bool) {
        let from_var = word.parts.iter().any(|p| match p {
            WordPart::Param { .. } => true,
            WordPart::Double(inner) => inner.iter().any(|p| matches!(p, WordPart::Param { .. })),
            _ => false,
        });
        let ansi = word.parts.iter().any(|p| matches!(p, WordPart::AnsiC(_)));
        if arg.dynamic {
            return (arg.text.clone(), true, true);
        }
        // A name assembled from a variable or from $'\x..' escapes hides what runs.
        (basename(&arg.text).to_string(), false, from_var || ansi)
    }

    /// Records `inv`, then looks through it when it runs other code.
    fn dispatch(&mut self, mut inv: Invocation, stdin: &Input, words: &[Word]) {
        inv.via = self.via.clone();
        // What the program reads on stdin, when it is known: a here-doc, a here-string, or the
        // literal output of `echo`/`printf` (`echo 'DROP DATABASE x' | psql`).
        match stdin {
            Input::Text(t) => inv.stdin_text = Some(t.clone()),
            Input::Pipe {
                literal: Some(t), ..
            } => inv.stdin_text = Some(t.clone()),
            _ => {}
        }
        let program = inv.program.clone();
        let args = inv.args.clone();
        match program.as_str() {
            p if is_shell(p) => self.shell(&mut inv, stdin, words),
            p if is_interpreter(p) => self.interpreter(&mut inv, stdin, words),
            "eval" => {
                if args.iter().any(|a| a.dynamic) {
                    inv.obfuscated = true;
                    inv.code_from = words
                        .iter()
                        .flat_map(|w| substitution_producers(w, &self.vars))
                        .collect();
                    self.out.push(Effect::Run(inv));
                } else {
                    let text = args
                        .iter()
                        .map(|a| a.text.as_str())
                        .collect::<Vec<_>>()
                        .join(" ");
                    self.out.push(Effect::Run(inv));
                    self.shell_text(&text, "eval", stdin);
                }
            }
            "source" | "." => {
                if args.first().is_some_and(|a| is_stdin_path(&a.text)) {
                    self.stdin_script(&mut inv, stdin);
                } else {
                    inv.code_from.extend(
                        words
                            .iter()
                            .take(1)
                            .flat_map(|w| process_sub_producers(w, &self.vars)),
                    );
                    self.out.push(Effect::Run(inv));
                }
            }
            "sudo" | "doas" | "env" | "nice" | "ionice" | "nohup" | "timeout" | "time"
            | "command" | "builtin" | "exec" | "stdbuf" | "busybox" | "chroot" | "setsid"
            | "unbuffer" | "caffeinate" | "flock" | "runuser" | "su" | "watch" | "xargs"
            | "parallel" | "taskset" | "chrt" | "prlimit" | "systemd-run" | "nsenter"
            | "unshare" | "firejail" | "proot" | "strace" | "ltrace" | "gdb" => {
                self.out.push(Effect::Run(inv.clone()));
                if let Some(inner) = unwrap_wrapper(&program, &args) {
                    match inner {
                        Unwrapped::Command(inner) => {
                            self.run_args(&program, inner, stdin, (&args, words))
                        }
                        Unwrapped::ShellText(text) => self.shell_text(&text, &program, stdin),
                    }
                }
            }
            // `at`/`batch` run their stdin as shell code later (`-f` names a file instead).
            "at" | "batch" => {
                if args
                    .iter()
                    .any(|a| a.text.starts_with('-') && a.text.contains(['f', 'l', 'r', 'd', 'c']))
                {
                    self.out.push(Effect::Run(inv));
                } else {
                    self.stdin_script(&mut inv, stdin);
                }
            }
            // `alias x='…'` and `trap '…' EXIT` hold shell code that runs later.
            "alias" | "trap" => {
                self.out.push(Effect::Run(inv));
                let code: Vec<String> = if program == "alias" {
                    args.iter()
                        .filter_map(|a| a.text.split_once('=').map(|(_, v)| v.to_string()))
                        .collect()
                } else {
                    args.iter()
                        .find(|a| !a.text.starts_with('-'))
                        .map(|a| a.text.clone())
                        .into_iter()
                        .collect()
                };
                for text in code {
                    self.shell_text(&text, &program, &Input::None);
                }
            }
            "awk" | "gawk" | "mawk" | "nawk" => self.awk(inv),
            "find" => {
                self.out.push(Effect::Run(inv.clone()));
                for cmd in find_exec_commands(&args) {
                    self.run_args("find -exec", cmd, &Input::None, (&args, words));
                }
            }
            "ssh" => {
                self.out.push(Effect::Run(inv.clone()));
                if let Some(text) = ssh_remote_command(&args) {
                    self.shell_text(&text, "ssh", &Input::None);
                }
            }
            "kubectl" | "oc" | "docker" | "podman" | "nerdctl" | "crictl" | "docker-compose"
            | "podman-compose" | "gcloud" => {
                self.out.push(Effect::Run(inv.clone()));
                match run_elsewhere(&program, &args) {
                    Some(Elsewhere::Command(cmd)) => {
                        self.run_args(&format!("{program} exec"), cmd, stdin, (&args, words))
                    }
                    Some(Elsewhere::ShellText(text)) => {
                        self.shell_text(&text, &format!("{program} remote command"), &Input::None)
                    }
                    None => {}
                }
            }
            _ => self.out.push(Effect::Run(inv)),
        }
    }

    /// Dispatches a command given as an argument list (`sudo rm -rf /` → `rm -rf /`).
    /// `outer` holds the wrapper's own arguments and the words they came from, so the inner
    /// command keeps its substitutions (`sudo bash -c "$(curl …)"` still runs curl's output).
    fn run_args(&mut self, via: &str, args: Vec<Arg>, stdin: &Input, outer: (&[Arg], &[Word])) {
        let Some((first, rest)) = args.split_first() else {
            return;
        };
        let (outer_args, outer_words) = outer;
        let mut cursor = outer_args
            .iter()
            .position(|a| a == first)
            .map_or(0, |i| i + 1);
        let words: Vec<Word> = rest
            .iter()
            .map(|a| {
                match outer_args[cursor.min(outer_args.len())..]
                    .iter()
                    .position(|o| o == a)
                {
                    Some(k) if outer_words.len() > cursor + k => {
                        cursor += k + 1;
                        outer_words[cursor - 1].clone()
                    }
                    _ => Word::lit(&a.text),
                }
            })
            .collect();
        let inv = Invocation {
            program: basename(&first.text).to_string(),
            args: rest.to_vec(),
            dynamic_program: first.dynamic,
            obfuscated: first.dynamic,
            ..Default::default()
        };
        self.nested(via, |x| x.dispatch(inv, stdin, &words));
    }

    fn shell(&mut self, inv: &mut Invocation, stdin: &Input, words: &[Word]) {
        let program = inv.program.clone();
        let mut i = 0;
        let mut command_mode = false;
        // `sh -s -- args`: the script is stdin, the words after it are its parameters.
        let mut stdin_mode = false;
        let mut script: Option<(Arg, Option<&Word>)> = None;
        let mut file: Option<(Arg, Option<&Word>)> = None;
        while i < inv.args.len() {
            let a = &inv.args[i];
            if a.text == "--" {
                i += 1;
                break;
            }
            if a.text.starts_with("--") {
                if matches!(a.text.as_str(), "--rcfile" | "--init-file") {
                    i += 1;
                }
                i += 1;
                continue;
            }
            if (a.text.starts_with('-') || a.text.starts_with('+')) && a.text.len() > 1 {
                if a.text.contains('c') && a.text.starts_with('-') {
                    command_mode = true;
                }
                if a.text.contains('s') && a.text.starts_with('-') {
                    stdin_mode = true;
                }
                if a.text.ends_with('o') || a.text == "-O" {
                    i += 1;
                }
                i += 1;
                continue;
            }
            break;
        }
        if i < inv.args.len() {
            let chosen = (inv.args[i].clone(), words.get(i));
            if command_mode {
                script = Some(chosen);
            } else if !stdin_mode && !is_stdin_path(&chosen.0.text) {
                file = Some(chosen);
            }
        }
        if let Some((text, word)) = script {
            if text.dynamic {
                // `bash -c "$(curl …)"`: the substitution's output is the code.
                inv.code_from.extend(
                    word.map(|w| substitution_producers(w, &self.vars))
                        .unwrap_or_default(),
                );
                inv.obfuscated |= inv.code_from.is_empty();
                self.out.push(Effect::Run(inv.clone()));
            } else {
                self.out.push(Effect::Run(inv.clone()));
                self.shell_text(&text.text, &format!("{program} -c"), &Input::None);
            }
            return;
        }
        if let Some((_, word)) = file {
            inv.code_from.extend(
                word.map(|w| process_sub_producers(w, &self.vars))
                    .unwrap_or_default(),
            );
            self.out.push(Effect::Run(inv.clone()));
            return;
        }
        // No -c and no file (or `-s`, `-`, `/dev/stdin`): the shell runs its stdin.
        self.stdin_script(inv, stdin);
    }

    /// Records `inv`, which runs its stdin as shell code: a here-doc or a literal `echo` is
    /// judged as shell; any other producer is named in `code_from`, its output unknown.
    fn stdin_script(&mut self, inv: &mut Invocation, stdin: &Input) {
        let context = format!("{} stdin", inv.program);
        match stdin {
            Input::Text(text) => {
                self.out.push(Effect::Run(inv.clone()));
                self.shell_text(text, &context, &Input::None);
            }
            Input::Pipe {
                literal: Some(text),
                ..
            } => {
                self.out.push(Effect::Run(inv.clone()));
                self.shell_text(text, &context, &Input::None);
            }
            Input::Pipe {
                programs,
                literal: None,
            } => {
                inv.code_from.extend(programs.iter().cloned());
                self.out.push(Effect::Run(inv.clone()));
            }
            Input::None => self.out.push(Effect::Run(inv.clone())),
        }
    }

    /// awk's program text is its first operand (or `-e`/`--source`); `system("…")`,
    /// `"…" | getline` and `print "…" | "sh"` run shell commands.
    fn awk(&mut self, mut inv: Invocation) {
        use std::sync::OnceLock;
        static PIPES: OnceLock<Option<regex::Regex>> = OnceLock::new();
        let mut code: Option<String> = None;
        let mut i = 0;
        while i < inv.args.len() {
            let t = inv.args[i].text.as_str();
            match t {
                "--" | "-e" | "--source" => {
                    code = inv.args.get(i + 1).map(|a| a.text.clone());
                    break;
                }
                "-f" | "-E" | "--file" | "--exec" => break,
                "-F" | "-v" | "-i" | "-l" | "--field-separator" | "--assign" | "--include"
                | "--load" => i += 2,
                _ if t.starts_with('-') && t.len() > 1 => i += 1,
                _ => {
                    code = Some(t.to_string());
                    break;
                }
            }
        }
        inv.inline_code = code.clone();
        self.out.push(Effect::Run(inv.clone()));
        let Some(code) = code else { return };
        let mut commands = embedded_shell(&code);
        let pipes = PIPES.get_or_init(|| {
            regex::Regex::new(
                r#""((?:[^"\\]|\\.)*)"\s*\|\s*getline|print[^|;}]*?"((?:[^"\\]|\\.)*)"[^|;}]*\|\s*"(?:/bin/|/usr/bin/)?(?:sh|bash|dash|zsh)""#,
            )
            .ok()
        });
        if let Some(re) = pipes {
            let found = re
                .captures_iter(&code)
                .take(64)
                .filter_map(|c| c.get(1).or_else(|| c.get(2)));
            commands.extend(found.map(|m| m.as_str().to_string()));
        }
        for text in commands {
            self.shell_text(&text, &format!("{} code", inv.program), &Input::None);
        }
    }

    fn interpreter(&mut self, inv: &mut Invocation, stdin: &Input, words: &[Word]) {
        let flags: &[&str] = match inv
            .program
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '.')
        {
            "python" | "pypy" => &["-c"],
            "node" | "nodejs" | "bun" => &["-e", "--eval", "-p", "--print"],
            "deno" => &["eval"],
            "php" => &["-r"],
            "osascript" => &["-e"],
            _ => &["-e", "-E"],
        };
        let mut code = None;
        let mut has_file = false;
        let mut i = 0;
        while i < inv.args.len() {
            let a = &inv.args[i].text;
            if flags.contains(&a.as_str()) {
                code = inv.args.get(i + 1).map(|a| a.text.clone());
                if let Some(w) = words.get(i + 1) {
                    inv.code_from.extend(substitution_producers(w, &self.vars));
                }
                break;
            }
            // perl -we '…', perl -lne '…', ruby -ne '…': switches without values, then `e`
            // (not `-MFile::Path=remove_tree` or `ruby -rtime`, whose value ends in e).
            let cluster = a.strip_prefix('-').and_then(|c| c.strip_suffix('e'));
            if cluster
                .is_some_and(|c| !c.is_empty() && c.chars().all(|c| "aclnpswtTWXdvy0".contains(c)))
                && !inv.program.starts_with("python")
            {
                code = inv.args.get(i + 1).map(|a| a.text.clone());
                break;
            }
            if is_stdin_path(a) {
                break;
            }
            if !a.starts_with('-') {
                // `python3 <(curl …)`: the script is another program's output.
                if let Some(w) = words.get(i) {
                    inv.code_from.extend(process_sub_producers(w, &self.vars));
                }
                has_file = true;
                break;
            }
            i += 1;
        }
        if code.is_none() && !has_file {
            match stdin {
                Input::Text(t) => code = Some(t.clone()),
                Input::Pipe { programs, literal } => {
                    if literal.is_none() {
                        inv.code_from.extend(programs.iter().cloned());
                    }
                    code = literal.clone();
                }
                Input::None => {}
            }
        }
        if let Some(code) = &code {
            inv.inline_code = Some(code.clone());
        }
        self.out.push(Effect::Run(inv.clone()));
        // Shell commands embedded in the code (`system('…')`, backticks, `execSync('…')`) run
        // too; judge them as shell.
        if let Some(code) = code {
            for text in embedded_shell(&code) {
                self.shell_text(&text, &format!("{} code", inv.program), &Input::None);
            }
        }
    }
}

fn render(p: &WordPart, vars: &HashMap<String, String>, arg: &mut Arg) {
    match p {
        WordPart::Lit { text, .. } | WordPart::Single(text) | WordPart::AnsiC(text) => {
            arg.text.push_str(text)
        }
        WordPart::Double(inner) => inner.iter().for_each(|p| render(p, vars, arg)),
        WordPart::Param { name, .. } => match vars.get(name) {
            Some(v) => arg.text.push_str(v),
            None => {
                arg.text.push('$');
                arg.text.push_str(name);
                // $HOME and $TMPDIR are known places, not unknown values.
                if !matches!(name.as_str(), "HOME" | "TMPDIR" | "PWD" | "USER") {
                    arg.dynamic = true;
                }
            }
        },
        WordPart::CommandSub(_) => {
            arg.text.push_str("$(…)");
            arg.dynamic = true;
        }
        WordPart::ProcessSub { input, .. } => {
            arg.text.push_str(if *input { "<(…)" } else { ">(…)" });
            arg.dynamic = true;
        }
        WordPart::Arith(_) => {
            arg.text.push_str("$((…))");
            arg.dynamic = true;
        }
    }
}

/// Lexical clean-up of a path: `//`, `.` and `..` segments; URLs and non-paths unchanged.
pub fn normalize_path(text: &str) -> String {
    if !text.contains('/') || text.contains("://") || text.len() > 4096 {
        return text.to_string();
    }
    let absolute = text.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in text.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if out
                    .last()
                    .is_some_and(|l| *l != ".." && !l.starts_with('$') && *l != "~")
                {
                    out.pop();
                } else if !absolute || !out.is_empty() {
                    // `/tmp/$X/../..` climbs out of whatever `$X` is: keep the `..`.
                    out.push("..");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    let trailing = text.ends_with('/') && !joined.is_empty();
    let mut s = if absolute {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".into()
    } else {
        joined
    };
    if trailing {
        s.push('/');
    }
    s
}

/// The programs of a pipeline stage, for `code_from` (the producers of a pipe).
fn producers(cmd: &Command, vars: &HashMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    collect_programs(cmd, vars, &mut out);
    out
}

fn collect_programs(cmd: &Command, vars: &HashMap<String, String>, out: &mut Vec<String>) {
    match cmd {
        Command::Simple(s) => {
            if let Some(first) = s.words.first() {
                let mut arg = Arg::literal("");
                for p in &first.parts {
                    render(p, vars, &mut arg);
                }
                let name = basename(&arg.text).to_string();
                // Look through wrappers: `sudo curl …` produces what curl produces.
                let mut words: Vec<String> = s.words.iter().skip(1).map(shell::flatten).collect();
                let mut program = name;
                let mut guard = 0;
                while guard < 8 {
                    guard += 1;
                    let args: Vec<Arg> = words.iter().map(|w| Arg::literal(w)).collect();
                    match unwrap_wrapper(&program, &args) {
                        Some(Unwrapped::Command(inner)) if !inner.is_empty() => {
                            program = basename(&inner[0].text).to_string();
                            words = inner[1..].iter().map(|a| a.text.clone()).collect();
                        }
                        _ => break,
                    }
                }
                out.push(program);
            }
        }
        Command::Subshell(b, _) | Command::Group(b, _) => {
            for item in &b.items {
                for c in &item.first.commands {
                    collect_programs(c, vars, out);
                }
            }
        }
        _ => out.push("(compound command)".into()),
    }
}

/// The text a stage prints when it is `echo`/`printf` of literals: `echo 'rm -rf /' | sh`.
fn literal_output(cmd: &Command) -> Option<String> {
    let Command::Simple(s) = cmd else { return None };
    let words: Option<Vec<String>> = s.words.iter().map(Word::literal).collect();
    let words = words?;
    let (first, rest) = words.split_first()?;
    match basename(first) {
        // Escapes (`echo -e '\x72m'`, `printf '\162m'`) and `%` directives change the text;
        // rather than decode them, the output is unknown.
        "echo" => {
            let rest: Vec<&String> = rest
                .iter()
                .skip_while(|w| matches!(w.as_str(), "-n" | "-e" | "-E" | "-ne" | "-en"))
                .collect();
            let text = rest
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            (!text.contains('\\')).then_some(text)
        }
        "printf" => rest
            .first()
            .map(|f| f.replace("\\n", "\n"))
            .filter(|f| !f.contains('%') && !f.contains('\\')),
        _ => None,
    }
}

/// Programs inside the process substitutions of a word (`<(curl …)`).
fn process_sub_producers(word: &Word, vars: &HashMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for p in &word.parts {
        if let WordPart::ProcessSub {
            script,
            input: true,
        } = p
        {
            for item in &script.items {
                if let Some(last) = item.first.commands.last() {
                    collect_programs(last, vars, &mut out);
                }
            }
        }
    }
    out
}

/// Programs whose output a word's command substitutions produce (`"$(curl …)"`).
fn substitution_producers(word: &Word, vars: &HashMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(p: &WordPart, vars: &HashMap<String, String>, out: &mut Vec<String>) {
        match p {
            WordPart::CommandSub(script) => {
                for item in &script.items {
                    for c in &item.first.commands {
                        collect_programs(c, vars, out);
                    }
                }
            }
            WordPart::Double(inner) => inner.iter().for_each(|p| walk(p, vars, out)),
            WordPart::Param { .. } => out.push("$variable".into()),
            _ => {}
        }
    }
    for p in &word.parts {
        walk(p, vars, &mut out);
    }
    out
}

enum Unwrapped {
    Command(Vec<Arg>),
    ShellText(String),
}

/// The command a wrapper runs, with the wrapper's own options skipped.
fn unwrap_wrapper(program: &str, args: &[Arg]) -> Option<Unwrapped> {
    // Options that take a value, per wrapper (short letters and long names).
    let (with_value, stop_at_first_positional): (&[&str], bool) = match program {
        "sudo" => (
            &[
                "-u",
                "-g",
                "-C",
                "-D",
                "-h",
                "-p",
                "-r",
                "-t",
                "-U",
                "-T",
                "-R",
                "--user",
                "--group",
                "--close-from",
                "--chdir",
                "--host",
                "--prompt",
                "--role",
                "--type",
                "--other-user",
                "--command-timeout",
                "--chroot",
            ],
            true,
        ),
        "doas" => (&["-u", "-C"], true),
        "env" => (
            &[
                "-u",
                "--unset",
                "-C",
                "--chdir",
                "-S",
                "--split-string",
                "-P",
            ],
            true,
        ),
        "nice" => (&["-n", "--adjustment"], true),
        "ionice" => (&["-c", "--class", "-n", "--classdata"], true),
        "timeout" => (&["-s", "--signal", "-k", "--kill-after"], true),
        "time" => (&["-f", "--format", "-o", "--output"], true),
        "stdbuf" => (&["-i", "-o", "-e", "--input", "--output", "--error"], true),
        "exec" => (&["-a"], true),
        "chroot" => (&["--userspec", "--groups"], true),
        "setsid" | "nohup" | "builtin" | "busybox" | "caffeinate" | "unbuffer" | "command" => {
            (&[], true)
        }
        "flock" => (&["-w", "--timeout", "-E", "--conflict-exit-code"], true),
        "runuser" | "su" => (
            &["-u", "--user", "-g", "--group", "-G", "-s", "--shell", "-w"],
            true,
        ),
        "watch" => (&["-n", "--interval", "-d", "-q"], true),
        "xargs" => (
            &[
                "-I",
                "-L",
                "-l",
                "-n",
                "-P",
                "-s",
                "-d",
                "-E",
                "-e",
                "-a",
                "--arg-file",
                "--max-args",
                "--max-procs",
                "--delimiter",
                "--max-lines",
                "--max-chars",
                "--replace",
                "--eof",
                "--process-slot-var",
            ],
            true,
        ),
        "parallel" => (
            &["-j", "--jobs", "-S", "--sshlogin", "--joblog", "-I"],
            true,
        ),
        "taskset" => (&[], true),
        "chrt" => (&[], true),
        "prlimit" => (&["-p", "--pid"], true),
        "systemd-run" => (
            &[
                "-u",
                "--unit",
                "-p",
                "--property",
                "--description",
                "-E",
                "--setenv",
                "--uid",
                "--gid",
                "-M",
                "--machine",
                "--slice",
                "--working-directory",
                "--on-calendar",
                "--on-active",
                "--timer-property",
                "--path-property",
                "--socket-property",
                "--service-type",
            ],
            true,
        ),
        "nsenter" => (
            &[
                "-t", "--target", "-S", "--setuid", "-G", "--setgid", "--wd", "-w", "--root", "-r",
            ],
            true,
        ),
        "unshare" => (
            &[
                "--map-user",
                "--map-group",
                "--propagation",
                "--setgroups",
                "-S",
                "--setuid",
                "-G",
                "--setgid",
                "-R",
                "--root",
                "-w",
                "--wd",
            ],
            true,
        ),
        "firejail" | "proot" => (&[], true),
        "strace" | "ltrace" => (
            &[
                "-e", "-o", "-p", "-s", "-u", "-E", "-P", "-I", "-b", "-a", "-X",
            ],
            true,
        ),
        "gdb" => (&["-ex", "-x", "-p", "--pid", "-batch"], true),
        _ => return None,
    };
    let _ = stop_at_first_positional;
    let mut i = 0;
    let mut split_string: Option<String> = None;
    while i < args.len() {
        let a = &args[i].text;
        if a == "--" {
            i += 1;
            break;
        }
        // `command -v git`, `command -V`: a lookup, nothing runs.
        if program == "command" && matches!(a.as_str(), "-v" | "-V") {
            return None;
        }
        if program == "ionice" && matches!(a.as_str(), "-p" | "-P" | "-u") {
            return None;
        }
        if program == "env" && !a.starts_with('-') && a.contains('=') {
            i += 1;
            continue;
        }
        if program == "env" && (a == "-S" || a == "--split-string") {
            split_string = args.get(i + 1).map(|a| a.text.clone());
            break;
        }
        if program == "env" && a.starts_with("--split-string=") {
            split_string = a.split_once('=').map(|(_, v)| v.to_string());
            break;
        }
        if program == "env" && a.starts_with("-S") && a.len() > 2 {
            split_string = Some(a[2..].to_string());
            break;
        }
        if a.starts_with('-') && a.len() > 1 {
            let key = a.split_once('=').map_or(a.as_str(), |(k, _)| k);
            if with_value.contains(&key) && !a.contains('=') {
                i += 2;
            } else if program == "nice" && a[1..].chars().all(|c| c.is_ascii_digit()) {
                i += 1;
            } else if program == "sudo" && matches!(a.as_str(), "-s" | "-i") && i + 1 >= args.len()
            {
                return Some(Unwrapped::Command(vec![Arg::literal("sh")]));
            } else {
                // Attached short values (`-uroot`, `-n5`) ride along with their flag.
                i += 1;
            }
            continue;
        }
        break;
    }
    if let Some(text) = split_string {
        let rest: Vec<String> = args.iter().skip(i + 2).map(|a| a.text.clone()).collect();
        let mut text = text;
        for r in rest {
            text.push(' ');
            text.push_str(&r);
        }
        return Some(Unwrapped::ShellText(text));
    }
    let mut rest: Vec<Arg> = args[i.min(args.len())..].to_vec();
    match program {
        // timeout DURATION cmd; flock FILE cmd (or -c 'cmd'); chroot ROOT cmd; taskset MASK cmd
        "timeout" | "chroot" | "taskset" | "flock" => {
            if program == "flock"
                && let Some(pos) = rest
                    .iter()
                    .position(|a| a.text == "-c" || a.text == "--command")
            {
                return rest
                    .get(pos + 1)
                    .map(|a| Unwrapped::ShellText(a.text.clone()));
            }
            if rest.is_empty() {
                return None;
            }
            rest.remove(0);
            if program == "chroot" && rest.is_empty() {
                return Some(Unwrapped::Command(vec![Arg::literal("sh")]));
            }
        }
        "chrt" => {
            // chrt [opts] PRIORITY cmd
            if rest.is_empty() {
                return None;
            }
            rest.remove(0);
        }
        "prlimit" => {
            rest.retain(|a| !a.text.starts_with("--"));
        }
        "su" | "runuser" => {
            // su [user] -c 'cmd'
            if let Some(pos) = args
                .iter()
                .position(|a| a.text == "-c" || a.text == "--command")
            {
                return args
                    .get(pos + 1)
                    .map(|a| Unwrapped::ShellText(a.text.clone()));
            }
            return None;
        }
        "watch" => {
            if args.iter().any(|a| a.text == "-x" || a.text == "--exec") {
                return Some(Unwrapped::Command(rest));
            }
            let text = rest
                .iter()
                .map(|a| a.text.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            return (!text.is_empty()).then_some(Unwrapped::ShellText(text));
        }
        "xargs" | "parallel" => {
            if rest.is_empty() {
                rest.push(Arg::literal("echo"));
            }
            // The items read from stdin become arguments nobody can see.
            rest.push(Arg {
                text: "$XARGS_INPUT".into(),
                dynamic: true,
                glob: false,
            });
        }
        "systemd-run" | "nsenter" | "unshare" | "firejail" | "proot" | "strace" | "ltrace"
        | "gdb" => {}
        _ => {}
    }
    (!rest.is_empty()).then_some(Unwrapped::Command(rest))
}

/// The commands of `find … -exec cmd … ;` (and `-execdir`, `-ok`, `-okdir`).
fn find_exec_commands(args: &[Arg]) -> Vec<Vec<Arg>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if matches!(
            args[i].text.as_str(),
            "-exec" | "-execdir" | "-ok" | "-okdir"
        ) {
            let mut cmd = Vec::new();
            i += 1;
            while i < args.len() && args[i].text != ";" && args[i].text != "+" {
                let a = &args[i];
                cmd.push(if a.text.contains("{}") {
                    Arg {
                        text: a.text.replace("{}", "$FOUND"),
                        dynamic: true,
                        glob: false,
                    }
                } else {
                    a.clone()
                });
                i += 1;
            }
            if !cmd.is_empty() {
                out.push(cmd);
            }
        }
        i += 1;
    }
    out
}

/// The remote command of `ssh [options] host command…`.
fn ssh_remote_command(args: &[Arg]) -> Option<String> {
    const WITH_VALUE: &str = "BbcDEeFIiJLlmOoPpQRSWw";
    let mut i = 0;
    while i < args.len() {
        let a = &args[i].text;
        if a.starts_with('-') && a.len() > 1 {
            let last = a.chars().last().unwrap_or('-');
            i += if a.len() == 2 && WITH_VALUE.contains(last) {
                2
            } else {
                1
            };
            continue;
        }
        break;
    }
    let rest = args.get(i + 1..)?;
    (!rest.is_empty()).then(|| {
        rest.iter()
            .map(|a| a.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    })
}

/// A command that a container or cloud tool runs somewhere else.
enum Elsewhere {
    Command(Vec<Arg>),
    ShellText(String),
}

/// The command of `kubectl exec … -- cmd`, `kubectl run|debug … -- cmd`, `docker exec [opts]
/// ctr cmd`, `docker run [opts] image cmd`, `docker compose exec|run svc cmd` and `gcloud
/// compute ssh … --command 'cmd'`. The subcommand must be the first word that is not an
/// option, so `docker logs exec` is not an exec.
fn run_elsewhere(program: &str, args: &[Arg]) -> Option<Elsewhere> {
    // Global options that take a value, before the subcommand.
    const GLOBAL_VALUES: &[&str] = &[
        "-n",
        "--namespace",
        "--context",
        "--kubeconfig",
        "--cluster",
        "--user",
        "-s",
        "--server",
        "-H",
        "--host",
        "-c",
        "--config",
        "-l",
        "--log-level",
        "--project",
        "--zone",
        "--region",
        "--account",
        "--configuration",
        "-f",
        "--file",
        "-p",
        "--project-name",
        "--env-file",
        "--profile",
        "--ansi",
        "--format",
    ];
    let positional_at = |from: usize| -> Vec<usize> {
        let mut out = Vec::new();
        let mut i = from;
        while i < args.len() {
            let t = args[i].text.as_str();
            if t == "--" {
                break;
            }
            if t.starts_with('-') && t.len() > 1 {
                i += if GLOBAL_VALUES.contains(&t) && !t.contains('=') {
                    2
                } else {
                    1
                };
                continue;
            }
            out.push(i);
            i += 1;
        }
        out
    };
    let pos = positional_at(0);
    let word = |n: usize| pos.get(n).map(|&i| args[i].text.as_str());
    match program {
        "kubectl" | "oc" => {
            if !matches!(word(0), Some("exec" | "run" | "debug" | "attach")) {
                return None;
            }
            let dash = args.iter().position(|a| a.text == "--")?;
            let rest = args[dash + 1..].to_vec();
            (!rest.is_empty()).then_some(Elsewhere::Command(rest))
        }
        "gcloud" => {
            if !(word(0) == Some("compute") && word(1) == Some("ssh")) {
                return None;
            }
            let text = args.iter().enumerate().find_map(|(i, a)| {
                a.text
                    .strip_prefix("--command=")
                    .map(str::to_string)
                    .or_else(|| {
                        (a.text == "--command")
                            .then(|| args.get(i + 1).map(|v| v.text.clone()))
                            .flatten()
                    })
            })?;
            Some(Elsewhere::ShellText(text))
        }
        _ => {
            // docker / podman / nerdctl / crictl, and `docker compose` / docker-compose.
            let (sub, at) = if program.ends_with("-compose") {
                (word(0)?, *pos.first()?)
            } else if word(0) == Some("compose") || word(0) == Some("container") {
                (word(1)?, *pos.get(1)?)
            } else {
                (word(0)?, *pos.first()?)
            };
            if !matches!(sub, "exec" | "run") {
                return None;
            }
            // Options of exec/run that take a value; `--opt=value` needs no entry.
            const VALUES: &[&str] = &[
                "-e",
                "--env",
                "--env-file",
                "-u",
                "--user",
                "-w",
                "--workdir",
                "--detach-keys",
                "-v",
                "--volume",
                "-p",
                "--publish",
                "--name",
                "--network",
                "--net",
                "--entrypoint",
                "--mount",
                "-l",
                "--label",
                "-m",
                "--memory",
                "--cpus",
                "--restart",
                "--pull",
                "--platform",
                "-h",
                "--hostname",
                "--device",
                "--add-host",
                "--dns",
                "--log-driver",
                "--log-opt",
                "--cap-add",
                "--cap-drop",
                "--security-opt",
                "--tmpfs",
                "--ulimit",
                "--gpus",
                "--shm-size",
                "--ipc",
                "--pid",
                "--uts",
                "--userns",
                "--cgroupns",
                "--index",
                "--stop-signal",
                "--stop-timeout",
                "--health-cmd",
                "--cidfile",
                "--runtime",
                "--volumes-from",
                "--link",
                "--expose",
                "--label-file",
                "-a",
                "--attach",
            ];
            let mut i = at + 1;
            while i < args.len() {
                let t = args[i].text.as_str();
                if t == "--" {
                    i += 1;
                    break;
                }
                if t.starts_with('-') && t.len() > 1 {
                    i += if VALUES.contains(&t) { 2 } else { 1 };
                    continue;
                }
                break;
            }
            // args[i] is the container, image or service; the command follows it.
            let rest = args.get(i + 1..)?;
            (!rest.is_empty()).then(|| Elsewhere::Command(rest.to_vec()))
        }
    }
}

/// Shell command strings inside interpreter code: `system('…')`, `system "…"`, `os.system("…")`,
/// `subprocess.run("…", shell=True)`, `execSync('…')`, `exec('…')`, backticks, `%x(…)`. An
/// argument list (`subprocess.run(["rm", "-rf", "/"])`, `spawn('rm', ['-rf', '/'])`,
/// `system("rm", "-rf", "/")`) is one command whose words are the strings.
fn embedded_shell(code: &str) -> Vec<String> {
    use std::sync::OnceLock;
    static CALLS: OnceLock<Option<regex::Regex>> = OnceLock::new();
    static STRINGS: OnceLock<Option<regex::Regex>> = OnceLock::new();
    static TICKS: OnceLock<Option<regex::Regex>> = OnceLock::new();
    let calls = CALLS.get_or_init(|| {
        regex::Regex::new(
            r#"(?:\bsystem|\bos\.system|\bos\.popen|\bsubprocess\.(?:run|call|check_call|check_output|Popen)|\bexecSync|\bexecFileSync|\bexecFile|\bspawnSync|\bspawn|\bexec|\bpopen|\bshell_exec|\bpassthru|\bproc_open)(?:\s*\(|\s+)\s*((?:\[?\s*(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')\s*\]?\s*,?\s*)+)"#,
        )
        .ok()
    });
    let strings = STRINGS
        .get_or_init(|| regex::Regex::new(r#""((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'"#).ok());
    let ticks = TICKS.get_or_init(|| regex::Regex::new(r"`([^`]*)`|%x\(([^)]*)\)").ok());
    let mut out = Vec::new();
    if let (Some(re), Some(strings)) = (calls, strings) {
        for c in re.captures_iter(code).take(64) {
            let Some(list) = c.get(1) else { continue };
            let words: Vec<String> = strings
                .captures_iter(list.as_str())
                .filter_map(|s| s.get(1).or_else(|| s.get(2)))
                .map(|m| m.as_str().replace("\\'", "'").replace("\\\"", "\""))
                .collect();
            match words.as_slice() {
                [one] => out.push(one.clone()),
                // Each string is one word: quote it so the shell parser keeps it whole.
                many => out.push(
                    many.iter()
                        .map(|w| format!("'{}'", w.replace('\'', "'\\''")))
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
            }
        }
    }
    if let Some(re) = ticks {
        for c in re.captures_iter(code).take(64) {
            if let Some(m) = c.get(1).or_else(|| c.get(2)) {
                out.push(m.as_str().to_string());
            }
        }
    }
    out
}
