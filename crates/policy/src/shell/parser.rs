//! A recursive-descent parser for the bash command language, written for judging commands
//! rather than running them.
//!
//! It covers what an agent's commands use: quoting and escapes, line continuations, lists
//! (`; & && || |` and newlines), subshells and groups, `if`/`while`/`until`/`for`/`case`,
//! functions, `[[ ]]` and `(( ))`, parameter expansion, command and process substitution,
//! arithmetic, here-docs and here-strings, redirections and assignments. Input size and
//! nesting depth are bounded, and every loop consumes input, so parsing any input finishes
//! in time linear in its length (times the nesting limit for backticks, which re-parse).

use super::ast::*;

/// Longest command line the parser accepts.
pub const MAX_INPUT: usize = 64 * 1024;
/// Deepest nesting of subshells, groups, substitutions and compound commands.
pub const MAX_DEPTH: usize = 48;

/// Why a command line could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at offset {offset}")]
pub struct ParseError {
    pub offset: usize,
    pub message: String,
}

/// Parses a whole command line.
pub fn parse(input: &str) -> Result<Script, ParseError> {
    if input.len() > MAX_INPUT {
        return Err(ParseError {
            offset: MAX_INPUT,
            message: format!("command is longer than {MAX_INPUT} bytes"),
        });
    }
    parse_nested(input, 0)
}

fn parse_nested(input: &str, depth: usize) -> Result<Script, ParseError> {
    let mut p = Parser {
        chars: input.chars().collect(),
        pos: 0,
        depth,
        pending: Vec::new(),
        bodies: Vec::new(),
        next_heredoc: 0,
    };
    let mut script = p.script(&[])?;
    p.skip_space();
    if p.pos < p.chars.len() {
        return Err(p.error(&format!("unexpected `{}`", p.chars[p.pos])));
    }
    // Here-docs opened on the last line with no newline after them have empty bodies.
    p.read_pending_bodies();
    let mut bodies = std::mem::take(&mut p.bodies);
    attach_bodies(&mut script, &mut bodies);
    Ok(script)
}

struct Pending {
    id: usize,
    delimiter: String,
    strip_tabs: bool,
    expands: bool,
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
    pending: Vec<Pending>,
    bodies: Vec<HereDoc>,
    next_heredoc: usize,
}

/// Words that end a list inside a compound command.
const CLOSERS: &[&str] = &[
    "then", "elif", "else", "fi", "do", "done", "esac", "}", "in",
];

