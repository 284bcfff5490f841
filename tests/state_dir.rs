//! The state directory and the audit log are private: the binary refuses to start (exit status
//! 2, the path and the `chmod` that fixes it on stderr) when other users could write them or
//! when they are symbolic links, and everything it creates there is owner-only. Single use of a
//! confirmation token rests on marker files nobody else can delete.
//!
//! The tests run as root here, which bypasses permission checks on open: modes are checked by
//! reading them, never by expecting a refusal from the kernel.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use onence_mcp::sandbox::{SANDBOX_CLIENT_ID, Sandbox};

use crate::common;
use crate::common::{Run, sandbox_env, temp_dir};

/// `1nce-mcp <args>` with `state` as its state directory and `env` on top.
async fn run(state: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut all = vec![("ONCE_STATE_DIR", state.to_str().unwrap())];
    all.extend_from_slice(env);
    common::run(None, args, &all).await
}

/// Credentials and an API address for runs that must be refused before they reach 1NCE: port
/// 9 on loopback answers nothing, so a run that got past the checks fails another way.
const UNREACHED: [(&str, &str); 3] = [
    ("ONCE_API_URL", "http://127.0.0.1:9"),
    ("ONCE_CLIENT_ID", "id"),
    ("ONCE_CLIENT_SECRET", "secret"),
];

