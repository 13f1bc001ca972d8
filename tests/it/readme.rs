//! The READMEs stay in step with the binary and with each other: `README.md` and its Korean
//! translation `README_kr.md` name the same commands and flags in their code blocks, every
//! command line in them parses with the binary's own definitions, and the English one links
//! the Korean one at its top.

use clap::{CommandFactory, Parser};
use std::collections::BTreeSet;
use vllm_loadtest::cli::Cli;

fn read(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("`{}`: {e}", path.display()))
}

/// The text of every fenced code block.
fn code_blocks(md: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            match current.take() {
                Some(b) => blocks.push(b),
                None => current = Some(String::new()),
            }
        } else if let Some(b) = &mut current {
            b.push_str(line);
            b.push('\n');
        }
    }
    blocks
}

/// A shell's words: whitespace-separated, `'…'` and `"…"` kept whole; a `#` word ends the
/// line, and a redirection or pipe ends the command.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let (mut in_word, mut quote) = (false, None);
    for ch in line.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(ch);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    if matches!(word.as_str(), ">" | ">>" | "|" | "&&" | ";") {
                        return words;
                    }
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, '#') if !in_word => break,
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Each command line of our binary in the code blocks (continuations joined), as the
/// arguments after the binary's name: `vllm-loadtest bench …` and `cargo run --release --
/// bench …` alike.
fn our_command_lines(md: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for block in code_blocks(md) {
        let joined = block.replace("\\\n", " ");
        for line in joined.lines() {
            let words = shell_words(line);
            let start = if words.first().map(String::as_str) == Some("vllm-loadtest") {
                1
            } else if words.starts_with(&["cargo", "run", "--release", "--"].map(String::from)) {
                4
            } else {
                continue;
            };
            out.push(words[start..].to_vec());
        }
    }
    out
}

/// The commands (`vllm-loadtest CMD`) and every `--flag` named in the code blocks.
fn commands_and_flags(md: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut commands = BTreeSet::new();
    for words in our_command_lines(md) {
        if let Some(c) = words.first().filter(|w| !w.starts_with('-')) {
            commands.insert(c.clone());
        }
    }
    let mut flags = BTreeSet::new();
    for block in code_blocks(md) {
        for word in block.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
            if let Some(rest) = word.strip_prefix("--")
                && rest.starts_with(|c: char| c.is_ascii_lowercase())
            {
                flags.insert(word.to_string());
            }
        }
    }
    (commands, flags)
}

#[test]
fn both_readmes_name_the_same_commands_and_flags() {
    let (en_cmds, en_flags) = commands_and_flags(&read("README.md"));
    let (kr_cmds, kr_flags) = commands_and_flags(&read("README_kr.md"));
    assert!(
        en_cmds.len() >= 6 && en_flags.len() >= 30,
        "{en_cmds:?} {en_flags:?}"
    );
    assert_eq!(
        en_cmds, kr_cmds,
        "commands: README.md vs README_kr.md (left: English)"
    );
    let only_en: Vec<_> = en_flags.difference(&kr_flags).collect();
    let only_kr: Vec<_> = kr_flags.difference(&en_flags).collect();
    assert!(
        only_en.is_empty() && only_kr.is_empty(),
        "flags only in README.md: {only_en:?}; only in README_kr.md: {only_kr:?}"
    );
}

#[test]
fn every_command_line_in_the_readmes_parses() {
    for name in ["README.md", "README_kr.md"] {
        let lines = our_command_lines(&read(name));
        assert!(lines.len() >= 10, "{name}: {} command lines", lines.len());
        for words in lines {
            let argv = std::iter::once("vllm-loadtest".to_string()).chain(words.iter().cloned());
            if let Err(e) = Cli::try_parse_from(argv) {
                panic!(
                    "{name}: `vllm-loadtest {}` does not parse:\n{e}",
                    words.join(" ")
                );
            }
        }
    }
}

#[test]
fn readme_links_the_korean_translation_at_its_top() {
    let en = read("README.md");
    let top: String = en.lines().take(5).collect::<Vec<_>>().join("\n");
    assert!(
        top.contains("한국어: [README_kr.md](README_kr.md)"),
        "{top}"
    );
    let kr = read("README_kr.md");
    assert!(
        kr.lines().take(5).any(|l| l.contains("README.md")),
        "no link back"
    );
    // the commands the Korean text names exist in the binary
    let cmd = Cli::command();
    for c in commands_and_flags(&kr).0 {
        assert!(
            cmd.find_subcommand(&c).is_some(),
            "README_kr.md names `{c}`"
        );
    }
}
