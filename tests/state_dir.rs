//! The state directory and the audit log are private: the binary refuses to start (exit status
//! 2, the path and the `chmod` that fixes it on stderr) when other users could write them or
//! when they are symbolic links, and everything it creates there is owner-only. Single use of a
//! confirmation token rests on marker files nobody else can delete.
//!
//! The tests run as root here, which bypasses permission checks on open: modes are checked by
//! reading them, never by expecting a refusal from the kernel.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use onence_mcp::sandbox::Sandbox;

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
