//! `1nce-mcp call` and `1nce-mcp tools`: one-shot tool calls from the shell, the way an Agent
//! Skill runs them, against a sandbox the test controls. Confirmation tokens must cross the
//! process boundary: a preview in one process, the confirmation in the next.

use std::path::Path;
use std::process::Stdio;

use onence_mcp::sandbox::Sandbox;
use serde_json::{Value, json};

use crate::common;
use crate::common::{Run, command, posts, sandbox_env, temp_dir, with_token};

/// Runs the binary once against `sandbox` with the given state directory.
async fn run(sandbox: &Sandbox, state: &Path, args: &[&str], stdin: Option<&str>) -> Run {
    run_with(sandbox, state, args, stdin, &[]).await
}

/// [`run`], with `extra` set in the environment as well.
async fn run_with(
    sandbox: &Sandbox,
    state: &Path,
    args: &[&str],
    stdin: Option<&str>,
    extra: &[(&str, &str)],
) -> Run {
    let url = sandbox.base_url();
    let state = state.to_str().unwrap();
    let mut env = sandbox_env(&url).to_vec();
    env.push(("ONCE_STATE_DIR", state));
    env.extend_from_slice(extra);
    Run::of(command(args, &env), stdin).await
}

/// `1nce-mcp call create_order --args ARGS`, once.
async fn create_order(sandbox: &Sandbox, state: &Path, args: &str) -> Run {
    run(
        sandbox,
        state,
        &["call", "create_order", "--args", args],
        None,
    )
    .await
}

const ORDER: &str =
    r#"{"products": [{"product_id": 1001, "quantity": 4}], "customer_reference": "cli"}"#;

/// [`ORDER`] with `token`, which may be made up; a real preview's is [`Run::confirming`].
fn confirm_args(token: &str) -> String {
    with_token(serde_json::from_str(ORDER).unwrap(), &json!(token)).to_string()
}