impl Parser {
    fn error(&self, message: &str) -> ParseError {
        ParseError {
            offset: self.pos,
            message: message.to_string(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.pos + n).copied()
    }

    fn starts_with(&self, s: &str) -> bool {
        (self.pos..)
            .zip(s.chars())
            .all(|(i, c)| self.chars.get(i) == Some(&c))
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.starts_with(s) {
            self.pos += s.chars().count();
            true
        } else {
            false
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(&format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// Blanks, line continuations and comments; not newlines.
    fn skip_space(&mut self) {
        loop {
            match self.peek() {
                Some(' ' | '\t' | '\r') => self.pos += 1,
                Some('\\') if self.peek_at(1) == Some('\n') => self.pos += 2,
                Some('#') => {
                    while let Some(c) = self.peek() {
                        if c == '\n' {
                            break;
                        }
                        self.pos += 1;
                    }
                }
                _ => return,
            }
        }
    }

    /// Blanks and newlines; reads here-doc bodies at each newline.
    fn skip_linebreaks(&mut self) {
        loop {
            self.skip_space();
            if self.peek() == Some('\n') {
                self.pos += 1;
                self.read_pending_bodies();
            } else {
                return;
            }
        }
    }

    fn read_pending_bodies(&mut self) {
        for pending in std::mem::take(&mut self.pending) {
            let mut text = String::new();
            loop {
                if self.pos >= self.chars.len() {
                    break;
                }
                let start = self.pos;
                while self.pos < self.chars.len() && self.chars[self.pos] != '\n' {
                    self.pos += 1;
                }
                let line: String = self.chars[start..self.pos].iter().collect();
                if self.pos < self.chars.len() {
                    self.pos += 1;
                }
                let line = if pending.strip_tabs {
                    line.trim_start_matches('\t').to_string()
                } else {
                    line
                };
                if line == pending.delimiter {
                    break;
                }
                text.push_str(&line);
                text.push('\n');
            }
            let (substitutions, unparsed) = if pending.expands {
                substitutions_in(&text, self.depth)
            } else {
                (Vec::new(), false)
            };
            self.bodies.push(HereDoc {
                id: pending.id,
                text,
                expands: pending.expands,
                substitutions,
                unparsed,
            });
        }
    }

    /// The unquoted word at the cursor if it is a plain keyword-like token.
    fn peek_keyword(&self) -> Option<String> {
        let mut i = self.pos;
        let mut s = String::new();
        while let Some(&c) = self.chars.get(i) {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '{' | '}' | '!' | '[' | ']') {
                s.push(c);
                i += 1;
            } else {
                break;
            }
        }
        let ends = matches!(
            self.chars.get(i),
            None | Some(' ' | '\t' | '\n' | ';' | '&' | '|' | ')' | '(' | '<' | '>' | '\r')
        );
        (ends && !s.is_empty()).then_some(s)
    }

    fn at_closer(&self, closers: &[&str]) -> bool {
        match self.peek() {
            None => true,
            Some(')') => true,
            Some(';') if self.peek_at(1) == Some(';') => true,
            Some(';') if self.peek_at(1) == Some('&') => true,
            _ => self.peek_keyword().is_some_and(|k| {
                closers.contains(&k.as_str())
                    || CLOSERS.contains(&k.as_str()) && !closers.is_empty()
            }),
        }
    }

    /// A list of and-or lists, up to a closing keyword, `)` or the end.
    fn script(&mut self, closers: &[&str]) -> Result<Script, ParseError> {
        let mut items = Vec::new();
        loop {
            self.skip_linebreaks();
            if self.at_closer(closers) {
                break;
            }
            let before = self.pos;
            let mut item = self.and_or(closers)?;
            self.skip_space();
            match self.peek() {
                Some(';') if !matches!(self.peek_at(1), Some(';' | '&')) => self.pos += 1,
                Some('&') if !matches!(self.peek_at(1), Some('&' | '>')) => {
                    self.pos += 1;
                    item.background = true;
                }
                Some('\n') => {}
                _ => {
                    items.push(item);
                    if self.pos == before {
                        return Err(self.error("parser made no progress"));
                    }
                    break;
                }
            }
            items.push(item);
        }
        Ok(Script { items })
    }

    fn and_or(&mut self, closers: &[&str]) -> Result<AndOr, ParseError> {
        let first = self.pipeline(closers)?;
        let mut rest = Vec::new();
        loop {
            self.skip_space();
            let connector = if self.eat("&&") {
                Connector::And
            } else if self.starts_with("||") {
                self.pos += 2;
                Connector::Or
            } else {
                break;
            };
            self.skip_linebreaks();
            rest.push((connector, self.pipeline(closers)?));
        }
        Ok(AndOr {
            first,
            rest,
            background: false,
        })
    }

    fn pipeline(&mut self, closers: &[&str]) -> Result<Pipeline, ParseError> {
        self.skip_space();
        let mut negated = false;
        while self.peek_keyword().as_deref() == Some("!") {
            self.pos += 1;
            negated = !negated;
            self.skip_space();
        }
        let mut commands = vec![self.command(closers)?];
        loop {
            self.skip_space();
            if self.peek() == Some('|') && self.peek_at(1) != Some('|') {
                self.pos += 1;
                self.eat("&");
                self.skip_linebreaks();
                commands.push(self.command(closers)?);
            } else {
                break;
            }
        }
        Ok(Pipeline { negated, commands })
    }

    fn command(&mut self, closers: &[&str]) -> Result<Command, ParseError> {
        self.skip_space();
        match self.peek() {
            Some('(') if self.peek_at(1) == Some('(') => {
                self.pos += 2;
                let text = self.read_balanced_arith()?;
                Ok(Command::Arith(text))
            }
            Some('(') => {
                self.pos += 1;
                self.enter()?;
                let body = self.script(&[])?;
                self.leave();
                self.skip_linebreaks();
                if !self.eat(")") {
                    return Err(self.error("expected `)` to close the subshell"));
                }
                let redirects = self.trailing_redirects()?;
                Ok(Command::Subshell(body, redirects))
            }
            _ => {
                let kw = self.peek_keyword();
                match kw.as_deref() {
                    Some("{") => {
                        self.pos += 1;
                        self.enter()?;
                        let body = self.script(&["}"])?;
                        self.leave();
                        self.expect_keyword("}")?;
                        let redirects = self.trailing_redirects()?;
                        Ok(Command::Group(body, redirects))
                    }
                    Some("if") => self.if_command(),
                    Some("while") | Some("until") => {
                        self.pos += kw.as_deref().map_or(0, str::len);
                        self.enter()?;
                        let condition = self.script(&["do"])?;
                        self.expect_keyword("do")?;
                        let body = self.script(&["done"])?;
                        self.expect_keyword("done")?;
                        self.leave();
                        let redirects = self.trailing_redirects()?;
                        Ok(Command::Loop {
                            condition,
                            body,
                            redirects,
                        })
                    }
                    Some("for") | Some("select") => self.for_command(),
                    Some("case") => self.case_command(),
                    Some("function") => {
                        self.pos += "function".len();
                        self.skip_space();
                        let name = self
                            .word()?
                            .and_then(|w| w.literal())
                            .ok_or_else(|| self.error("expected a function name"))?;
                        self.skip_space();
                        if self.eat("(") {
                            self.skip_space();
                            if !self.eat(")") {
                                return Err(self.error("expected `)` after `(`"));
                            }
                        }
                        self.function_body(name)
                    }
                    Some("[[") => self.test_command(),
                    Some(k) if CLOSERS.contains(&k) && !closers.is_empty() => {
                        Err(self.error(&format!("unexpected `{k}`")))
                    }
                    _ => self.simple_command(),
                }
            }
        }
    }

    fn expect_keyword(&mut self, kw: &str) -> Result<(), ParseError> {
        self.skip_linebreaks();
        if self.peek_keyword().as_deref() == Some(kw) {
            self.pos += kw.len();
            Ok(())
        } else {
            Err(self.error(&format!("expected `{kw}`")))
        }
    }

    fn if_command(&mut self) -> Result<Command, ParseError> {
        self.pos += 2;
        self.enter()?;
        let mut branches = Vec::new();
        let mut otherwise = None;
        loop {
            let cond = self.script(&["then"])?;
            self.expect_keyword("then")?;
            let body = self.script(&["elif", "else", "fi"])?;
            branches.push((cond, body));
            self.skip_linebreaks();
            match self.peek_keyword().as_deref() {
                Some("elif") => self.pos += 4,
                Some("else") => {
                    self.pos += 4;
                    otherwise = Some(self.script(&["fi"])?);
                    self.expect_keyword("fi")?;
                    break;
                }
                Some("fi") => {
                    self.pos += 2;
                    break;
                }
                _ => return Err(self.error("expected `elif`, `else` or `fi`")),
            }
        }
        self.leave();
        let redirects = self.trailing_redirects()?;
        Ok(Command::If {
            branches,
            otherwise,
            redirects,
        })
    }

    fn for_command(&mut self) -> Result<Command, ParseError> {
        let kw_len = if self.starts_with("for") { 3 } else { 6 };
        self.pos += kw_len;
        self.skip_space();
        if self.starts_with("((") {
            // for (( init; cond; step )) — arithmetic only.
            self.pos += 2;
            self.read_balanced_arith()?;
            self.skip_linebreaks();
            self.eat(";");
            self.enter()?;
            let body = self.loop_body()?;
            self.leave();
            let redirects = self.trailing_redirects()?;
            return Ok(Command::For {
                var: String::new(),
                words: None,
                body,
                redirects,
            });
        }
        let var = self
            .word()?
            .and_then(|w| w.literal())
            .ok_or_else(|| self.error("expected a loop variable"))?;
        self.skip_linebreaks();
        let mut words = None;
        if self.peek_keyword().as_deref() == Some("in") {
            self.pos += 2;
            let mut list = Vec::new();
            loop {
                self.skip_space();
                match self.peek() {
                    Some(';' | '\n') | None => break,
                    _ => match self.word()? {
                        Some(w) => list.push(w),
                        None => return Err(self.error("unexpected character in the word list")),
                    },
                }
            }
            words = Some(list);
        }
        self.skip_space();
        self.eat(";");
        self.enter()?;
        let body = self.loop_body()?;
        self.leave();
        let redirects = self.trailing_redirects()?;
        Ok(Command::For {
            var,
            words,
            body,
            redirects,
        })
    }

    fn loop_body(&mut self) -> Result<Script, ParseError> {
        self.skip_linebreaks();
        if self.peek_keyword().as_deref() == Some("{") {
            self.pos += 1;
            let body = self.script(&["}"])?;
            self.expect_keyword("}")?;
            return Ok(body);
        }
        self.expect_keyword("do")?;
        let body = self.script(&["done"])?;
        self.expect_keyword("done")?;
        Ok(body)
    }

    fn case_command(&mut self) -> Result<Command, ParseError> {
        self.pos += 4;
        self.skip_space();
        let word = self
            .word()?
            .ok_or_else(|| self.error("expected a word after `case`"))?;
        self.expect_keyword("in")?;
        self.enter()?;
        let mut arms = Vec::new();
        loop {
            self.skip_linebreaks();
            if self.peek_keyword().as_deref() == Some("esac") {
                self.pos += 4;
                break;
            }
            if self.peek().is_none() {
                return Err(self.error("expected `esac`"));
            }
            self.eat("(");
            let mut patterns = Vec::new();
            loop {
                self.skip_space();
                let w = self
                    .word()?
                    .ok_or_else(|| self.error("expected a case pattern"))?;
                patterns.push(w);
                self.skip_space();
                if self.eat("|") {
                    continue;
                }
                if self.eat(")") {
                    break;
                }
                return Err(self.error("expected `)` after the case pattern"));
            }
            let body = self.script(&["esac"])?;
            self.skip_linebreaks();
            if !(self.eat(";;&") || self.eat(";;") || self.eat(";&")) {
                arms.push((patterns, body));
                self.skip_linebreaks();
                if self.peek_keyword().as_deref() == Some("esac") {
                    self.pos += 4;
                    break;
                }
                return Err(self.error("expected `;;` or `esac`"));
            }
            arms.push((patterns, body));
        }
        self.leave();
        let redirects = self.trailing_redirects()?;
        Ok(Command::Case {
            word,
            arms,
            redirects,
        })
    }

    fn function_body(&mut self, name: String) -> Result<Command, ParseError> {
        self.skip_linebreaks();
        self.enter()?;
        let body = self.command(&[])?;
        self.leave();
        Ok(Command::Function {
            name,
            body: Box::new(body),
        })
    }

    fn test_command(&mut self) -> Result<Command, ParseError> {
        self.pos += 2;
        let mut words = Vec::new();
        loop {
            self.skip_linebreaks();
            if self.peek_keyword().as_deref() == Some("]]") {
                self.pos += 2;
                break;
            }
            match self.peek() {
                None => return Err(self.error("expected `]]`")),
                Some(c @ ('&' | '|' | '(' | ')' | '<' | '>' | '!')) => {
                    // Operators inside [[ ]] are not redirections or lists.
                    let mut op = c.to_string();
                    self.pos += 1;
                    if matches!(c, '&' | '|') && self.peek() == Some(c) {
                        self.pos += 1;
                        op.push(c);
                    }
                    words.push(Word::lit(&op));
                }
                _ => match self.word()? {
                    Some(w) => words.push(w),
                    None => return Err(self.error("unexpected character inside `[[ ]]`")),
                },
            }
        }
        let _ = self.trailing_redirects()?;
        Ok(Command::Test(words))
    }

    fn trailing_redirects(&mut self) -> Result<Vec<Redirect>, ParseError> {
        let mut out = Vec::new();
        loop {
            self.skip_space();
            match self.redirect()? {
                Some(r) => out.push(r),
                None => return Ok(out),
            }
        }
    }

    fn simple_command(&mut self) -> Result<Command, ParseError> {
        let mut cmd = SimpleCommand::default();
        loop {
            self.skip_space();
            if let Some(r) = self.redirect()? {
                cmd.redirects.push(r);
                continue;
            }
            match self.peek() {
                None | Some('\n' | ';' | '&' | '|' | ')') => break,
                Some('(') if cmd.words.len() == 1 && cmd.assigns.is_empty() => {
                    // name() body
                    self.pos += 1;
                    self.skip_space();
                    if !self.eat(")") {
                        return Err(self.error("expected `)` in a function definition"));
                    }
                    let name = cmd.words[0]
                        .literal()
                        .ok_or_else(|| self.error("a function name must be a plain word"))?;
                    return self.function_body(name);
                }
                Some('(') => return Err(self.error("unexpected `(`")),
                _ => {}
            }
            if cmd.words.is_empty()
                && let Some((name, value)) = self.assignment()?
            {
                cmd.assigns.push((name, value));
                continue;
            }
            match self.word()? {
                Some(w) => cmd.words.push(w),
                None => break,
            }
        }
        if cmd.words.is_empty() && cmd.assigns.is_empty() && cmd.redirects.is_empty() {
            return Err(match self.peek() {
                Some(c) => self.error(&format!("unexpected `{c}`")),
                None => self.error("expected a command"),
            });
        }
        Ok(Command::Simple(cmd))
    }

    /// `NAME=value`, `NAME+=value`, `NAME[i]=value`, `NAME=(a b c)`.
    fn assignment(&mut self) -> Result<Option<(String, Word)>, ParseError> {
        let start = self.pos;
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            self.pos = start;
            return Ok(None);
        }
        if self.peek() == Some('[') {
            while let Some(c) = self.peek() {
                self.pos += 1;
                if c == ']' {
                    break;
                }
            }
        }
        self.eat("+");
        if !self.eat("=") {
            self.pos = start;
            return Ok(None);
        }
        if self.peek() == Some('(') {
            self.pos += 1;
            let mut parts = Vec::new();
            loop {
                self.skip_linebreaks();
                if self.eat(")") {
                    break;
                }
                match self.word()? {
                    Some(w) => parts.extend(w.parts),
                    None => return Err(self.error("expected `)` to close the array")),
                }
                parts.push(WordPart::Lit {
                    text: " ".into(),
                    glob: false,
                });
            }
            return Ok(Some((name, Word { parts })));
        }
        let value = self.word()?.unwrap_or_default();
        Ok(Some((name, value)))
    }

    fn redirect(&mut self) -> Result<Option<Redirect>, ParseError> {
        let start = self.pos;
        let mut fd = None;
        let mut digits = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() {
                digits.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        if !digits.is_empty() {
            fd = digits.parse().ok();
        } else if self.peek() == Some('{') {
            // {varname}>file
            let save = self.pos;
            self.pos += 1;
            while self
                .peek()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                self.pos += 1;
            }
            if !(self.eat("}") && matches!(self.peek(), Some('<' | '>'))) {
                self.pos = save;
            }
        }
        // Process substitution is a word, not a redirection.
        if matches!(self.peek(), Some('<' | '>')) && self.peek_at(1) == Some('(') {
            self.pos = start;
            return Ok(None);
        }
        let op = if self.eat("<<<") {
            RedirOp::HereString
        } else if self.eat("<<-") {
            return self.heredoc(fd, true).map(Some);
        } else if self.eat("<<") {
            return self.heredoc(fd, false).map(Some);
        } else if self.eat("<>") {
            RedirOp::InOut
        } else if self.eat("<&") || self.eat(">&") {
            RedirOp::Dup
        } else if self.eat("<") {
            RedirOp::In
        } else if self.eat(">>") {
            RedirOp::Append
        } else if self.eat(">|") {
            RedirOp::Clobber
        } else if self.eat(">") {
            RedirOp::Out
        } else if digits.is_empty() && self.eat("&>>") {
            RedirOp::AppendErr
        } else if digits.is_empty() && self.eat("&>") {
            RedirOp::OutErr
        } else {
            self.pos = start;
            return Ok(None);
        };
        self.skip_space();
        let target = self
            .word()?
            .ok_or_else(|| self.error("expected a file name after the redirection"))?;
        Ok(Some(Redirect {
            fd,
            op,
            target,
            body: None,
        }))
    }

    fn heredoc(&mut self, fd: Option<u32>, strip_tabs: bool) -> Result<Redirect, ParseError> {
        self.skip_space();
        let target = self
            .word()?
            .ok_or_else(|| self.error("expected a here-document delimiter"))?;
        let expands = !target.is_quoted();
        let delimiter = flatten(&target);
        let id = self.next_heredoc;
        self.next_heredoc += 1;
        self.pending.push(Pending {
            id,
            delimiter,
            strip_tabs,
            expands,
        });
        Ok(Redirect {
            fd,
            op: RedirOp::HereDoc,
            target,
            body: Some(HereDoc {
                id,
                text: String::new(),
                expands,
                substitutions: Vec::new(),
                unparsed: false,
            }),
        })
    }

    fn read_balanced_arith(&mut self) -> Result<String, ParseError> {
        let mut depth = 0usize;
        let mut text = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error("expected `))`")),
                Some(')') if depth == 0 && self.peek_at(1) == Some(')') => {
                    self.pos += 2;
                    return Ok(text);
                }
                Some(c) => {
                    if c == '(' {
                        depth += 1;
                    } else if c == ')' {
                        depth = depth.saturating_sub(1);
                    }
                    text.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// One word, or `None` when the cursor is at a metacharacter or the end.
    fn word(&mut self) -> Result<Option<Word>, ParseError> {
        let mut parts: Vec<WordPart> = Vec::new();
        let mut lit = String::new();
        let mut glob = false;
        let start = self.pos;
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\n' | '\r' | ';' | '&' | '|' | ')' => break,
                '(' => {
                    // Extended globs such as @(a|b) belong to the word.
                    if lit.ends_with(['@', '!', '?', '*', '+']) {
                        let text = self.read_parenthesised()?;
                        lit.push_str(&text);
                        glob = true;
                        continue;
                    }
                    break;
                }
                '<' | '>' => {
                    if self.peek_at(1) == Some('(') && lit.is_empty() && parts.is_empty() {
                        self.pos += 2;
                        self.enter()?;
                        let script = self.script(&[])?;
                        self.leave();
                        self.skip_linebreaks();
                        if !self.eat(")") {
                            return Err(
                                self.error("expected `)` to close the process substitution")
                            );
                        }
                        parts.push(WordPart::ProcessSub {
                            input: c == '<',
                            script,
                        });
                        continue;
                    }
                    break;
                }
                '\\' => {
                    self.pos += 1;
                    match self.peek() {
                        Some('\n') => self.pos += 1,
                        Some(e) => {
                            lit.push(e);
                            self.pos += 1;
                        }
                        None => lit.push('\\'),
                    }
                }
                '\'' => {
                    flush(&mut parts, &mut lit, &mut glob);
                    self.pos += 1;
                    let mut s = String::new();
                    loop {
                        match self.peek() {
                            None => return Err(self.error("unterminated single quote")),
                            Some('\'') => {
                                self.pos += 1;
                                break;
                            }
                            Some(ch) => {
                                s.push(ch);
                                self.pos += 1;
                            }
                        }
                    }
                    parts.push(WordPart::Single(s));
                }
                '"' => {
                    flush(&mut parts, &mut lit, &mut glob);
                    self.pos += 1;
                    let inner = self.double_quoted()?;
                    parts.push(WordPart::Double(inner));
                }
                '`' => {
                    flush(&mut parts, &mut lit, &mut glob);
                    parts.push(self.backtick()?);
                }
                '$' => {
                    if let Some(part) = self.dollar()? {
                        flush(&mut parts, &mut lit, &mut glob);
                        parts.push(part);
                    } else {
                        lit.push('$');
                        self.pos += 1;
                    }
                }
                '#' if lit.is_empty() && parts.is_empty() => break,
                '*' | '?' | '[' => {
                    glob = true;
                    lit.push(c);
                    self.pos += 1;
                }
                _ => {
                    lit.push(c);
                    self.pos += 1;
                }
            }
        }
        flush(&mut parts, &mut lit, &mut glob);
        if self.pos == start {
            return Ok(None);
        }
        Ok(Some(Word { parts }))
    }