/// A one-shot call that must be refused at start-up.
async fn list_orders(state: &Path) -> Run {
    run(state, &["call", "list_orders"], &UNREACHED).await
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

/// Exit status 2, and stderr names `path` and the command that fixes it.
fn assert_refused(run: &Run, path: &Path, fix: &str) {
    assert_eq!(run.code, 2, "stderr: {}", run.stderr);
    assert!(run.stdout.is_empty(), "nothing ran: {}", run.stdout);
    assert!(
        run.stderr.contains(&path.display().to_string()),
        "names {}: {}",
        path.display(),
        run.stderr
    );
    assert!(run.stderr.contains(fix), "says {fix:?}: {}", run.stderr);
}

#[tokio::test]
async fn a_state_directory_others_can_write_is_refused() {
    let state = temp_dir("state");
    chmod(&state, 0o777);
    let run = list_orders(&state).await;
    assert_refused(&run, &state, &format!("`chmod 700 {}`", state.display()));
    assert!(
        run.stderr.contains("writable by other users"),
        "{}",
        run.stderr
    );
    // Refused as found: not repaired, nothing created in it.
    assert_eq!(mode(&state), 0o777);
    assert!(!state.join("used-tokens").exists());
    assert!(!state.join("confirmation.key").exists());
}

#[tokio::test]
async fn a_used_token_record_others_can_write_is_refused() {
    let state = temp_dir("state");
    let used = state.join("used-tokens");
    std::fs::create_dir(&used).unwrap();
    chmod(&used, 0o777);
    let run = list_orders(&state).await;
    assert_refused(&run, &used, &format!("`chmod 700 {}`", used.display()));
}

#[tokio::test]
async fn an_audit_log_others_can_write_is_refused() {
    let state = temp_dir("state");
    let log = state.join("audit.jsonl");
    std::fs::write(&log, "").unwrap();
    chmod(&log, 0o666);
    let refused = list_orders(&state).await;
    assert_refused(&refused, &log, &format!("`chmod 600 {}`", log.display()));

    // The same for a log moved with --audit-log.
    let elsewhere = temp_dir("state").join("moved.jsonl");
    std::fs::write(&elsewhere, "").unwrap();
    chmod(&elsewhere, 0o666);
    let refused = run(
        &temp_dir("state"),
        &[
            "--audit-log",
            elsewhere.to_str().unwrap(),
            "call",
            "list_orders",
        ],
        &UNREACHED,
    )
    .await;
    assert_refused(
        &refused,
        &elsewhere,
        &format!("`chmod 600 {}`", elsewhere.display()),
    );
}

#[tokio::test]
async fn a_state_directory_behind_a_symlink_is_refused() {
    let real = temp_dir("state");
    let link = temp_dir("state").join("state");
    symlink(&real, &link).unwrap();
    let run = list_orders(&link).await;
    assert_refused(&run, &link, "point --state-dir at the real directory");
    assert!(run.stderr.contains("symbolic link"), "{}", run.stderr);
    assert_eq!(std::fs::read_dir(&real).unwrap().count(), 0);
}

#[tokio::test]
async fn an_audit_log_behind_a_symlink_is_refused() {
    let state = temp_dir("state");
    let target = temp_dir("state").join("elsewhere.jsonl");
    std::fs::write(&target, "").unwrap();
    chmod(&target, 0o600);
    let log = state.join("audit.jsonl");
    symlink(&target, &log).unwrap();
    let run = list_orders(&state).await;
    assert_refused(&run, &log, "symbolic link");
}

#[tokio::test]
async fn everything_created_in_a_fresh_state_directory_is_owner_only() {
    let sandbox = Sandbox::start().await.unwrap();
    let url = sandbox.base_url();
    let env = sandbox_env(&url);
    // Not there yet, nor its parent: both are created.
    let state = temp_dir("state").join("new").join("1nce-mcp");
    let order = r#"{"products": [{"product_id": 1001, "quantity": 2}]}"#;

    let preview = run(&state, &["call", "create_order", "--args", order], &env).await;
    let confirm = preview.confirming(order);
    let placed = run(&state, &["call", "create_order", "--args", &confirm], &env).await;
    assert_eq!(placed.code, 0, "{}", placed.stderr);
    assert_eq!(common::posts(&sandbox), 1);

    assert_eq!(mode(state.parent().unwrap()), 0o700);
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("used-tokens")), 0o700);
    assert_eq!(mode(&state.join("confirmation.key")), 0o600);
    assert_eq!(mode(&state.join("audit.jsonl")), 0o600);
    assert_eq!(mode(&state.join("account")), 0o600);
    let (markers, beside): (Vec<_>, Vec<_>) = std::fs::read_dir(state.join("used-tokens"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .partition(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'));
    assert_eq!(
        markers.len(),
        1,
        "one marker, no temporary files: {markers:?}"
    );
    // Beside the markers: the clock probe and the sweep lock, and nothing else (no sweep has
    // removed anything, so there is no swept-through mark yet).
    let mut names: Vec<_> = beside
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [".clock", ".sweep.lock"]);
    for path in &beside {
        assert_eq!(mode(path), 0o600, "{}", path.display());
    }
    assert_eq!(mode(&markers[0]), 0o600, "{}", markers[0].display());
    let marker = std::fs::read_to_string(&markers[0]).unwrap();
    assert!(marker.contains(r#""state":"placed""#), "{marker}");
}

/// Every file under `dir` (the state directory) with its content and modification time, for
/// "nothing was changed".
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>, SystemTime)> {
    let mut all = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                todo.push(path);
            } else {
                let content = std::fs::read(&path).unwrap();
                all.push((path, content, meta.modified().unwrap()));
            }
        }
    }
    all.sort();
    all
}

/// How `sandbox` is named as an account: its URL without a trailing slash.
fn api_of(sandbox: &Sandbox) -> String {
    sandbox.base_url().trim_end_matches('/').to_owned()
}