#[tokio::test]
async fn every_tool_runs_through_call_with_json_on_stdout() {
    let sandbox = Sandbox::start().await.unwrap();
    let state = temp_dir("state");

    let list = run(
        &sandbox,
        &state,
        &[
            "call",
            "list_orders",
            "--args",
            r#"{"page_size": 4, "detail": "full"}"#,
        ],
        None,
    )
    .await;
    assert_eq!(list.code, 0, "{}", list.stderr);
    let page = list.json();
    assert_eq!(page["orders"].as_array().unwrap().len(), 4);
    assert!(
        list.stderr.contains("Page 1 of 7"),
        "summary on stderr: {}",
        list.stderr
    );

    // Arguments from stdin (asked for with `--args-file -`) and from a file work the same.
    let number = page["orders"][2]["order_number"].as_u64().unwrap();
    let get = run(
        &sandbox,
        &state,
        &["call", "get_order", "--args-file", "-"],
        Some(&format!(r#"{{"order_number": {number}}}"#)),
    )
    .await;
    assert_eq!(get.code, 0, "{}", get.stderr);
    assert_eq!(get.json(), page["orders"][2]);
    let file = state.join("args.json");
    std::fs::write(&file, format!(r#"{{"order_number": {number}}}"#)).unwrap();
    let from_file = run(
        &sandbox,
        &state,
        &["call", "get_order", "--args-file", file.to_str().unwrap()],
        None,
    )
    .await;
    assert_eq!(from_file.json(), page["orders"][2]);

    // Preview in one process, confirmation in another.
    let preview = create_order(&sandbox, &state, ORDER).await;
    let confirm = preview.confirming(ORDER);
    assert_eq!(preview.json()["status"], "confirmation_required");
    assert_eq!(posts(&sandbox), 0);
    let placed = create_order(&sandbox, &state, &confirm).await;
    assert_eq!(placed.code, 0, "{}", placed.stderr);
    let placed = placed.json();
    assert_eq!(placed["status"], "placed");
    assert_eq!(posts(&sandbox), 1);

    // A third process: the token is spent and names the order.
    let again = create_order(&sandbox, &state, &confirm).await;
    assert_eq!(again.code, 1);
    assert!(again.stdout.is_empty());
    assert!(
        again
            .stderr
            .contains(&format!("placed order {}", placed["order_number"])),
        "{}",
        again.stderr
    );
    assert_eq!(posts(&sandbox), 1);
}

/// `call` reads stdin only when asked to (`--args-file -`): `sleep 8 | 1nce-mcp call …`, or an
/// agent's tool that leaves stdin open, must not hold up a call that has no arguments.
#[tokio::test]
async fn call_reads_stdin_only_when_asked() {
    let state = temp_dir("state");
    let env = [("ONCE_STATE_DIR", state.to_str().unwrap())];
    let mut cmd = command(&["--sandbox", "call", "list_products"], &env);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    // The write end stays open and silent until the call has answered, as `sleep 8 |` keeps it.
    let held_open = child.stdin.take().unwrap();
    let out = tokio::time::timeout(common::PATIENCE, child.wait_with_output())
        .await
        .expect("call list_products answered while its stdin stayed open")
        .unwrap();
    drop(held_open);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        answer["products"].as_array().is_some_and(|p| !p.is_empty()),
        "{answer}"
    );

    // What is piped in without `--args-file -` is not the arguments: the call gets {}.
    let sandbox = Sandbox::start().await.unwrap();
    let piped = run(
        &sandbox,
        &state,
        &["call", "get_order"],
        Some(r#"{"order_number": 2000000001}"#),
    )
    .await;
    assert_eq!(piped.code, 1, "{}", piped.stderr);
    assert!(piped.stderr.contains("order_number"), "{}", piped.stderr);
    let asked = run(
        &sandbox,
        &state,
        &["call", "get_order", "--args-file", "-"],
        Some(r#"{"order_number": 2000000001}"#),
    )
    .await;
    assert_eq!(asked.code, 0, "{}", asked.stderr);
    assert_eq!(asked.json()["order_number"], 2000000001u64);
}

#[tokio::test]
async fn exit_status_tells_tool_errors_from_bad_usage() {
    let sandbox = Sandbox::start().await.unwrap();
    let state = temp_dir("state");
    let missing = run(
        &sandbox,
        &state,
        &["call", "get_order", "--args", r#"{"order_number": 77}"#],
        None,
    )
    .await;
    assert_eq!(missing.code, 1);
    assert!(missing.stdout.is_empty());
    assert!(
        missing.stderr.contains("No order 77 exists"),
        "{}",
        missing.stderr
    );

    let invalid = run(
        &sandbox,
        &state,
        &["call", "list_orders", "--args", r#"{"page_size": 50}"#],
        None,
    )
    .await;
    assert_eq!(invalid.code, 1, "invalid tool arguments are a tool error");
    assert!(
        invalid.stderr.contains("page_size must be"),
        "{}",
        invalid.stderr
    );

    for (args, needle) in [
        (
            vec!["call", "list_orders", "--args", "{not json"],
            "not valid JSON",
        ),
        (
            vec!["call", "list_orders", "--args", "[1]"],
            "must be a JSON object",
        ),
        (
            vec!["call", "delete_everything"],
            "unknown tool \"delete_everything\"",
        ),
        (vec!["call"], "Usage"),
        (
            vec![
                "call",
                "list_orders",
                "--args-file",
                "/nonexistent/args.json",
            ],
            "cannot read --args-file",
        ),
        (
            vec!["call", "list_orders", "--args-file", "/dev/zero"],
            "larger than 1 MiB",
        ),
    ] {
        let out = run(&sandbox, &state, &args, None).await;
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty());
    }
    assert!(
        sandbox
            .requests()
            .iter()
            .all(|r| r.path != "/v1/orders" || r.method == "GET")
    );
}

/// What stops a command says which setting stopped it, and where the fix goes: a tool turned
/// off names the flag (and variable) that did it; a bad value from the environment names the
/// variable, one from the command line its flag; a secret tried as a flag says to use the
/// environment; refused credentials are one message, not log lines before it.
#[tokio::test]
async fn messages_name_the_setting_that_stopped_the_command() {
    let sandbox = Sandbox::start().await.unwrap();
    let state = temp_dir("state");
    let order = ["call", "create_order", "--args", ORDER];
    for (args, env, says) in [
        (
            [&["--read-only"][..], &order].concat(),
            vec![],
            "create_order is turned off by --read-only (or ONCE_READ_ONLY)",
        ),
        (
            order.to_vec(),
            vec![("ONCE_READ_ONLY", "1")],
            "create_order is turned off by --read-only (or ONCE_READ_ONLY)",
        ),
        (
            vec!["--tools", "list_orders", "call", "get_order"],
            vec![],
            "get_order is turned off by --tools (or ONCE_TOOLS)",
        ),
        (
            vec!["call", "list_orders"],
            vec![("ONCE_MAX_QUANTITY", "abc")],
            "invalid value 'abc' for ONCE_MAX_QUANTITY (the environment variable of --max-quantity)",
        ),
        (
            vec!["--max-quantity", "abc", "call", "list_orders"],
            vec![("ONCE_MAX_QUANTITY", "5")],
            "invalid value 'abc' for '--max-quantity <N>'",
        ),
        (
            vec!["call", "list_orders"],
            vec![("ONCE_CONFIRMATION_TTL", "48h")],
            "ONCE_CONFIRMATION_TTL (the environment variable of --confirmation-ttl) must be between 1s and 1day",
        ),
        (
            vec!["--client-secret", "s3cr3t-value", "call", "list_orders"],
            vec![],
            "set ONCE_CLIENT_SECRET in the environment",
        ),
    ] {
        let out = run_with(&sandbox, &state, &args, None, &env).await;
        assert_eq!(out.code, 2, "{args:?} {env:?}: {}", out.stderr);
        assert!(
            out.stderr.contains(says),
            "{args:?} {env:?}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("unknown tool"), "{}", out.stderr);
        assert!(!out.stderr.contains("s3cr3t-value"), "{}", out.stderr);
        assert!(out.stdout.is_empty());
    }
    assert_eq!(posts(&sandbox), 0);

    // Wrong credentials: the message that says what to do, and nothing before it.
    let out = run_with(
        &sandbox,
        &state,
        &["call", "list_orders"],
        None,
        &[("ONCE_CLIENT_SECRET", "not-the-secret")],
    )
    .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with("1nce-mcp: 1NCE refused the API credentials"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("Check ONCE_CLIENT_ID and ONCE_CLIENT_SECRET")
    );
    assert!(!out.stderr.contains("WARN"), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

/// A launcher that writes a settings form into the environment (Claude Desktop's extension,
/// see packaging/mcpb) sets a variable to "" for every field left blank: blank is no setting.
#[tokio::test]
async fn blank_environment_variables_count_as_not_set() {
    let sandbox = Sandbox::start().await.unwrap();
    let state = temp_dir("state");
    let blank = [
        "ONCE_READ_ONLY",
        "ONCE_REQUIRE_HUMAN_APPROVAL",
        "ONCE_MAX_QUANTITY",
        "ONCE_MAX_ORDER_VALUE",
        "ONCE_ALLOWED_PRODUCTS",
        "ONCE_SPEND_LIMIT",
        "ONCE_SPEND_LIMIT_PER_PERSON",
        "ONCE_AUDIT_LOG",
        "ONCE_RATE_LIMIT",
        "ONCE_CONFIRMATION_TTL",
    ]
    .map(|name| (name, ""));
    let out = run_with(
        &sandbox,
        &state,
        &["call", "create_order", "--args", ORDER],
        None,
        &blank,
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.json()["confirmation_token"].is_string(),
        "{}",
        out.stdout
    );

    // Blank credentials are missing credentials, named as such.
    let out = run_with(
        &sandbox,
        &state,
        &["call", "list_orders"],
        None,
        &[("ONCE_CLIENT_ID", ""), ("ONCE_CLIENT_SECRET", "")],
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("ONCE_CLIENT_ID and ONCE_CLIENT_SECRET not set"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn tools_prints_the_tool_list_with_schemas() {
    let output = command(&["tools"], &[]).output().await.unwrap();
    assert!(output.status.success());
    let tools: Value = serde_json::from_slice(&output.stdout).unwrap();
    let names: Vec<&str> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, common::ALL_TOOLS);
    for tool in tools.as_array().unwrap() {
        assert_eq!(tool["inputSchema"]["type"], "object");
        assert_eq!(tool["outputSchema"]["type"], "object");
    }
    // Read-only: what a read-only server lists, without create_order.
    let output = command(&["--read-only", "tools"], &[])
        .output()
        .await
        .unwrap();
    let tools: Value = serde_json::from_slice(&output.stdout).unwrap();
    let names: Vec<&str> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["find_orders", "get_order", "list_orders", "list_products"]
    );
}

#[tokio::test]
async fn tampered_expired_and_mismatched_tokens_post_nothing() {
    let sandbox = Sandbox::start().await.unwrap();
    let state = temp_dir("state");
    let preview = create_order(&sandbox, &state, ORDER).await.json();
    let token = preview["confirmation_token"].as_str().unwrap().to_owned();

    // One character changed anywhere breaks the signature.
    let mut tampered = token.clone().into_bytes();
    let i = tampered.len() / 3;
    tampered[i] = if tampered[i] == b'x' { b'y' } else { b'x' };
    let tampered = String::from_utf8(tampered).unwrap();
    let out = create_order(&sandbox, &state, &confirm_args(&tampered)).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("not valid"), "{}", out.stderr);

    // Another state directory means another key.
    let elsewhere = temp_dir("state");
    let out = create_order(&sandbox, &elsewhere, &confirm_args(&token)).await;
    assert!(out.stderr.contains("not valid"), "{}", out.stderr);

    // A change is refused naming what changed.
    let mut changed: Value = serde_json::from_str(&confirm_args(&token)).unwrap();
    changed["products"][0]["quantity"] = json!(40);
    let out = create_order(&sandbox, &state, &changed.to_string()).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("differs from the preview this confirmation_token approved (the quantities changed): nothing was ordered"),
        "{}",
        out.stderr
    );
    let mut changed: Value = serde_json::from_str(&confirm_args(&token)).unwrap();
    changed["customer_reference"] = json!("cli-2");
    changed["products"][0]["product_id"] = json!(1002);
    let out = create_order(&sandbox, &state, &changed.to_string()).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("(the products and the customer reference changed)"),
        "{}",
        out.stderr
    );

    // Expiry across processes (the rule itself is tested with an injected clock in
    // orders::tokens): a token of its own, so nothing else can happen to it first.
    let short = run(
        &sandbox,
        &state,
        &[
            "--confirmation-ttl",
            "2s",
            "call",
            "create_order",
            "--args",
            ORDER,
        ],
        None,
    )
    .await
    .confirming(ORDER);
    // Not waiting for a signal: outliving the token's 2 s lifetime is the behaviour under test.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let out = create_order(&sandbox, &state, &short).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("expired at"), "{}", out.stderr);
    assert_eq!(posts(&sandbox), 0);
}

#[tokio::test]
async fn a_sandbox_token_never_orders_live_and_accounts_do_not_mix() {
    let live = Sandbox::start().await.unwrap();
    let state = temp_dir("state");
    // A preview on the built-in sandbox...
    let preview = common::run(
        None,
        &["--sandbox", "call", "create_order", "--args", ORDER],
        &[("ONCE_STATE_DIR", state.to_str().unwrap())],
    )
    .await;
    // ...confirmed by a process that talks to "1NCE" with the same state directory.
    let out = create_order(&live, &state, &preview.confirming(ORDER)).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("not valid"), "{}", out.stderr);
    assert_eq!(posts(&live), 0);
    // The sandbox's audit trail is its own, and says so.
    let audit = std::fs::read_to_string(state.join("sandbox").join("audit.jsonl")).unwrap();
    assert!(audit.contains(r#""environment":"sandbox""#), "{audit}");
    assert!(!audit.contains(r#""environment":"live""#), "{audit}");
    let live_audit = std::fs::read_to_string(state.join("audit.jsonl")).unwrap();
    assert!(live_audit.contains(r#""event":"refused""#), "{live_audit}");
    assert!(
        !live_audit.contains(r#""environment":"sandbox""#),
        "{live_audit}"
    );

    // A process for another API cannot even start on the same state directory: it belongs to
    // the first one's account (the token would be refused as well, see `orders::tokens`).
    let other = Sandbox::start().await.unwrap();
    let confirm = create_order(&live, &state, ORDER).await.confirming(ORDER);
    let out = create_order(&other, &state, &confirm).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("belongs to the 1NCE account of client id"),
        "{}",
        out.stderr
    );
    assert_eq!(posts(&other), 0);
    assert_eq!(posts(&live), 0);
}

#[tokio::test]
async fn an_identical_order_sent_lately_is_named_in_the_next_preview() {
    let sandbox = Sandbox::start().await.unwrap();
    let state = temp_dir("state");
    let first = create_order(&sandbox, &state, ORDER).await;
    assert!(first.json().get("identical_recent").is_none(), "{first:?}");
    let placed = create_order(&sandbox, &state, &first.confirming(ORDER))
        .await
        .json();
    let number = placed["order_number"].as_u64().unwrap();
    let again = create_order(&sandbox, &state, ORDER).await;
    let preview = again.json();
    assert_eq!(preview["identical_recent"][0]["order_number"], number);
    assert_eq!(preview["identical_recent"][0]["outcome"], "placed");
    let next_step = preview["next_step"].as_str().unwrap();
    assert!(
        next_step.starts_with("WARNING: an identical order")
            && next_step.contains(&format!("order {number} placed at")),
        "{next_step}"
    );
    // A different order is not identical.
    let other =
        r#"{"products": [{"product_id": 1001, "quantity": 5}], "customer_reference": "cli"}"#;
    let preview = create_order(&sandbox, &state, other).await.json();
    assert!(preview.get("identical_recent").is_none(), "{preview}");
}

#[tokio::test]
async fn two_concurrent_confirmations_place_exactly_one_order() {
    let sandbox = Sandbox::start().await.unwrap();
    let state = temp_dir("state");
    for _ in 0..3 {
        let args = create_order(&sandbox, &state, ORDER)
            .await
            .confirming(ORDER);
        let argv = ["call", "create_order", "--args", args.as_str()];
        let (a, b) = tokio::join!(
            run(&sandbox, &state, &argv, None),
            run(&sandbox, &state, &argv, None),
        );
        let mut codes = [a.code, b.code];
        codes.sort();
        assert_eq!(codes, [0, 1], "a: {}\nb: {}", a.stderr, b.stderr);
        let loser = if a.code == 1 { &a } else { &b };
        assert!(
            loser.stderr.contains("being used by another call")
                || loser.stderr.contains("already used"),
            "{}",
            loser.stderr
        );
    }
    assert_eq!(posts(&sandbox), 3, "one POST per approved preview");
}

/// Runs the binary with a stdout whose reader is already gone, as `… | head` leaves it.
async fn with_closed_stdout(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = command(args, env);
    cmd.stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    // The parent's copy of the write end goes with `cmd`, so the child holds the only one.
    drop(cmd);
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_closed_stdout_ends_quietly_with_the_documented_status() {
    for args in [&["tools"][..], &["--sandbox", "call", "list_orders"][..]] {
        let (code, stderr) = with_closed_stdout(args, &[]).await;
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // An order placed by a call whose output nobody reads is still reported, on stderr.
    let sandbox = Sandbox::start().await.unwrap();
    let state = temp_dir("state");
    let confirm = create_order(&sandbox, &state, ORDER)
        .await
        .confirming(ORDER);
    let url = sandbox.base_url();
    let mut env = sandbox_env(&url).to_vec();
    env.push(("ONCE_STATE_DIR", state.to_str().unwrap()));
    let (code, stderr) =
        with_closed_stdout(&["call", "create_order", "--args", &confirm], &env).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("the order WAS placed (order 20000000"),
        "{stderr}"
    );
    assert_eq!(posts(&sandbox), 1);
}

/// `1nce-mcp --sandbox FLAGS call ARGS` with `state` as the state directory.
async fn sandbox_call(state: &Path, flags: &[&str], args: &[&str]) -> Run {
    let argv = [&["--sandbox"], flags, &["call"], args].concat();
    common::run(None, &argv, &[("ONCE_STATE_DIR", state.to_str().unwrap())]).await
}

/// Previews [`ORDER`] in one `--sandbox` process and confirms it in another.
async fn sandbox_place(state: &Path, flags: &[&str]) -> Run {
    let preview = sandbox_call(state, flags, &["create_order", "--args", ORDER]).await;
    let confirm = preview.confirming(ORDER);
    sandbox_call(state, flags, &["create_order", "--args", &confirm]).await
}

/// `--sandbox` in one-shot use: the orders placed in the built-in sandbox are kept in its state
/// directory, so the next process finds them and numbers its own after them, processes running
/// at once never number two orders alike, and an account of generated orders
/// (`--sandbox-orders`) keeps orders of its own.
#[tokio::test]
async fn the_built_in_sandbox_remembers_its_orders_across_calls() {
    let state = temp_dir("state");
    let placed = sandbox_place(&state, &[]).await;
    assert_eq!(placed.code, 0, "{}", placed.stderr);
    let number = placed.json()["order_number"].as_u64().unwrap();
    assert_eq!(number, 2_000_000_026);

    // The next process finds it, by number and in the list.
    let args = format!(r#"{{"order_number": {number}}}"#);
    let found = sandbox_call(&state, &[], &["get_order", "--args", &args]).await;
    assert_eq!(found.code, 0, "{}", found.stderr);
    assert_eq!(found.json()["customer_reference"], "cli");
    let listed = sandbox_call(&state, &[], &["list_orders", "--args", r#"{"page": 3}"#]).await;
    assert_eq!(listed.json()["total_count"], 26, "{}", listed.stdout);

    // Three processes confirming at once: three orders, numbered one after another.
    let mut confirmations = Vec::new();
    for _ in 0..3 {
        let preview = sandbox_call(&state, &[], &["create_order", "--args", ORDER]).await;
        confirmations.push(preview.confirming(ORDER));
    }
    let runs =
        futures::future::join_all(confirmations.iter().map(|args| async {
            sandbox_call(&state, &[], &["create_order", "--args", args]).await
        }))
        .await;
    let mut numbers: Vec<u64> = runs
        .iter()
        .map(|r| {
            assert_eq!(r.code, 0, "{}", r.stderr);
            r.json()["order_number"].as_u64().unwrap()
        })
        .collect();
    numbers.sort();
    assert_eq!(numbers, [2_000_000_027, 2_000_000_028, 2_000_000_029]);

    // An account of 30 generated orders in the same state directory numbers its own.
    let generated = sandbox_place(&state, &["--sandbox-orders", "30"]).await;
    assert_eq!(generated.code, 0, "{}", generated.stderr);
    assert_eq!(generated.json()["order_number"], 2_000_000_031u64);
    let next = sandbox_place(&state, &[]).await;
    assert_eq!(next.json()["order_number"], 2_000_000_030u64);
    // Nor does the seeded account's mirror answer with the generated account's order.
    let other = r#"{"order_number": 2000000031}"#;
    let asked = sandbox_call(&state, &[], &["get_order", "--args", other]).await;
    assert_ne!(asked.code, 0, "{}", asked.stdout);
    assert!(!asked.stdout.contains("\"cli\""), "{}", asked.stdout);
}

/// An address a parcel cannot reach gets no preview and no token: the tool error names what is
/// missing. `{"country": "DE"}` alone is refused.
#[tokio::test]
async fn an_address_that_cannot_ship_gets_no_preview() {
    let sandbox = Sandbox::start().await.unwrap();
    let state = temp_dir("state");
    for (address, missing) in [
        (
            json!({"country": "DE"}),
            "it has no recipient (first_name and last_name, or company), street, zip (postcode) and city",
        ),
        (
            json!({"company": "ACME", "street": "Ring 1", "zip": "50667", "city": "Köln"}),
            "it has no country",
        ),
        (
            json!({"first_name": "Erika", "street": "Ring 1", "zip": "50667", "city": "Köln",
                   "country": "DE"}),
            "it has no last_name (or a company)",
        ),
    ] {
        let args = json!({"products": [{"product_id": 1001, "quantity": 1}],
                          "delivery_address": address});
        let out = create_order(&sandbox, &state, &args.to_string()).await;
        assert_eq!(out.code, 1, "a tool error: {}", out.stderr);
        assert!(
            out.stdout.is_empty(),
            "no preview, no token: {}",
            out.stdout
        );
        assert!(
            out.stderr.contains("delivery_address cannot ship")
                && out.stderr.contains(missing)
                && out.stderr.contains("Nothing was ordered"),
            "{}",
            out.stderr
        );
    }
    // A complete address is previewed.
    let args = json!({"products": [{"product_id": 1001, "quantity": 1}],
                      "delivery_address": {"first_name": "Erika", "last_name": "Muster",
                          "street": "Ring", "house_number": "1", "zip": "50667", "city": "Köln",
                          "country": "DE"}});
    let out = create_order(&sandbox, &state, &args.to_string()).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.json()["preview"]["ships_to"],
        "Erika Muster, Ring 1, 50667 Köln, DE"
    );
    assert_eq!(posts(&sandbox), 0);
}

/// The preview says its totals are net and that VAT is added on the invoice where it applies;
/// once placed, the answer shows the net total beside the invoice amount 1NCE reports (gross),
/// in the text and in the structured result.
#[tokio::test]
async fn the_preview_is_net_and_the_placed_order_shows_the_invoice_amount() {
    let sandbox = Sandbox::start().await.unwrap();
    let state = temp_dir("state");
    let preview = create_order(&sandbox, &state, ORDER).await;
    let previewed = preview.json();
    assert_eq!(
        previewed["preview"]["one_time_net_total"],
        json!([{"amount": "40.00", "currency": "EUR"}])
    );
    assert_eq!(
        previewed["preview"]["vat"],
        "net: VAT is added on the invoice where it applies"
    );
    assert!(
        preview.stderr.contains(
            "one-time total 40.00 EUR net (VAT is added on the invoice where it applies)"
        ),
        "{}",
        preview.stderr
    );

    let placed = create_order(&sandbox, &state, &preview.confirming(ORDER)).await;
    assert_eq!(placed.code, 0, "{}", placed.stderr);
    let answer = placed.json();
    assert_eq!(
        answer["preview"]["one_time_net_total"],
        json!([{"amount": "40.00", "currency": "EUR"}])
    );
    let order = &answer["order"];
    assert_eq!(answer["invoice"]["amount"], order["invoice_amount"]);
    assert_eq!(answer["invoice"]["amount"], "47.60", "19% VAT on 40.00");
    assert_eq!(answer["invoice"]["currency"], "EUR");
    assert_eq!(answer["invoice"]["number"], order["invoice_number"]);
    assert!(
        placed.stderr.contains(
            "one-time total 40.00 EUR net, as previewed; invoice amount 47.60 EUR (gross: VAT included where it applies)"
        ),
        "{}",
        placed.stderr
    );
}
