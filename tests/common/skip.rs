//! The one way a test may pass without running: [`skip`]. A test that needs a component this
//! machine may lack (PostgreSQL, Chromium, libfaketime, the independent MCP clients, the
//! conformance suite, oidc-provider, the packaging tools, the MCP Apps web host, root for a
//! tmpfs) asks for it through [`installed`] or [`skip`], and then:
//!
//! - under `ONCE_INTEROP_REQUIRED=1` (CI, see `.ci/run`) a missing component fails the test;
//! - otherwise the test returns at once, and the test binary ends, after libtest's own summary,
//!   by naming on stderr each test that did not run and how to get what it needs. So `cargo
//!   test` on a fresh machine runs everything else, passes, and says what it did not cover.
//!
//! The list is printed from an `atexit` hook, registered by the first skip: libtest prints its
//! summary and then returns from `main` (or calls `exit(101)` after a failure), and both run the
//! hook last, on the main thread, where no test's output capture applies.

use std::path::PathBuf;
use std::sync::{Mutex, Once, PoisonError};

/// The tests that did not run, in the order they skipped.
static SKIPPED: Mutex<Vec<Skipped>> = Mutex::new(Vec::new());
static REPORT_AT_EXIT: Once = Once::new();

struct Skipped {
    test: String,
    missing: String,
    how: String,
}

/// Whether a missing component fails the test: `ONCE_INTEROP_REQUIRED=1`, as CI sets.
pub fn required() -> bool {
    std::env::var("ONCE_INTEROP_REQUIRED").as_deref() == Ok("1")
}

/// The test on this thread: libtest runs each test on a thread named after it
/// (`replicas::orders_are_refused_while_the_database_is_down_and_work_again_after`).
fn current_test() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_owned(),
        _ => "a test not on its own thread".to_owned(),
    }
}

/// The test on this thread cannot run here: this machine lacks `missing`, and `how` says how to
/// get it. Fails the test under `ONCE_INTEROP_REQUIRED=1`; otherwise notes it for the list
/// printed at exit and returns, and the caller returns at once.
pub fn skip(missing: &str, how: &str) {
    let test = current_test();
    assert!(
        !required(),
        "{test} cannot run: {missing}; {how} (ONCE_INTEROP_REQUIRED=1 makes that a failure)"
    );
    SKIPPED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Skipped {
            test,
            missing: missing.to_owned(),
            how: how.to_owned(),
        });
    REPORT_AT_EXIT.call_once(|| {
        // SAFETY: `report` is an `extern "C" fn()` that never unwinds (it catches panics), as
        // atexit requires; registering it has no other precondition.
        let registered = unsafe { libc::atexit(report) };
        assert_eq!(registered, 0, "atexit refused the skip report");
    });
}

/// The program `var` names, else `default` when that exists; or `None` after [`skip`] (which
/// fails the test under `ONCE_INTEROP_REQUIRED=1`), saying `how` to get it.
pub fn installed(var: &str, default: Option<&str>, how: &str) -> Option<PathBuf> {
    match named(var, default) {
        Some(path) if path.exists() => Some(path),
        Some(path) => {
            skip(&format!("{var}={} does not exist", path.display()), how);
            None
        }
        None => {
            skip(&format!("{var} is not set"), how);
            None
        }
    }
}

/// The path `var` names, else `default`, whether or not it exists.
pub fn named(var: &str, default: Option<&str>) -> Option<PathBuf> {
    std::env::var_os(var)
        .map(PathBuf::from)
        .or_else(|| default.map(PathBuf::from))
}

/// The list of tests that did not run, one line each, after everything else the binary wrote.
extern "C" fn report() {
    let text = std::panic::catch_unwind(|| {
        let mut skipped = SKIPPED.lock().unwrap_or_else(PoisonError::into_inner);
        skipped.sort_by(|a, b| a.test.cmp(&b.test));
        let tests = match skipped.len() {
            1 => "1 test".to_owned(),
            n => format!("{n} tests"),
        };
        let mut text = format!(
            "\n==== NOT RUN: {tests} passed without running, for want of a component on this \
             machine ====\n(CI has them all: ONCE_INTEROP_REQUIRED=1 makes a missing one fail \
             the test)\n"
        );
        for s in skipped.iter() {
            text.push_str(&format!("NOT RUN {}: {}; {}\n", s.test, s.missing, s.how));
        }
        text
    });
    if let Ok(text) = text {
        write_stderr(text.as_bytes());
    }
}

/// Writes to file descriptor 2 directly: at exit, std's handles may be shut down.
fn write_stderr(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: the pointer and length describe `bytes`, which outlives the call.
        let n = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
        if n <= 0 {
            return;
        }
        bytes = &bytes[n as usize..];
    }
}
