//! Words that stay true: `--help`, `call --help`, README and the Agent Skill name exactly the
//! tools `tools/list` has, and every `--sandbox` example of README runs as written.

use std::collections::BTreeSet;
use std::process::Stdio;

use onence_mcp::mcp::OrderServer;

#[cfg(unix)]
use crate::common::Group;
use crate::common::{self, Stderr};

const README: &str = include_str!("../README.md");
const SKILL: &str = include_str!("../skills/1nce-orders/SKILL.md");

/// The tool names in `tools/list`.
fn tools() -> BTreeSet<String> {
    OrderServer::tool_definitions()
        .iter()
        .map(|t| t.name.to_string())
        .collect()
}

/// Every word of `text` shaped like one of this server's tool names: a verb, an underscore,
/// and orders or products (`list_orders`, `get_order`, `delete_product`…).
fn tool_like_words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_lowercase() || c == '_'))
        .filter(|w| {
            w.split_once('_').is_some_and(|(verb, noun)| {
                !verb.is_empty() && ["order", "orders", "product", "products"].contains(&noun)
            })
        })
        .map(str::to_owned)
        .collect()
}

async fn output(args: &[&str]) -> String {
    let out = common::command(args, &[]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{args:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn help_readme_and_skill_name_exactly_the_tools() {
    let tools = tools();
    assert_eq!(tools.len(), 5);
    let help = output(&["--help"]).await;
    let call_help = output(&["call", "--help"]).await;
    // The README's tool table: its first column.
    let table: BTreeSet<String> = README
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(name, _)| name.to_owned()))
        .filter(|name| name.contains('_') && !name.starts_with('-'))
        .collect();
    for (what, named) in [
        ("--help", tool_like_words(&help)),
        ("call --help", tool_like_words(&call_help)),
        ("README's tool table", table),
        ("README", tool_like_words(README)),
        ("SKILL.md", tool_like_words(SKILL)),
    ] {
        assert_eq!(named, tools, "{what} names exactly the tools of tools/list");
    }
    for text in [&help, &call_help] {
        for wrong in ["three tools", "four tools"] {
            assert!(!text.contains(wrong), "{wrong}");
        }
    }
    assert!(help.contains("five tools"), "{help}");
}

/// `call --help` and the Agent Skill name every exit status `call` can end with, 3 included.
#[tokio::test]
async fn call_help_and_skill_name_every_exit_status_of_call() {
    use onence_mcp::exit_status::ExitStatus;
    // Both as words: clap wraps long lines.
    let words = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let call_help = words(&output(&["call", "--help"]).await);
    let skill = words(SKILL);
    for status in ExitStatus::CALL {
        let line = words(&format!("{} {}", status.code(), status.meaning()));
        assert!(
            call_help.contains(&line),
            "call --help says {line:?}:\n{call_help}"
        );
        let said = match status {
            ExitStatus::Success => "0 success",
            ExitStatus::ToolError => "1 the tool reported an error",
            ExitStatus::Usage => "2 bad usage",
            _ => "3 could not run",
        };
        assert!(skill.contains(said), "SKILL.md says {said:?}");
    }
}

/// One command of a ```sh block: the text before its comment.
#[cfg(unix)]
fn command_part(line: &str) -> &str {
    line.split(" #").next().unwrap().trim()
}

/// The lines of README's shell blocks.
#[cfg(unix)]
fn shell_lines() -> Vec<&'static str> {
    let mut lines = Vec::new();
    let mut in_shell = false;
    for line in README.lines() {
        match line.trim() {
            "```sh" => in_shell = true,
            "```" => in_shell = false,
            l if in_shell && !l.is_empty() && !l.starts_with('#') => lines.push(l),
            _ => {}
        }
    }
    lines
}

#[cfg(unix)] // a shell runs each line
#[tokio::test]
async fn readme_sandbox_examples_run_as_written() {
    let bin_dir = common::binary().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let dir = common::temp_dir("readme");
    let mut ran = Vec::new();
    let mut served = 0;
    for line in shell_lines() {
        let command = command_part(line);
        let runs_here = command.starts_with("echo ") || command.starts_with("1nce-mcp ");
        if !runs_here || command.ends_with('\\') {
            continue;
        }
        let sandboxed = command.contains("1nce-mcp --sandbox");
        let offline = command == "1nce-mcp tools";
        let writes_file = command.starts_with("echo ") && command.contains(" > ");
        if !(sandboxed || offline || writes_file) {
            continue;
        }
        let serves = sandboxed && !command.contains(" call ") && !command.contains(" check");
        // The shell runs the README's line with the binary on PATH, in the environment the
        // tests give the binary (no ONCE_* of the machine's, state in scratch space) and in a
        // directory of its own.
        let mut sh = common::command(&[], &[]);
        let mut shell = tokio::process::Command::new("sh");
        shell
            .arg("-c")
            .arg(if serves {
                // A server keeps running: the port of the HTTP example is made free-to-pick.
                command.replace(":8080", ":0")
            } else {
                command.to_owned()
            })
            .current_dir(&dir)
            .env_clear()
            .envs(
                sh.as_std_mut()
                    .get_envs()
                    .filter_map(|(k, v)| Some((k, v?))),
            )
            .env("PATH", &path)
            .env("HOME", &dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if serves {
            // The shell starts the server: killing the shell alone left the server running
            // after the tests, so the shell leads a process group and the group is killed.
            let mut server = Group::spawn(shell);
            let stderr = Stderr::capture(server.child.stderr.take().unwrap());
            stderr.wait_for(" ready on ").await;
            server.kill();
            // Every process that held the shell's stderr is gone, the server with it.
            stderr.until_closed().await;
            served += 1;
            continue;
        }
        let out = shell.output().await.unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "README example {command:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ran.push(command);
    }
    assert_eq!(
        served, 1,
        "the HTTP sandbox server of the example was started"
    );
    for expected in [
        "call list_orders",
        "call get_order",
        "call create_order",
        "check",
    ] {
        assert!(
            ran.iter().any(|c| c.contains(expected)),
            "README has a --sandbox example of {expected:?}: ran {ran:#?}"
        );
    }
}

/// README's configuration table and `--help` name the same flags: none documented that does not
/// exist, none that exists undocumented.
#[tokio::test]
async fn readme_configuration_table_has_every_flag_of_help() {
    let help = output(&["--help"]).await;
    let flags = |text: &str, in_line: fn(&str) -> bool| -> BTreeSet<String> {
        text.lines()
            .filter(|l| in_line(l))
            .flat_map(|l| l.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')))
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(str::to_owned)
            .collect()
    };
    // Each option's own line in --help starts with its flag (after an optional short form).
    let mut in_help = flags(&help, |l| {
        let l = l.trim_start();
        l.starts_with("--") || (l.starts_with('-') && l.get(2..4) == Some(", "))
    });
    for not_settings in ["--help", "--version"] {
        in_help.remove(not_settings);
    }
    assert!(in_help.len() > 20, "the flags were read: {in_help:?}");
    // The table's first column: a row's later cells may mention other flags.
    let first_column: BTreeSet<String> = README
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(flag, _)| flag.trim_end_matches('`'))
        })
        .filter(|f| f.starts_with("--"))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        first_column, in_help,
        "README's configuration table and --help name the same flags"
    );
}