    fn read_parenthesised(&mut self) -> Result<String, ParseError> {
        let mut depth = 0usize;
        let mut text = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error("expected `)`"));
            };
            text.push(c);
            self.pos += 1;
            if c == '(' {
                depth += 1;
            } else if c == ')' {
                depth -= 1;
                if depth == 0 {
                    return Ok(text);
                }
            }
        }
    }

    /// The inside of `"…"`, after the opening quote, through the closing one.
    fn double_quoted(&mut self) -> Result<Vec<WordPart>, ParseError> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut glob = false;
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated double quote")),
                Some('"') => {
                    self.pos += 1;
                    break;
                }
                Some('\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(e @ ('$' | '`' | '"' | '\\')) => {
                            lit.push(e);
                            self.pos += 1;
                        }
                        Some('\n') => self.pos += 1,
                        _ => lit.push('\\'),
                    }
                }
                Some('`') => {
                    flush(&mut parts, &mut lit, &mut glob);
                    parts.push(self.backtick()?);
                }
                Some('$') => {
                    if let Some(part) = self.dollar()? {
                        flush(&mut parts, &mut lit, &mut glob);
                        parts.push(part);
                    } else {
                        lit.push('$');
                        self.pos += 1;
                    }
                }
                Some(c) => {
                    lit.push(c);
                    self.pos += 1;
                }
            }
        }
        // Inside double quotes nothing globs.
        if !lit.is_empty() {
            parts.push(WordPart::Lit {
                text: lit,
                glob: false,
            });
        }
        Ok(parts
            .into_iter()
            .map(|p| match p {
                WordPart::Lit { text, .. } => WordPart::Lit { text, glob: false },
                other => other,
            })
            .collect())
    }

    /// `` `…` ``: the text up to the closing backtick, re-parsed as a script.
    fn backtick(&mut self) -> Result<WordPart, ParseError> {
        self.pos += 1;
        let mut text = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated backquote")),
                Some('`') => {
                    self.pos += 1;
                    break;
                }
                Some('\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(e @ ('`' | '\\' | '$')) => {
                            text.push(e);
                            self.pos += 1;
                        }
                        _ => text.push('\\'),
                    }
                }
                Some(c) => {
                    text.push(c);
                    self.pos += 1;
                }
            }
        }
        if self.depth + 1 > MAX_DEPTH {
            return Err(self.error(&format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        let script = parse_nested(&text, self.depth + 1).map_err(|e| ParseError {
            offset: self.pos,
            message: format!("inside backquotes: {}", e.message),
        })?;
        Ok(WordPart::CommandSub(script))
    }

    /// Everything that starts with `$`; `None` for a lone `$`.
    fn dollar(&mut self) -> Result<Option<WordPart>, ParseError> {
        match self.peek_at(1) {
            Some('\'') => {
                self.pos += 2;
                Ok(Some(WordPart::AnsiC(self.ansi_c()?)))
            }
            Some('"') => {
                self.pos += 2;
                Ok(Some(WordPart::Double(self.double_quoted()?)))
            }
            Some('(') if self.peek_at(2) == Some('(') => {
                self.pos += 3;
                Ok(Some(WordPart::Arith(self.read_balanced_arith()?)))
            }
            Some('(') => {
                self.pos += 2;
                self.enter()?;
                let script = self.script(&[])?;
                self.leave();
                self.skip_linebreaks();
                if !self.eat(")") {
                    return Err(self.error("expected `)` to close `$(`"));
                }
                Ok(Some(WordPart::CommandSub(script)))
            }
            Some('{') => {
                self.pos += 2;
                let mut depth = 0usize;
                let mut text = String::new();
                loop {
                    match self.peek() {
                        None => return Err(self.error("expected `}` to close `${`")),
                        Some('}') if depth == 0 => {
                            self.pos += 1;
                            break;
                        }
                        Some(c) => {
                            if c == '{' {
                                depth += 1;
                            } else if c == '}' {
                                depth -= 1;
                            }
                            text.push(c);
                            self.pos += 1;
                        }
                    }
                }
                let name_len = text
                    .char_indices()
                    .find(|(i, c)| {
                        !(c.is_ascii_alphanumeric()
                            || *c == '_'
                            || (*i == 0 && matches!(c, '#' | '!' | '@' | '*' | '?' | '$' | '-')))
                    })
                    .map_or(text.len(), |(i, _)| i);
                let (name, op) = text.split_at(name_len);
                Ok(Some(WordPart::Param {
                    name: name.to_string(),
                    op: (!op.is_empty()).then(|| op.to_string()),
                }))
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                self.pos += 1;
                let mut name = String::new();
                while let Some(c) = self.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        name.push(c);
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
                Ok(Some(WordPart::Param { name, op: None }))
            }
            Some(c)
                if c.is_ascii_digit() || matches!(c, '@' | '*' | '#' | '?' | '$' | '!' | '-') =>
            {
                self.pos += 2;
                Ok(Some(WordPart::Param {
                    name: c.to_string(),
                    op: None,
                }))
            }
            _ => Ok(None),
        }
    }

    /// The inside of `$'…'`, decoded as bash does.
    fn ansi_c(&mut self) -> Result<String, ParseError> {
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error("unterminated $'"));
            };
            self.pos += 1;
            match c {
                '\'' => return Ok(out),
                '\\' => {
                    let Some(e) = self.peek() else { continue };
                    self.pos += 1;
                    match e {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        'a' => out.push('\u{7}'),
                        'b' => out.push('\u{8}'),
                        'e' | 'E' => out.push('\u{1b}'),
                        'f' => out.push('\u{c}'),
                        'v' => out.push('\u{b}'),
                        'x' => {
                            let v = self.hex_digits(2);
                            push_code(&mut out, v);
                        }
                        'u' => {
                            let v = self.hex_digits(4);
                            push_code(&mut out, v);
                        }
                        'U' => {
                            let v = self.hex_digits(8);
                            push_code(&mut out, v);
                        }
                        '0'..='7' => {
                            let mut v = e.to_digit(8).unwrap_or(0);
                            for _ in 0..2 {
                                match self.peek().and_then(|d| d.to_digit(8)) {
                                    Some(d) => {
                                        v = v * 8 + d;
                                        self.pos += 1;
                                    }
                                    None => break,
                                }
                            }
                            push_code(&mut out, Some(v));
                        }
                        'c' => {
                            if let Some(ctl) = self.peek() {
                                self.pos += 1;
                                push_code(&mut out, Some(u32::from(ctl) & 0x1f));
                            }
                        }
                        other => {
                            if !matches!(other, '\\' | '\'' | '"' | '?') {
                                out.push('\\');
                            }
                            out.push(other);
                        }
                    }
                }
                other => out.push(other),
            }
        }
    }

    fn hex_digits(&mut self, max: usize) -> Option<u32> {
        let mut v = 0u32;
        let mut n = 0;
        while n < max {
            match self.peek().and_then(|d| d.to_digit(16)) {
                Some(d) => {
                    v = v.wrapping_mul(16).wrapping_add(d);
                    self.pos += 1;
                    n += 1;
                }
                None => break,
            }
        }
        (n > 0).then_some(v)
    }
}

fn push_code(out: &mut String, v: Option<u32>) {
    if let Some(c) = v.and_then(char::from_u32) {
        out.push(c);
    }
}

fn flush(parts: &mut Vec<WordPart>, lit: &mut String, glob: &mut bool) {
    if !lit.is_empty() {
        parts.push(WordPart::Lit {
            text: std::mem::take(lit),
            glob: *glob,
        });
    }
    *glob = false;
}

/// The text of a word with quotes removed and expansions written as they were.
pub fn flatten(word: &Word) -> String {
    let mut out = String::new();
    for p in &word.parts {
        flatten_part(p, &mut out);
    }
    out
}

fn flatten_part(p: &WordPart, out: &mut String) {
    match p {
        WordPart::Lit { text, .. } | WordPart::Single(text) | WordPart::AnsiC(text) => {
            out.push_str(text)
        }
        WordPart::Double(inner) => inner.iter().for_each(|p| flatten_part(p, out)),
        WordPart::Param { name, .. } => {
            out.push('$');
            out.push_str(name);
        }
        WordPart::CommandSub(_) => out.push_str("$(…)"),
        WordPart::ProcessSub { input, .. } => {
            out.push_str(if *input { "<(…)" } else { ">(…)" })
        }
        WordPart::Arith(_) => out.push_str("$((…))"),
    }
}

/// Command substitutions in the body of an expanding here-doc; `true` when one of them does
/// not parse (it still runs, so the caller must not treat the body as harmless).
fn substitutions_in(text: &str, depth: usize) -> (Vec<Script>, bool) {
    let mut p = Parser {
        chars: text.chars().collect(),
        pos: 0,
        depth,
        pending: Vec::new(),
        bodies: Vec::new(),
        next_heredoc: 0,
    };
    let mut subs = Vec::new();
    while p.pos < p.chars.len() {
        let part = match p.peek() {
            Some('\\') => {
                p.pos += 2;
                continue;
            }
            Some('$') => match p.dollar() {
                Ok(Some(part)) => part,
                Ok(None) => {
                    p.pos += 1;
                    continue;
                }
                Err(_) => return (subs, true),
            },
            Some('`') => match p.backtick() {
                Ok(part) => part,
                Err(_) => return (subs, true),
            },
            _ => {
                p.pos += 1;
                continue;
            }
        };
        if let WordPart::CommandSub(script) = part {
            subs.push(script);
        }
    }
    (subs, false)
}

