//! Words that stay true. `--help`, `call --help`, README, the operator's manual and the Agent
//! Skill name exactly the tools `tools/list` has; the manual's configuration table has exactly
//! the flags of `--help`; every link to a heading finds it; and every shell command of README,
//! docs/operations.md and CONTRIBUTING.md either runs here as written (offline, against the
//! sandbox) or, where it cannot (a real account, a database, another program), is checked: each
//! flag of `1nce-mcp` exists, each variable it reads was set before it, each `$(cat FILE)` reads
//! a file an earlier command wrote, each pinned version is the tests' own. A command the test
//! does not know how to run or check fails it. The manual's PostgreSQL and nginx recipes run in
//! `docs_recipes`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use onence_mcp::mcp::OrderServer;
use serde_json::Value;

#[cfg(unix)]
use crate::common::Group;
use crate::common::markdown::{
    self, DOCUMENTS, OPERATIONS, ShellCommand, assignment, shell_commands, simple_commands,
};
use crate::common::{self, Stderr};

const README: &str = DOCUMENTS[0].1;
const SKILL: &str = include_str!("../skills/1nce-orders/SKILL.md");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

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

/// The first column of a document's tables, where it is code.
fn first_column(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(cell, _)| cell))
}

async fn output(args: &[&str]) -> String {
    let out = common::command(args, &[]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{args:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn help_readme_manual_and_skill_name_exactly_the_tools() {
    let tools = tools();
    assert_eq!(tools.len(), 5);
    let help = output(&["--help"]).await;
    let call_help = output(&["call", "--help"]).await;
    let table = |text: &str| -> BTreeSet<String> {
        first_column(text)
            .filter(|name| name.contains('_') && !name.starts_with('-'))
            .map(str::to_owned)
            .collect()
    };
    for (what, named) in [
        ("--help", tool_like_words(&help)),
        ("call --help", tool_like_words(&call_help)),
        ("README's tool table", table(README)),
        ("README", tool_like_words(README)),
        ("the manual's tool table", table(OPERATIONS)),
        ("docs/operations.md", tool_like_words(OPERATIONS)),
        ("SKILL.md", tool_like_words(SKILL)),
    ] {
        assert_eq!(named, tools, "{what} names exactly the tools of tools/list");
    }
    let contributing = tool_like_words(DOCUMENTS[2].1);
    assert!(
        contributing.is_subset(&tools),
        "CONTRIBUTING.md names no tool that does not exist: {contributing:?}"
    );
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

/// Every flag of the command line: `--help`'s and each subcommand's.
async fn flags_of_help() -> BTreeSet<String> {
    let help = output(&["--help"]).await;
    let mut texts = vec![help.clone()];
    // The subcommands: the lines of the "Commands:" section.
    let commands: Vec<String> = help
        .split("Commands:")
        .nth(1)
        .map(|rest| {
            rest.lines()
                .skip(1)
                .take_while(|l| l.starts_with("  "))
                // A command's own line; its description continues on indented lines.
                .filter(|l| !l.starts_with("   "))
                .filter_map(|l| l.split_whitespace().next())
                .filter(|c| *c != "help")
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    assert!(
        commands.iter().any(|c| c == "call"),
        "the subcommands were read: {commands:?}"
    );
    for command in &commands {
        texts.push(output(&[command, "--help"]).await);
    }
    texts
        .iter()
        .flat_map(|t| t.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_owned)
        .collect()
}

/// The manual's configuration table and `--help` name the same flags: none documented that does
/// not exist, none that exists undocumented.
#[tokio::test]
async fn configuration_table_has_every_flag_of_help() {
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
    let table = markdown::section(OPERATIONS, "## Configuration");
    let first_column: BTreeSet<String> = table
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
        "the configuration table of docs/operations.md and --help name the same flags"
    );
}

/// README is a front door: short, with exactly two commands to start with (the server on the
/// sandbox, the tests), the test command the one CI runs, and no promise of packages that do
/// not exist yet.
#[test]
fn readme_is_a_front_door() {
    let lines = README.lines().count();
    assert!(
        (150..=230).contains(&lines),
        "README is about 200 lines, not {lines}"
    );
    let first = markdown::blocks(README)
        .into_iter()
        .find(|b| b.lang == "sh")
        .expect("README has a shell block");
    let commands: Vec<ShellCommand> = shell_commands(&format!("```sh\n{}```\n", first.body));
    let commands: Vec<&str> = commands.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(
        commands.len(),
        2,
        "README's first block has exactly two commands: {commands:?}"
    );
    assert!(
        commands[0].starts_with("cargo run --release -- --sandbox "),
        "the first runs the server on the sandbox: {}",
        commands[0]
    );
    assert_eq!(commands[1], "cargo test");
    let ci = std::fs::read_to_string(format!("{ROOT}/.ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == commands[1]),
        ".ci/run runs README's test command {:?}",
        commands[1]
    );
    assert!(
        README.contains("installs from source"),
        "README says how it installs today"
    );
    for not_yet in ["cargo install onence-mcp", "releases/latest"] {
        assert!(
            !README.contains(not_yet),
            "README promises {not_yet:?}, which does not exist yet"
        );
    }
}

/// Every link of the three documents to a heading finds it, and every link to a file of the
/// repository finds the file.
#[test]
fn links_find_their_headings_and_files() {
    let mut checked = 0;
    for (name, text) in DOCUMENTS {
        let dir = Path::new(name).parent().unwrap();
        let mut rest = text;
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            let target = &rest[..rest.find(')').unwrap()];
            if target.starts_with("http") || target.contains(' ') {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
            let path = if file.is_empty() {
                PathBuf::from(name)
            } else {
                dir.join(file)
            };
            let full = Path::new(ROOT).join(&path);
            assert!(
                full.exists(),
                "{name} links to {target}, which does not exist"
            );
            if !anchor.is_empty() {
                let target_text = std::fs::read_to_string(&full).unwrap();
                assert!(
                    markdown::anchors(&target_text).iter().any(|a| a == anchor),
                    "{name} links to {target}: no such heading in {}",
                    path.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 30, "the links were read: {checked}");
}

/// The JSON examples (client configurations) are JSON.
#[test]
fn json_examples_parse() {
    let mut parsed = 0;
    for (name, text) in DOCUMENTS {
        for block in markdown::blocks(text).iter().filter(|b| b.lang == "json") {
            serde_json::from_str::<Value>(&block.body).unwrap_or_else(|e| {
                panic!(
                    "{name}:{}: the JSON example does not parse: {e}",
                    block.line
                )
            });
            parsed += 1;
        }
    }
    assert!(parsed >= 3, "{parsed}");
}

/// Options of the MCP Inspector (not of `1nce-mcp`) that follow `1nce-mcp`'s own arguments on an
/// `npx @modelcontextprotocol/inspector` line.
const INSPECTOR_OPTIONS: [&str; 7] = [
    "--cli",
    "--method",
    "--tool-name",
    "--tool-args-json",
    "--header",
    "--protocol-era",
    "--transport",
];

/// What happened to the commands of one document.
#[derive(Default)]
struct Tally {
    ran: Vec<String>,
    served: usize,
    checked: usize,
}

/// Runs or checks the commands of one document, in order, in a scratch directory of its own with
/// one state directory, so that what an earlier command wrote (a file, a preview's token) is
/// there for a later one.
struct Reader {
    document: &'static str,
    dir: PathBuf,
    env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    flags: BTreeSet<String>,
    inspector_version: String,
    /// Shell variables set by earlier commands (`export X=…`, `X=… command`).
    variables: BTreeSet<String>,
    /// The confirmation token of the latest preview, for a later `"ct_…"`.
    token: Option<String>,
    /// Whether commands run with stdin held open (as an agent's tool leaves it) rather than
    /// closed: a command that waited for stdin would then fail instead of ending.
    hold_stdin: bool,
    tally: Tally,
}

impl Reader {
    fn new(document: &'static str, flags: &BTreeSet<String>, hold_stdin: bool) -> Reader {
        let dir = common::temp_dir("docs");
        let bin_dir = common::binary().parent().unwrap().to_path_buf();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        // The environment the tests give the binary (no ONCE_* of the machine's, state in
        // scratch space), with the binary first on PATH, HOME in the scratch directory.
        let mut base = common::command(&[], &[]);
        let mut env: Vec<_> = base
            .as_std_mut()
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
            .collect();
        env.push(("PATH".into(), path.into()));
        env.push(("HOME".into(), dir.clone().into()));
        let setup = std::fs::read_to_string(format!("{ROOT}/scripts/interop-setup")).unwrap();
        let inspector_version = setup
            .lines()
            .find_map(|l| l.strip_prefix("inspector_version="))
            .expect("scripts/interop-setup pins the Inspector")
            .to_owned();
        Reader {
            document,
            dir,
            env,
            flags: flags.clone(),
            inspector_version,
            variables: ["HOME", "PATH"].map(str::to_owned).into(),
            token: None,
            hold_stdin,
            tally: Tally::default(),
        }
    }

    fn at(&self, command: &ShellCommand) -> String {
        format!("{}:{}: {}", self.document, command.line, command.text)
    }

    async fn read(&mut self, command: &ShellCommand) {
        let at = self.at(command);
        // `cargo run --release --` in README stands for the binary it builds.
        let text = ["cargo run --release -- ", "cargo run -q --release -- "]
            .iter()
            .find_map(|prefix| command.text.strip_prefix(prefix))
            .map(|rest| format!("1nce-mcp {rest}"))
            .unwrap_or_else(|| command.text.clone());
        let simple = simple_commands(&text);
        self.check_variables(&text, &at);
        for words in &simple {
            self.check_simple(words, &at);
        }
        for words in &simple {
            for word in words.iter().take_while(|w| assignment(w).is_some()) {
                self.variables.insert(assignment(word).unwrap().to_owned());
            }
            if words[0] == "export" {
                for word in &words[1..] {
                    let name = assignment(word).unwrap_or(word);
                    self.variables.insert(name.to_owned());
                }
            }
        }
        if runs_offline(&simple) {
            if serves(&simple) {
                self.serve(&text, &at).await;
            } else {
                self.run(&text, &at).await;
            }
        } else {
            self.tally.checked += 1;
        }
    }

    /// Each `$NAME` was set by an earlier command (or the same one), and each `$(cat FILE)`
    /// reads a file an earlier command wrote here.
    fn check_variables(&self, text: &str, at: &str) {
        let mut rest = text;
        while let Some(i) = rest.find('$') {
            rest = &rest[i + 1..];
            if let Some(inner) = rest.strip_prefix("(cat ") {
                let file = &inner[..inner.find(')').unwrap()];
                assert!(
                    self.dir.join(file).exists(),
                    "{at}\nreads {file}, which no earlier command of {} wrote",
                    self.document
                );
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name.is_empty() {
                continue;
            }
            let set_here = simple_commands(text)
                .iter()
                .flatten()
                .any(|w| assignment(w) == Some(name.as_str()));
            assert!(
                set_here || self.variables.contains(&name),
                "{at}\nreads ${name}, which nothing before it in {} sets: as pasted, it is empty",
                self.document
            );
        }
    }

    /// The checks of one simple command, whether or not it runs here. Fails on a program the
    /// test does not know.
    fn check_simple(&self, words: &[String], at: &str) {
        let words: Vec<&str> = words
            .iter()
            .map(String::as_str)
            .skip_while(|w| assignment(w).is_some())
            .collect();
        let Some((&program, args)) = words.split_first() else {
            return;
        };
        match program {
            "1nce-mcp" => self.check_flags(args, at),
            "claude" => {
                assert_eq!(args.get(..2), Some(&["mcp", "add"][..]), "{at}");
                if let Some(i) = args.iter().position(|a| *a == "--") {
                    assert_eq!(args.get(i + 1), Some(&"1nce-mcp"), "{at}");
                    self.check_flags(&args[i + 2..], at);
                }
            }
            "npx" => {
                let package = args
                    .iter()
                    .find(|a| a.starts_with("@modelcontextprotocol/inspector"))
                    .unwrap_or_else(|| panic!("{at}\nan npx command of another package"));
                assert_eq!(
                    package.strip_prefix("@modelcontextprotocol/inspector@"),
                    Some(self.inspector_version.as_str()),
                    "{at}\npins the Inspector the tests use (scripts/interop-setup), so that an \
                     older one cached by npx is not run"
                );
                if let Some(i) = args.iter().position(|a| *a == "1nce-mcp") {
                    let own: Vec<&str> = args[i + 1..]
                        .iter()
                        .copied()
                        .take_while(|a| !INSPECTOR_OPTIONS.contains(a))
                        .collect();
                    self.check_flags(&own, at);
                }
            }
            "cargo" => self.check_cargo(args, at),
            "eval" => {
                let script = args[0]
                    .strip_prefix("$(")
                    .and_then(|s| s.strip_suffix(')'))
                    .unwrap_or_else(|| panic!("{at}"));
                assert!(Path::new(ROOT).join(script).is_file(), "{at}");
            }
            p if p.starts_with("scripts/") => {
                assert!(Path::new(ROOT).join(p).is_file(), "{at}\nno such script");
            }
            // Run here when they can; nothing of this project's to check in them otherwise.
            "export" | "echo" | "cat" | "head" | "openssl" | "umask" | "sha256sum" | "shasum" => {}
            other => panic!(
                "{at}\ntests/docs.rs does not know how to run or check `{other}`: teach it, or \
                 write the command another way"
            ),
        }
    }

    /// Every `--flag` among a `1nce-mcp` command's arguments exists.
    fn check_flags(&self, args: &[&str], at: &str) {
        for arg in args.iter().filter(|a| a.starts_with("--") && a.len() > 2) {
            let flag = arg.split_once('=').map_or(*arg, |(f, _)| f);
            assert!(
                self.flags.contains(flag),
                "{at}\n1nce-mcp has no flag {flag} (not in --help or a subcommand's --help)"
            );
        }
    }

    fn check_cargo(&self, args: &[&str], at: &str) {
        let value = |flag: &str| {
            args.iter()
                .position(|a| *a == flag)
                .map(|i| args[i + 1])
                .unwrap_or_else(|| panic!("{at}\n{flag} needs a value"))
        };
        match args[0] {
            "test" if args.contains(&"--test") => {
                assert_eq!(value("--test"), "integration", "{at}")
            }
            "bench" if args.contains(&"--bench") => {
                let bench = value("--bench");
                assert!(
                    Path::new(ROOT).join(format!("benches/{bench}.rs")).exists(),
                    "{at}"
                );
            }
            "run" if args.contains(&"--example") => {
                let example = value("--example");
                assert!(
                    Path::new(ROOT)
                        .join(format!("examples/{example}.rs"))
                        .exists(),
                    "{at}"
                );
            }
            "install" if args.contains(&"--path") => assert_eq!(value("--path"), ".", "{at}"),
            "install" | "uninstall" => {
                assert!(args.contains(&env!("CARGO_PKG_NAME")), "{at}");
            }
            "test" | "bench" | "build" | "publish" => {}
            other => panic!("{at}\ncargo {other}: not a command the documents should give"),
        }
    }

    /// Runs a command that ends by itself, as a shell runs it.
    async fn run(&mut self, text: &str, at: &str) {
        let text = match text.find("ct_…") {
            Some(_) => {
                let token = self.token.clone().unwrap_or_else(|| {
                    panic!(
                        "{at}\nconfirms a token no earlier command of {} previewed",
                        self.document
                    )
                });
                text.replace("ct_…", &token)
            }
            None => text.to_owned(),
        };
        let stdin = if self.hold_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        let mut child = self.shell(&text).stdin(stdin).spawn().expect("run sh");
        let stdin = child.stdin.take();
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("{at}\ndid not end within a minute (waiting for stdin?)"))
            .unwrap();
        drop(stdin);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{at}\nfailed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if let Ok(json) = serde_json::from_str::<Value>(&stdout)
            && let Some(token) = json["confirmation_token"].as_str()
        {
            self.token = Some(token.to_owned());
        }
        self.tally.ran.push(format!("{text}\n=> {stdout}"));
    }

    /// Starts a server command, waits for its ready line and stops it. The port of the example
    /// is made free-to-pick.
    #[cfg(unix)]
    async fn serve(&mut self, text: &str, at: &str) {
        let text = text.replace(":8080", ":0");
        // The shell starts the server: killing the shell alone left the server running after the
        // tests, so the shell leads a process group and the group is killed.
        let mut shell = self.shell(&text);
        shell.stdin(Stdio::null());
        let mut server = Group::spawn(shell);
        let stderr = Stderr::capture(server.child.stderr.take().unwrap());
        let waited = tokio::time::timeout(common::PATIENCE, stderr.wait_for(" ready on ")).await;
        assert!(waited.is_ok(), "{at}\nnever said it was ready");
        server.kill();
        // Every process that held the shell's stderr is gone, the server with it.
        stderr.until_closed().await;
        self.tally.served += 1;
    }

    fn shell(&self, text: &str) -> tokio::process::Command {
        let mut shell = tokio::process::Command::new("sh");
        shell
            .arg("-c")
            .arg(text)
            .current_dir(&self.dir)
            .env_clear()
            .envs(self.env.iter().cloned())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        shell
    }
}

/// Whether a command can run here as written: only programs of this machine's base system and
/// `1nce-mcp` against the sandbox (or offline: `tools`), no placeholder (`…`) but a preview's
/// token, no database or authorization server to reach.
fn runs_offline(simple: &[Vec<String>]) -> bool {
    simple.iter().all(|words| {
        let words: Vec<&str> = words
            .iter()
            .map(String::as_str)
            .skip_while(|w| assignment(w).is_some())
            .collect();
        let Some(&program) = words.first() else {
            return true;
        };
        let all = words.join(" ");
        let placeholder = all.replace("ct_…", "").contains('…');
        match program {
            "1nce-mcp" => {
                let offline = words.contains(&"--sandbox")
                    || words
                        .get(1)
                        .is_some_and(|w| *w == "tools" || *w == "--help");
                let reaches_out = ["--state-url", "--oauth-issuer"]
                    .iter()
                    .any(|f| words.contains(f));
                offline && !reaches_out && !placeholder
            }
            "echo" | "cat" | "head" | "openssl" | "umask" => !placeholder,
            _ => false,
        }
    })
}

/// Whether a command starts a server (which runs until stopped).
fn serves(simple: &[Vec<String>]) -> bool {
    simple.iter().any(|words| {
        words.first().is_some_and(|p| p == "1nce-mcp")
            && words.iter().any(|w| w == "--http")
            && !words
                .iter()
                .any(|w| ["call", "check", "tools", "mirror"].contains(&w.as_str()))
    })
}

#[cfg(unix)] // a shell runs each command
#[tokio::test]
async fn every_shell_command_of_the_documents_runs_or_is_checked() {
    let flags = flags_of_help().await;
    let mut tallies = BTreeMap::new();
    for (document, text) in DOCUMENTS {
        // stdin held open and silent, as an agent's shell tool leaves it: README's first command
        // calls list_orders without arguments, which a `call` that read a piped stdin unasked
        // would wait on for ever (issue 28, item 4).
        let mut reader = Reader::new(document, &flags, true);
        for command in shell_commands(text) {
            reader.read(&command).await;
        }
        tallies.insert(document, reader.tally);
    }
    let ran = |document: &str| tallies[document].ran.join("\n");
    // README: the sandbox's orders, a preview, and the order its token places.
    let readme = ran("README.md");
    for expected in [
        "1nce-mcp --sandbox call list_orders\n",
        "\"status\": \"confirmation_required\"",
        "\"status\": \"placed\"",
    ] {
        assert!(
            readme.contains(expected),
            "README ran {expected:?}:\n{readme}"
        );
    }
    // The manual: check, each way of passing arguments, the schemas, an HTTP server, a token
    // file, the local certificate authority and the proxy's certificate.
    let manual = ran("docs/operations.md");
    for expected in [
        "--sandbox check",
        "call list_orders --args",
        "call get_order --args-file -",
        "call create_order --args-file order.json",
        "1nce-mcp tools",
        "openssl rand -hex 32 > 1nce-mcp.token",
        "-out ca.crt",
        "-out mcp.example.com.crt",
    ] {
        assert!(
            manual.contains(expected),
            "the manual ran {expected:?}:\n{manual}"
        );
    }
    assert_eq!(
        tallies["docs/operations.md"].served, 1,
        "the HTTP sandbox server of the manual was started"
    );
    let mut total = (0, 0);
    for (document, tally) in &tallies {
        eprintln!(
            "docs: {document}: {} commands run as written ({} of them servers started and \
             stopped), {} checked",
            tally.ran.len() + tally.served,
            tally.served,
            tally.checked
        );
        total.0 += tally.ran.len() + tally.served;
        total.1 += tally.checked;
    }
    eprintln!("docs: {} commands run, {} checked", total.0, total.1);
}

/// The Agent Skill's commands run against the sandbox (`--sandbox` added), each with its
/// arguments given, so that none waits for stdin an agent's tool leaves open.
#[cfg(unix)]
#[tokio::test]
async fn skill_commands_run_against_the_sandbox() {
    let flags = flags_of_help().await;
    let mut reader = Reader::new("skills/1nce-orders/SKILL.md", &flags, true);
    let commands = shell_commands(SKILL);
    assert!(commands.len() >= 6, "{commands:?}");
    for command in commands {
        assert!(
            command.text.starts_with("1nce-mcp call ")
                && (command.text.contains(" --args ") || command.text.contains(" --args-file ")),
            "SKILL.md:{}: a call with its arguments given: {}",
            command.line,
            command.text
        );
        let sandboxed = ShellCommand {
            line: command.line,
            text: command.text.replacen("1nce-mcp ", "1nce-mcp --sandbox ", 1),
        };
        reader.read(&sandboxed).await;
    }
    let ran = reader.tally.ran.join("\n");
    assert!(ran.contains("\"status\": \"placed\""), "{ran}");
}
