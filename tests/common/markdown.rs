//! The project's Markdown documents read the way a person copies from them: fenced blocks (also
//! the indented ones inside a numbered step) and the commands of their ```sh blocks, one per
//! line, a line ending in `\` continued on the next, a `#` comment dropped.

/// README, the operator's manual and the contributor's guide: the documents whose commands the
/// tests run or check.
pub const DOCUMENTS: [(&str, &str); 3] = [
    ("README.md", include_str!("../../README.md")),
    (
        "docs/operations.md",
        include_str!("../../docs/operations.md"),
    ),
    ("CONTRIBUTING.md", include_str!("../../CONTRIBUTING.md")),
];

pub const OPERATIONS: &str = DOCUMENTS[1].1;

/// A fenced block: its language (the word after the fence), the line its fence opens on
/// (1-based), and its text without the fence's indentation.
#[derive(Debug, Clone)]
pub struct Block {
    pub lang: String,
    pub line: usize,
    pub body: String,
}

/// Every fenced block of `text`, in order.
pub fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<(Block, usize)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match open.as_mut() {
            None => {
                if let Some(lang) = trimmed.strip_prefix("```") {
                    let block = Block {
                        lang: lang.trim().to_owned(),
                        line: i + 1,
                        body: String::new(),
                    };
                    open = Some((block, indent));
                }
            }
            Some((block, fence_indent)) => {
                if trimmed == "```" {
                    out.push(open.take().unwrap().0);
                } else {
                    // The fence's indentation is the list item's, not the command's.
                    let strip = indent.min(*fence_indent);
                    block.body.push_str(&line[strip..]);
                    block.body.push('\n');
                }
            }
        }
    }
    assert!(open.is_none(), "a fenced block is never closed");
    out
}

/// The blocks of `text` under the heading `heading` (up to the next heading of the same or a
/// higher level).
pub fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let level = heading.chars().take_while(|&c| c == '#').count();
    let start = text
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no heading {heading:?}"))
        + 1;
    let rest = &text[start + heading.len()..];
    let mut end = rest.len();
    let mut in_fence = false;
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !in_fence && hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
            end = offset;
            break;
        }
        offset += line.len();
    }
    &text[start..start + heading.len() + end]
}

/// One command of a ```sh block, as a reader would paste it.
#[derive(Debug, Clone)]
pub struct ShellCommand {
    /// The line of the document it starts on (1-based).
    pub line: usize,
    pub text: String,
}

/// The commands of every ```sh block of `text`.
pub fn shell_commands(text: &str) -> Vec<ShellCommand> {
    let mut out = Vec::new();
    for block in blocks(text).into_iter().filter(|b| b.lang == "sh") {
        let mut pending = String::new();
        let mut start = 0;
        for (k, raw) in block.body.lines().enumerate() {
            let line = raw.trim();
            if pending.is_empty() && (line.is_empty() || line.starts_with('#')) {
                continue;
            }
            if pending.is_empty() {
                start = block.line + 1 + k;
            }
            let command = without_comment(line);
            match command.strip_suffix('\\') {
                Some(continued) => {
                    pending.push_str(continued.trim_end());
                    pending.push(' ');
                }
                None => {
                    pending.push_str(command);
                    out.push(ShellCommand {
                        line: start,
                        text: pending.trim().to_owned(),
                    });
                    pending.clear();
                }
            }
        }
        assert!(
            pending.is_empty(),
            "a command continues past its block: {pending}"
        );
    }
    out
}

/// A command line without its trailing `# comment` (a `#` outside quotes after a blank).
fn without_comment(line: &str) -> &str {
    let mut quote = None;
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '#') if previous.is_whitespace() => return line[..i].trim_end(),
            _ => {}
        }
        previous = c;
    }
    line
}

/// The words of a shell command as the shell splits them: blanks separate words outside quotes
/// and `$(…)`; quotes are removed. Enough for the documents' commands, which use no other
/// expansions.
pub fn words(command: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut depth = 0usize;
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), _) if c == q && depth == 0 => quote = None,
            (Some(_), _) => word.push(c),
            (None, '\'' | '"') if depth == 0 => {
                quote = Some(c);
                in_word = true;
            }
            (None, '$') if chars.peek() == Some(&'(') => {
                depth += 1;
                word.push(c);
                word.push(chars.next().unwrap());
                in_word = true;
            }
            (None, ')') if depth > 0 => {
                depth -= 1;
                word.push(c);
            }
            (None, c) if c.is_whitespace() && depth == 0 => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(word);
    }
    out
}

/// The simple commands of a command line: its words split at `|`, `||`, `&&` and `;`, the
/// parentheses of a subshell and a redirection's target dropped.
pub fn simple_commands(command: &str) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new()];
    let mut words = words(command).into_iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            "|" | "||" | "&&" | ";" => out.push(Vec::new()),
            ">" | ">>" | "<" | "2>" => {
                words.next();
            }
            _ => {
                let word = word.trim_start_matches('(').trim_end_matches(')');
                if !word.is_empty() {
                    out.last_mut().unwrap().push(word.to_owned());
                }
            }
        }
    }
    out.retain(|c| !c.is_empty());
    out
}

/// Whether `word` assigns a shell variable (`NAME=value`), and its name.
pub fn assignment(word: &str) -> Option<&str> {
    let (name, _) = word.split_once('=')?;
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    valid.then_some(name)
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, blanks as hyphens.
pub fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of every heading of `text` (outside fenced blocks).
pub fn anchors(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !in_fence && hashes > 0 && line[hashes..].starts_with(' ') {
            out.push(anchor(&line[hashes..]));
        }
    }
    out
}

#[test]
fn reads_commands_as_a_person_copies_them() {
    let text = "intro\n\n1. step\n\n   ```sh\n   a --x 'y # z' # comment\n   b \\\n     --c\n   # only a comment\n   ```\n";
    let commands = shell_commands(text);
    let texts: Vec<&str> = commands.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(texts, ["a --x 'y # z'", "b --c"]);
    assert_eq!(commands[0].line, 6);
    assert_eq!(
        words(r#"X=1 a "b c" $(cat f) 'd'"#),
        ["X=1", "a", "b c", "$(cat f)", "d"]
    );
    assert_eq!(
        simple_commands("(umask 077 && openssl rand > t) && cat t | head"),
        [
            vec!["umask", "077"],
            vec!["openssl", "rand"],
            vec!["cat", "t"],
            vec!["head"]
        ]
    );
    assert_eq!(
        anchor("Remote connectors: OAuth (claude.ai, ChatGPT, Claude Desktop)"),
        "remote-connectors-oauth-claudeai-chatgpt-claude-desktop"
    );
}