/// Moves here-doc bodies (read after the line that opened them) into their redirections.
fn attach_bodies(script: &mut Script, bodies: &mut Vec<HereDoc>) {
    for item in &mut script.items {
        for pipeline in std::iter::once(&mut item.first).chain(item.rest.iter_mut().map(|(_, p)| p))
        {
            for cmd in &mut pipeline.commands {
                attach_command(cmd, bodies);
            }
        }
    }
}

fn attach_command(cmd: &mut Command, bodies: &mut Vec<HereDoc>) {
    let redirects: &mut Vec<Redirect> = match cmd {
        Command::Simple(s) => {
            for w in s
                .words
                .iter_mut()
                .chain(s.assigns.iter_mut().map(|(_, w)| w))
            {
                attach_word(w, bodies);
            }
            &mut s.redirects
        }
        Command::Subshell(body, r) | Command::Group(body, r) => {
            attach_bodies(body, bodies);
            r
        }
        Command::If {
            branches,
            otherwise,
            redirects,
        } => {
            for (c, b) in branches {
                attach_bodies(c, bodies);
                attach_bodies(b, bodies);
            }
            if let Some(o) = otherwise {
                attach_bodies(o, bodies);
            }
            redirects
        }
        Command::Loop {
            condition,
            body,
            redirects,
        } => {
            attach_bodies(condition, bodies);
            attach_bodies(body, bodies);
            redirects
        }
        Command::For {
            words,
            body,
            redirects,
            ..
        } => {
            for w in words.iter_mut().flatten() {
                attach_word(w, bodies);
            }
            attach_bodies(body, bodies);
            redirects
        }
        Command::Case {
            word,
            arms,
            redirects,
        } => {
            attach_word(word, bodies);
            for (_, b) in arms {
                attach_bodies(b, bodies);
            }
            redirects
        }
        Command::Function { body, .. } => {
            attach_command(body, bodies);
            return;
        }
        Command::Test(words) => {
            for w in words {
                attach_word(w, bodies);
            }
            return;
        }
        Command::Arith(_) => return,
    };
    for r in redirects.iter_mut() {
        attach_word(&mut r.target, bodies);
        if let Some(doc) = &mut r.body
            && let Some(i) = bodies.iter().position(|b| b.id == doc.id)
        {
            *doc = bodies.swap_remove(i);
        }
    }
}

fn attach_word(word: &mut Word, bodies: &mut Vec<HereDoc>) {
    for part in &mut word.parts {
        match part {
            WordPart::CommandSub(s) | WordPart::ProcessSub { script: s, .. } => {
                attach_bodies(s, bodies)
            }
            WordPart::Double(inner) => {
                let mut w = Word {
                    parts: std::mem::take(inner),
                };
                attach_word(&mut w, bodies);
                *inner = w.parts;
            }
            _ => {}
        }
    }
}
