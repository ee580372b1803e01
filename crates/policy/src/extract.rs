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
    Write { path: String, append: bool },
    /// A part that could not be parsed (a `sh -c` string, an `eval` text): never harmless.
    Unparsed { context: String, error: String },
    /// Nesting beyond [`MAX_NESTING`].
    TooDeep { context: String },
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
    "sh", "bash", "zsh", "dash", "ksh", "ash", "mksh", "yash", "fish", "busybox-sh",
];

fn is_shell(p: &str) -> bool {
    SHELLS.contains(&p)
}

fn is_interpreter(p: &str) -> bool {
    let base = p.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    matches!(
        base,
        "python" | "pypy" | "node" | "nodejs" | "perl" | "ruby" | "php" | "deno" | "bun" | "lua" | "Rscript" | "osascript"
    )
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
        for cmd in &p.commands {
            self.command(cmd, &input);
            input = Input::Pipe {
                programs: producers(cmd, &self.vars),
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
                            self.nested("here-document substitution", |x| x.script(s, &Input::None));
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
            WordPart::ProcessSub { script, .. } => self.nested("<(…)", |x| x.script(script, &Input::None)),
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
        let input = self.redirects(&cmd.redirects).unwrap_or_else(|| stdin.clone());
        let Some((first, rest)) = cmd.words.split_first() else {
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
        let (program, dynamic, obfuscated) = self.program_name(first);
        let args: Vec<Arg> = rest.iter().map(|w| self.arg(w)).collect();
        let code_from = rest
            .iter()
            .flat_map(|w| process_sub_producers(w, &self.vars))
            .collect::<Vec<_>>();
        self.dispatch(Invocation {
            program,
            args,
            code_from,
            inline_code: None,
            stdin_text: None,
            dynamic_program: dynamic,
            obfuscated,
            via: Vec::new(),
        }, &input, rest);
    }

    /// The program name of the first word: `(name, dynamic, obfuscated)`.
    fn program_name(&self, word: &Word) -> (String, bool, bool) {
        let arg = self.arg(word);
        let from_var = word.parts.iter().any(|p| matches!(p, WordPart::Param { .. }));
        let ansi = word.parts.iter().any(|p| matches!(p, WordPart::AnsiC(_)));
        if arg.dynamic {
            return (arg.text, true, true);
        }
        // A name assembled from a variable or from $'\x..' escapes hides what runs.
        (basename(&arg.text).to_string(), false, from_var || ansi)
    }

    /// Records `inv`, then looks through it when it runs other code.
    fn dispatch(&mut self, mut inv: Invocation, stdin: &Input, words: &[Word]) {
        inv.via = self.via.clone();
        if let Input::Text(t) = stdin {
            inv.stdin_text = Some(t.clone());
        }
        let program = inv.program.clone();
        let args = inv.args.clone();
        match program.as_str() {
            p if is_shell(p) => self.shell(&mut inv, stdin, words),
            p if is_interpreter(p) => self.interpreter(&mut inv, stdin, words),
            "eval" => {
                if args.iter().any(|a| a.dynamic) {
                    inv.obfuscated = true;
                    inv.code_from = words.iter().flat_map(|w| substitution_producers(w, &self.vars)).collect();
                    self.out.push(Effect::Run(inv));
                } else {
                    let text = args.iter().map(|a| a.text.as_str()).collect::<Vec<_>>().join(" ");
                    self.out.push(Effect::Run(inv));
                    self.shell_text(&text, "eval", stdin);
                }
            }
            "source" | "." => {
                inv.code_from.extend(words.iter().take(1).flat_map(|w| process_sub_producers(w, &self.vars)));
                self.out.push(Effect::Run(inv));
            }
            "sudo" | "doas" | "env" | "nice" | "ionice" | "nohup" | "timeout" | "time" | "command" | "builtin"
            | "exec" | "stdbuf" | "busybox" | "chroot" | "setsid" | "unbuffer" | "caffeinate" | "flock"
            | "runuser" | "su" | "watch" | "xargs" | "parallel" | "taskset" | "chrt" | "prlimit" | "systemd-run"
            | "nsenter" | "unshare" | "firejail" | "proot" | "strace" | "ltrace" | "gdb" => {
                self.out.push(Effect::Run(inv.clone()));
                if let Some(inner) = unwrap_wrapper(&program, &args) {
                    match inner {
                        Unwrapped::Command(args) => self.run_args(&program, args, stdin),
                        Unwrapped::ShellText(text) => self.shell_text(&text, &program, stdin),
                    }
                }
            }
            "find" => {
                self.out.push(Effect::Run(inv.clone()));
                for cmd in find_exec_commands(&args) {
                    self.run_args("find -exec", cmd, &Input::None);
                }
            }
            "ssh" => {
                self.out.push(Effect::Run(inv.clone()));
                if let Some(text) = ssh_remote_command(&args) {
                    self.shell_text(&text, "ssh", &Input::None);
                }
            }
            "kubectl" | "oc" | "docker" | "podman" | "nerdctl" | "crictl" => {
                self.out.push(Effect::Run(inv.clone()));
                if let Some(cmd) = exec_in_container(&program, &args) {
                    self.run_args(&format!("{program} exec"), cmd, stdin);
                }
            }
            _ => self.out.push(Effect::Run(inv)),
        }
    }

    /// Dispatches a command given as an argument list (`sudo rm -rf /` → `rm -rf /`).
    fn run_args(&mut self, via: &str, args: Vec<Arg>, stdin: &Input) {
        let Some((first, rest)) = args.split_first() else { return };
        let words: Vec<Word> = rest.iter().map(|a| Word::lit(&a.text)).collect();
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
            } else {
                file = Some(chosen);
            }
        }
        if let Some((text, word)) = script {
            if text.dynamic {
                // `bash -c "$(curl …)"`: the substitution's output is the code.
                inv.code_from.extend(word.map(|w| substitution_producers(w, &self.vars)).unwrap_or_default());
                inv.obfuscated |= inv.code_from.is_empty();
                self.out.push(Effect::Run(inv.clone()));
            } else {
                self.out.push(Effect::Run(inv.clone()));
                self.shell_text(&text.text, &format!("{program} -c"), &Input::None);
            }
            return;
        }
        if let Some((path, word)) = file {
            inv.code_from.extend(word.map(|w| process_sub_producers(w, &self.vars)).unwrap_or_default());
            self.out.push(Effect::Run(inv.clone()));
            return;
        }
        // No -c and no file: the shell runs its stdin.
        match stdin {
            Input::Text(text) => {
                self.out.push(Effect::Run(inv.clone()));
                self.shell_text(text, &format!("{program} stdin"), &Input::None);
            }
            Input::Pipe { programs, literal } => {
                inv.code_from.extend(programs.iter().cloned());
                self.out.push(Effect::Run(inv.clone()));
                if let Some(text) = literal {
                    self.shell_text(text, &format!("{program} stdin"), &Input::None);
                }
            }
            Input::None => self.out.push(Effect::Run(inv.clone())),
        }
    }

    fn interpreter(&mut self, inv: &mut Invocation, stdin: &Input, words: &[Word]) {
        let flags: &[&str] = match inv.program.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.') {
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
            // perl -we '…', ruby -rfileutils -e '…'
            if a.starts_with('-') && !a.starts_with("--") && a.ends_with('e') && a.len() > 2 && !matches!(inv.program.as_str(), p if p.starts_with("python")) {
                code = inv.args.get(i + 1).map(|a| a.text.clone());
                break;
            }
            if a == "-" {
                break;
            }
            if !a.starts_with('-') {
                has_file = true;
                break;
            }
            i += 1;
        }
        if code.is_none() && !has_file {
            match stdin {
                Input::Text(t) => code = Some(t.clone()),
                Input::Pipe { programs, literal } => {
                    inv.code_from.extend(programs.iter().cloned());
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
        WordPart::Lit { text, .. } | WordPart::Single(text) | WordPart::AnsiC(text) => arg.text.push_str(text),
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
                if out.last().is_some_and(|l| *l != ".." && !l.starts_with('$') && *l != "~") {
                    out.pop();
                } else if !absolute {
                    out.push("..");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    let trailing = text.ends_with('/') && !joined.is_empty();
    let mut s = if absolute { format!("/{joined}") } else if joined.is_empty() { ".".into() } else { joined };
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
                let mut words: Vec<String> = s.words.iter().skip(1).map(|w| shell::flatten(w)).collect();
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
        "echo" => {
            let rest: Vec<&String> = rest.iter().skip_while(|w| matches!(w.as_str(), "-n" | "-e" | "-E" | "-ne" | "-en")).collect();
            Some(rest.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "))
        }
        "printf" => rest.first().map(|f| f.replace("\\n", "\n")),
        _ => None,
    }
}

/// Programs inside the process substitutions of a word (`<(curl …)`).
fn process_sub_producers(word: &Word, vars: &HashMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for p in &word.parts {
        if let WordPart::ProcessSub { script, input: true } = p {
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
        "sudo" => (&["-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "-T", "-R", "--user", "--group", "--close-from", "--chdir", "--host", "--prompt", "--role", "--type", "--other-user", "--command-timeout", "--chroot"], true),
        "doas" => (&["-u", "-C"], true),
        "env" => (&["-u", "--unset", "-C", "--chdir", "-S", "--split-string", "-P"], true),
        "nice" => (&["-n", "--adjustment"], true),
        "ionice" => (&["-c", "--class", "-n", "--classdata"], true),
        "timeout" => (&["-s", "--signal", "-k", "--kill-after"], true),
        "time" => (&["-f", "--format", "-o", "--output"], true),
        "stdbuf" => (&["-i", "-o", "-e", "--input", "--output", "--error"], true),
        "exec" => (&["-a"], true),
        "chroot" => (&["--userspec", "--groups"], true),
        "setsid" | "nohup" | "builtin" | "busybox" | "caffeinate" | "unbuffer" | "command" => (&[], true),
        "flock" => (&["-w", "--timeout", "-E", "--conflict-exit-code"], true),
        "runuser" | "su" => (&["-u", "--user", "-g", "--group", "-G", "-s", "--shell", "-w"], true),
        "watch" => (&["-n", "--interval", "-d", "-q"], true),
        "xargs" => (&["-I", "-L", "-l", "-n", "-P", "-s", "-d", "-E", "-e", "-a", "--arg-file", "--max-args", "--max-procs", "--delimiter", "--max-lines", "--max-chars", "--replace", "--eof", "--process-slot-var"], true),
        "parallel" => (&["-j", "--jobs", "-S", "--sshlogin", "--joblog", "-I"], true),
        "taskset" => (&[], true),
        "chrt" => (&[], true),
        "prlimit" => (&["-p", "--pid"], true),
        "systemd-run" => (&["-u", "--unit", "-p", "--property", "--description", "-E", "--setenv", "--uid", "--gid", "-M", "--machine", "--slice", "--working-directory", "--on-calendar", "--on-active", "--timer-property", "--path-property", "--socket-property", "--service-type"], true),
        "nsenter" => (&["-t", "--target", "-S", "--setuid", "-G", "--setgid", "--wd", "-w", "--root", "-r"], true),
        "unshare" => (&["--map-user", "--map-group", "--propagation", "--setgroups", "-S", "--setuid", "-G", "--setgid", "-R", "--root", "-w", "--wd"], true),
        "firejail" | "proot" => (&[], true),
        "strace" | "ltrace" => (&["-e", "-o", "-p", "-s", "-u", "-E", "-P", "-I", "-b", "-a", "-X"], true),
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
            } else if program == "sudo" && matches!(a.as_str(), "-s" | "-i") && i + 1 >= args.len() {
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
            if program == "flock" {
                if let Some(pos) = rest.iter().position(|a| a.text == "-c" || a.text == "--command") {
                    return rest.get(pos + 1).map(|a| Unwrapped::ShellText(a.text.clone()));
                }
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
            if let Some(pos) = args.iter().position(|a| a.text == "-c" || a.text == "--command") {
                return args.get(pos + 1).map(|a| Unwrapped::ShellText(a.text.clone()));
            }
            return None;
        }
        "watch" => {
            if args.iter().any(|a| a.text == "-x" || a.text == "--exec") {
                return Some(Unwrapped::Command(rest));
            }
            let text = rest.iter().map(|a| a.text.as_str()).collect::<Vec<_>>().join(" ");
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
        "systemd-run" | "nsenter" | "unshare" | "firejail" | "proot" | "strace" | "ltrace" | "gdb" => {}
        _ => {}
    }
    (!rest.is_empty()).then_some(Unwrapped::Command(rest))
}

/// The commands of `find … -exec cmd … ;` (and `-execdir`, `-ok`, `-okdir`).
fn find_exec_commands(args: &[Arg]) -> Vec<Vec<Arg>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if matches!(args[i].text.as_str(), "-exec" | "-execdir" | "-ok" | "-okdir") {
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
            i += if a.len() == 2 && WITH_VALUE.contains(last) { 2 } else { 1 };
            continue;
        }
        break;
    }
    let rest = args.get(i + 1..)?;
    (!rest.is_empty()).then(|| rest.iter().map(|a| a.text.as_str()).collect::<Vec<_>>().join(" "))
}

/// The command of `kubectl exec … -- cmd` or `docker exec [opts] ctr cmd`.
fn exec_in_container(program: &str, args: &[Arg]) -> Option<Vec<Arg>> {
    let pos = args.iter().position(|a| a.text == "exec")?;
    if matches!(program, "kubectl" | "oc") {
        let dash = args.iter().position(|a| a.text == "--")?;
        return Some(args[dash + 1..].to_vec()).filter(|v| !v.is_empty());
    }
    // docker exec [options] CONTAINER COMMAND [ARG…]
    const WITH_VALUE: &[&str] = &["-e", "--env", "--env-file", "-u", "--user", "-w", "--workdir", "--detach-keys"];
    let mut i = pos + 1;
    while i < args.len() {
        let a = &args[i].text;
        if a.starts_with('-') {
            i += if WITH_VALUE.contains(&a.as_str()) { 2 } else { 1 };
            continue;
        }
        break;
    }
    let rest = args.get(i + 1..)?;
    (!rest.is_empty()).then(|| rest.to_vec())
}

/// Shell command strings inside interpreter code: `system('…')`, `os.system("…")`,
/// `subprocess.run("…", shell=True)`, `execSync('…')`, `exec('…')`, backticks, `%x(…)`.
fn embedded_shell(code: &str) -> Vec<String> {
    use std::sync::OnceLock;
    static CALLS: OnceLock<Option<regex::Regex>> = OnceLock::new();
    static TICKS: OnceLock<Option<regex::Regex>> = OnceLock::new();
    let calls = CALLS.get_or_init(|| {
        regex::Regex::new(
            r#"(?:\bsystem|\bos\.system|\bos\.popen|\bsubprocess\.(?:run|call|check_call|check_output|Popen)|\bexecSync|\bexec|\bspawnSync|\bpopen|\bshell_exec|\bpassthru|\bproc_open)\s*\(\s*(?:\[\s*)?(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')"#,
        )
        .ok()
    });
    let ticks = TICKS.get_or_init(|| regex::Regex::new(r"`([^`]*)`|%x\(([^)]*)\)").ok());
    let mut out = Vec::new();
    if let Some(re) = calls {
        for c in re.captures_iter(code).take(64) {
            if let Some(m) = c.get(1).or_else(|| c.get(2)) {
                out.push(m.as_str().replace("\\'", "'").replace("\\\"", "\""));
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