#[tokio::test]
async fn a_state_directory_is_one_accounts_and_another_client_id_is_refused_untouched() {
    let sandbox = Sandbox::start().await.unwrap();
    let url = sandbox.base_url();
    let state = temp_dir("state");
    // Client id X orders, within a spend limit: a key, a used token, the audit trail, the ledger.
    let x = sandbox_env(&url);
    let limit = ["--spend-limit", "100EUR/day"];
    let order = r#"{"products": [{"product_id": 1001, "quantity": 1}]}"#;
    let preview = run(
        &state,
        &[&limit[..], &["call", "create_order", "--args", order]].concat(),
        &x,
    )
    .await;
    let confirm = preview.confirming(order);
    let placed = run(
        &state,
        &[&limit[..], &["call", "create_order", "--args", &confirm]].concat(),
        &x,
    )
    .await;
    assert_eq!(placed.code, 0, "{}", placed.stderr);
    assert!(state.join("ledger.sqlite3").exists());
    let before = snapshot(&state);
    let requests = sandbox.requests().len();

    // Client id Y at the same API: refused at start-up and by `check`, before anything is read
    // or written, naming both accounts; its secret appears nowhere.
    let y = [
        ("ONCE_API_URL", url.as_str()),
        ("ONCE_CLIENT_ID", "client-y"),
        ("ONCE_CLIENT_SECRET", "secret-of-y-5b1e"),
    ];
    let api = api_of(&sandbox);
    let expected = format!(
        "the state directory {} belongs to the 1NCE account of client id \"{SANDBOX_CLIENT_ID}\" at {api}; this process is the 1NCE account of client id \"client-y\" at {api}.",
        state.display()
    );
    for args in [
        &["call", "list_orders"][..],
        &["check"],
        &[&limit[..], &["call", "create_order", "--args", &confirm]].concat(),
    ] {
        let refused = run(&state, args, &y).await;
        assert_eq!(refused.code, 2, "{args:?}: {}", refused.stderr);
        assert!(refused.stdout.is_empty(), "{args:?}: {}", refused.stdout);
        assert!(
            refused.stderr.contains(&expected),
            "{args:?}: {}",
            refused.stderr
        );
        assert!(
            refused.stderr.contains(
                "Give each account its own --state-dir or database (--state-url); nothing was changed"
            ),
            "{}",
            refused.stderr
        );
        assert!(
            !refused.stderr.contains("secret-of-y"),
            "{}",
            refused.stderr
        );
    }
    assert_eq!(snapshot(&state), before, "nothing was changed");
    assert_eq!(sandbox.requests().len(), requests, "nothing was sent");
    assert_eq!(common::posts(&sandbox), 1);

    // Client id X is still at home, however its API's URL is spelled.
    let slash = format!("{}/", api);
    let again = run(&state, &["call", "list_orders"], &sandbox_env(&slash)).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
}

#[tokio::test]
async fn a_state_directory_of_an_earlier_version_is_adopted_by_the_first_account_to_open_it() {
    let first = Sandbox::start().await.unwrap();
    let second = Sandbox::start().await.unwrap();
    let state = temp_dir("state");
    let made = run(
        &state,
        &["call", "list_orders"],
        &sandbox_env(&first.base_url()),
    )
    .await;
    assert_eq!(made.code, 0, "{}", made.stderr);
    // What an earlier version left: the same directory without the record of its account.
    std::fs::remove_file(state.join("account")).unwrap();
    assert!(state.join("confirmation.key").exists());

    // Whichever account opens it first adopts it, and the log says so (at warn, which a
    // one-shot call shows when asked)...
    let second_url = second.base_url();
    let mut env = sandbox_env(&second_url).to_vec();
    env.push(("RUST_LOG", "warn"));
    let adopted = run(&state, &["call", "list_orders"], &env).await;
    assert_eq!(adopted.code, 0, "{}", adopted.stderr);
    let said = format!(
        "the state directory {} recorded no 1NCE account (an earlier version of 1nce-mcp made it, or its record was deleted): it now belongs to the 1NCE account of client id \"{SANDBOX_CLIENT_ID}\" at {}",
        state.display(),
        api_of(&second)
    );
    assert!(adopted.stderr.contains(&said), "{}", adopted.stderr);
    assert_eq!(mode(&state.join("account")), 0o600);
    // ...once: the next start finds its own record and says nothing of it.
    let again = run(&state, &["check"], &env).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert!(!again.stderr.contains("recorded no"), "{again:?}");
    assert!(!again.stdout.contains("recorded no"), "{again:?}");

    // From then on it is that account's: the other one is refused.
    let refused = run(&state, &["check"], &sandbox_env(&first.base_url())).await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains(&format!("at {}; this process is", api_of(&second))),
        "{}",
        refused.stderr
    );
}
