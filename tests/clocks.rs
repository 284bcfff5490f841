//! One approval is one order whatever any clock says (issue 24), tried as an attacker would:
//! processes run at another time under libfaketime (Debian's `faketime`), which fakes the
//! process's clock but not the file system's or the database's. Each test needs `faketime`;
//! without it a test skips (listed at the end of the run, see `common::skip`), or fails under
//! `ONCE_INTEROP_REQUIRED=1` (CI).

use onence_mcp::sandbox::Sandbox;

use crate::common::{self, Run, run, sandbox_env, temp_dir};

const ORDER: &str = r#"{"products": [{"product_id": 1001, "quantity": 2}]}"#;
const OTHER_ORDER: &str = r#"{"products": [{"product_id": 1002, "quantity": 1}]}"#;

/// `call create_order` with `args`, on `state` (a state directory, or `--state-url` arguments).
async fn create_order(
    clock: Option<&str>,
    state: &[&str],
    args: &str,
    env: &[(&str, &str)],
) -> Run {
    let mut argv = state.to_vec();
    argv.extend(["call", "create_order", "--args", args]);
    run(clock, &argv, env).await
}

/// The attack of issue 24, on any state store (`state`): a token is placed; a process whose
/// clock is days ahead previews (which cleans up used tokens) and checks; the token must stay
/// spent, and nothing is posted twice.
async fn one_approval_one_order(state: &[&str], sandbox: &Sandbox) {
    let url = sandbox.base_url();
    let env = sandbox_env(&url);
    let confirm = create_order(None, state, ORDER, &env)
        .await
        .confirming(ORDER);
    let placed = create_order(None, state, &confirm, &env).await;
    assert_eq!(placed.code, 0, "{placed:?}");
    assert_eq!(common::posts(sandbox), 1);

    for offset in ["+8d", "+30d", "-8d", "+2m"] {
        let ahead = create_order(Some(offset), state, OTHER_ORDER, &env).await;
        assert_eq!(ahead.code, 1, "{offset}: {ahead:?}");
        assert!(
            ahead.stderr.contains("No preview could be made")
                && ahead.stderr.contains("disagrees with the state store's"),
            "{offset}: {}",
            ahead.stderr
        );
        // Said at start-up too.
        assert!(
            ahead
                .stderr
                .contains("no order is placed until it is set right"),
            "{offset}: {}",
            ahead.stderr
        );
        // Nor can such a process use the token.
        let reused = create_order(Some(offset), state, &confirm, &env).await;
        assert_eq!(reused.code, 1, "{offset}: {reused:?}");
        let mut check = state.to_vec();
        check.push("check");
        let checked = run(Some(offset), &check, &env).await;
        assert_eq!(checked.code, 3, "{offset}: {checked:?}");
        assert!(
            checked.stdout.contains("state store clock: FAIL")
                && checked.stdout.contains("disagrees"),
            "{offset}: {}",
            checked.stdout
        );
        // The process with the right clock still finds the token spent.
        let again = create_order(None, state, &confirm, &env).await;
        assert_eq!(again.code, 1, "{offset}: {again:?}");
        assert!(
            again
                .stderr
                .contains("this confirmation_token was already used and placed order"),
            "{offset}: {}",
            again.stderr
        );
    }
    assert_eq!(common::posts(sandbox), 1, "one approval, one order");

    let mut check = state.to_vec();
    check.push("check");
    let checked = run(None, &check, &env).await;
    assert_eq!(checked.code, 0, "{checked:?}");
    assert!(
        checked
            .stdout
            .contains("state store clock: agrees with this machine's"),
        "{}",
        checked.stdout
    );
}

#[tokio::test]
async fn one_approval_is_one_order_whatever_a_clock_says_in_a_state_directory() {
    if !common::faketime_installed() {
        return;
    }
    let sandbox = Sandbox::start().await.unwrap();
    let state = temp_dir("state");
    one_approval_one_order(&["--state-dir", state.to_str().unwrap()], &sandbox).await;
}

#[cfg(unix)]
#[tokio::test]
async fn one_approval_is_one_order_whatever_a_replica_s_clock_says() {
    use crate::common::pg::Postgres;
    if !common::faketime_installed() {
        return;
    }
    let Some(pg) = Postgres::start() else {
        return;
    };
    let sandbox = Sandbox::start().await.unwrap();
    let url = pg.url();
    one_approval_one_order(&["--state-url", &url], &sandbox).await;
    // Every replica judged by the database's clock: the row is there, its time the database's.
    assert_eq!(pg.query("SELECT count(*) FROM used_tokens"), ["1"]);
    let skew = pg.query(
        "SELECT abs(at_ms - (extract(epoch FROM now()) * 1000)::bigint) < 600000 FROM used_tokens",
    );
    assert_eq!(skew, ["t"]);
}

/// A claim that cannot be written (a full disk) leaves the token usable, as the refusal says:
/// the state directory on a tiny tmpfs, filled up after the preview. Needs root to mount it.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_claim_refused_on_a_full_disk_leaves_the_token_usable() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        common::skip(
            "not running as root, which mounting a small tmpfs (the full disk) needs",
            "run the tests as root, as CI does",
        );
        return;
    }
    let disk = Tmpfs::mount("512k");
    let state = disk.path.join("state");
    let state_arg = ["--state-dir", state.to_str().unwrap()];
    let sandbox = Sandbox::start().await.unwrap();
    let url = sandbox.base_url();
    let env = sandbox_env(&url);
    let confirm = create_order(None, &state_arg, ORDER, &env)
        .await
        .confirming(ORDER);

    let filler = disk.fill();
    let full = create_order(None, &state_arg, &confirm, &env).await;
    assert_eq!(full.code, 1, "{full:?}");
    assert!(
        full.stderr.contains("could not be recorded")
            && full.stderr.contains("nothing was ordered"),
        "{}",
        full.stderr
    );
    assert_eq!(common::posts(&sandbox), 0);
    let markers: Vec<_> = std::fs::read_dir(state.join("used-tokens"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect();
    assert!(markers.is_empty(), "no marker is left: {markers:?}");

    std::fs::remove_file(filler).unwrap();
    let placed = create_order(None, &state_arg, &confirm, &env).await;
    assert_eq!(placed.code, 0, "the token was usable again: {placed:?}");
    assert_eq!(common::posts(&sandbox), 1);
}

/// A tmpfs of its own, unmounted when dropped.
#[cfg(target_os = "linux")]
struct Tmpfs {
    path: std::path::PathBuf,
}

#[cfg(target_os = "linux")]
impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let path = temp_dir("tmpfs");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(&path)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount a tmpfs at {}", path.display());
        Tmpfs { path }
    }

    /// Fills the file system to the last byte; returns the file that does it.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.path.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 4096];
        while file.write_all(&block).is_ok() {}
        while file.write_all(&block[..1]).is_ok() {}
        path
    }
}

#[cfg(target_os = "linux")]
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}
