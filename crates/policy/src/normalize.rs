//! Reading a program's options the way the program does, so that `rm -rf /`, `rm -r -f /`,
//! `rm --recursive --force /` and `rm / -rf` all become the same thing.

use std::collections::{BTreeSet, HashMap};

use crate::{
    extract::{Arg, Invocation},
    pack::{Match, ProgramSpec},
};

/// An invocation with its options sorted out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    pub program: String,
    /// Canonical names of every option given, with or without a value.
    pub flags: BTreeSet<String>,
    /// Options given with a value, canonical name first.
    pub options: Vec<(String, String)>,
    /// Non-option arguments in order (GNU style: options may come anywhere before `--`).
    pub positionals: Vec<Arg>,
}

impl Normalized {
    /// One spelling for every way of writing the same invocation: the program, up to two
    /// leading subcommand words (`git reset`, `kubectl delete ns`), the options sorted, then
    /// the other arguments in order.
    pub fn display(&self) -> String {
        let mut out = self.program.clone();
        let is_word = |a: &Arg| {
            !a.dynamic
                && a.text.starts_with(|c: char| c.is_ascii_lowercase())
                && a.text
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        let lead = self
            .positionals
            .iter()
            .take(2)
            .take_while(|a| is_word(a))
            .count();
        for p in &self.positionals[..lead] {
            out.push(' ');
            out.push_str(&p.text);
        }
        for f in &self.flags {
            if self.options.iter().any(|(k, _)| k == f) {
                continue;
            }
            out.push_str(if f.chars().count() == 1 { " -" } else { " --" });
            out.push_str(f);
        }
        for (k, v) in &self.options {
            if k.chars().count() == 1 {
                out.push_str(" -");
                out.push_str(k);
                out.push(' ');
            } else {
                out.push_str(" --");
                out.push_str(k);
                out.push('=');
            }
            out.push_str(v);
        }
        for p in &self.positionals[lead..] {
            out.push(' ');
            out.push_str(&p.text);
        }
        out
    }
}

pub(crate) fn normalize(
    inv: &Invocation,
    spec: Option<&ProgramSpec>,
    all: &HashMap<String, ProgramSpec>,
) -> Normalized {
    let empty = ProgramSpec::default();
    let mut spec = spec.unwrap_or(&empty);
    let mut n = Normalized {
        program: inv.program.clone(),
        flags: BTreeSet::new(),
        options: Vec::new(),
        positionals: Vec::new(),
    };
    let mut i = 0;
    let args = &inv.args;
    let mut only_positionals = false;
    while i < args.len() {
        let a = &args[i];
        let t = a.text.as_str();
        if only_positionals || a.dynamic || t.len() < 2 || !t.starts_with('-') || is_number(t) {
            n.positionals.push(a.clone());
            // `git push …`: options after the subcommand follow its own spec.
            if n.positionals.len() == 1
                && let Some(sub) = all.get(&format!("{} {}", inv.program, t))
            {
                spec = sub;
            }
            i += 1;
            continue;
        }
        if t == "--" {
            only_positionals = true;
            i += 1;
            continue;
        }
        let long = t
            .strip_prefix("--")
            .or_else(|| spec.single_dash_long.then(|| &t[1..]));
        if let Some(body) = long {
            let (name, value) = match body.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (body, None),
            };
            let canonical = spec.canonical(name).to_string();
            let value = match value {
                Some(v) => Some(v),
                None if spec.values.contains(name) || spec.values.contains(&canonical) => {
                    i += 1;
                    args.get(i).map(|a| a.text.clone())
                }
                None => None,
            };
            n.flags.insert(canonical.clone());
            if let Some(v) = value {
                n.options.push((canonical, v));
            }
            i += 1;
            continue;
        }
        // A cluster of short options: -rf, -n5, -uroot.
        let chars: Vec<char> = t[1..].chars().collect();
        let mut j = 0;
        while j < chars.len() {
            let c = chars[j].to_string();
            let canonical = spec.canonical(&c).to_string();
            n.flags.insert(canonical.clone());
            if spec.values.contains(&c) || spec.values.contains(&canonical) {
                let rest: String = chars[j + 1..].iter().collect();
                let value = if !rest.is_empty() {
                    Some(rest.trim_start_matches('=').to_string())
                } else {
                    i += 1;
                    args.get(i).map(|a| a.text.clone())
                };
                if let Some(v) = value {
                    n.options.push((canonical, v));
                }
                break;
            }
            j += 1;
        }
        i += 1;
    }
    n
}

fn is_number(t: &str) -> bool {
    t[1..].chars().all(|c| c.is_ascii_digit() || c == '.') && t.len() > 1
}

/// True when every field of `m` that is set holds for this invocation.
pub(crate) fn matches(m: &Match, inv: &Invocation, n: &Normalized) -> bool {
    if !m.programs.is_empty() && !m.programs.contains(&inv.program) {
        return false;
    }
    if let Some(d) = m.dynamic_program
        && inv.dynamic_program != d
    {
        return false;
    }
    if let Some(o) = m.obfuscated
        && inv.obfuscated != o
    {
        return false;
    }
    for (i, alts) in m.positional.iter().enumerate() {
        match n.positionals.get(i) {
            Some(arg) if alts.iter().any(|p| p.is_match(&arg.text)) => {}
            _ => return false,
        }
    }
    if !m.flags_all.iter().all(|f| n.flags.contains(f)) {
        return false;
    }
    if !m.flags_any.is_empty() && !m.flags_any.iter().any(|f| n.flags.contains(f)) {
        return false;
    }
    if m.flags_none.iter().any(|f| n.flags.contains(f)) {
        return false;
    }
    for (name, pattern) in &m.options {
        if !n
            .options
            .iter()
            .any(|(k, v)| k == name && pattern.is_match(v))
        {
            return false;
        }
    }
    let rest = n.positionals.get(m.positional.len()..).unwrap_or(&[]);
    if !m.args_any.is_empty()
        && !rest
            .iter()
            .any(|a| m.args_any.iter().any(|p| p.is_match(&a.text)))
    {
        return false;
    }
    if !m.args_all.is_empty()
        && (rest.is_empty()
            || !rest
                .iter()
                .all(|a| m.args_all.iter().any(|p| p.is_match(&a.text))))
    {
        return false;
    }
    if let Some(d) = m.args_dynamic
        && rest.iter().any(|a| a.dynamic) != d
    {
        return false;
    }
    if let Some(p) = &m.text
        && !p.is_match(&inv.display())
    {
        return false;
    }
    if let Some(p) = &m.stdin
        && !inv.stdin_text.as_deref().is_some_and(|t| p.is_match(t))
    {
        return false;
    }
    if let Some(p) = &m.code
        && !inv.inline_code.as_deref().is_some_and(|t| p.is_match(t))
    {
        return false;
    }
    if !m.code_from.is_empty()
        && !inv
            .code_from
            .iter()
            .any(|c| m.code_from.iter().any(|p| p.is_match(c)))
    {
        return false;
    }
    true
}
