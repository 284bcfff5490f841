//! The test harness keeps its word: a test whose component is missing is never a silent pass
//! (see `common::skip`). This binary runs itself, filtered to one such test, with the component
//! pointed nowhere.

use std::io::Read;
use std::process::Command;

/// A test that needs a component (the Python MCP SDK) and asks for it first thing.
const TEST: &str = "interop::python_sdk_over_stdio_with_initialize_and_with_server_discover";

/// This test binary running [`TEST`] alone without the Python SDK, `required` or not; its exit
/// code and what it wrote to stdout and stderr, interleaved as a terminal shows them.
fn run_without_python(required: bool) -> (Option<i32>, String) {
    let (mut reader, writer) = std::io::pipe().expect("a pipe");
    let mut cmd = Command::new(std::env::current_exe().expect("the test binary's path"));
    cmd.args(["--exact", TEST, "--test-threads", "1"])
        .env("ONCE_INTEROP_PYTHON", "/nonexistent/python3")
        .env_remove("ONCE_INTEROP_REQUIRED")
        .stdin(std::process::Stdio::null())
        .stdout(writer.try_clone().expect("a second end of the pipe"))
        .stderr(writer);
    if required {
        cmd.env("ONCE_INTEROP_REQUIRED", "1");
    }
    let mut child = cmd.spawn().expect("run the test binary");
    // The command holds the pipe's write ends: closed with it, so the read below ends when the
    // child exits.
    drop(cmd);
    let mut output = String::new();
    reader
        .read_to_string(&mut output)
        .expect("read the child's output");
    let status = child.wait().expect("wait for the test binary");
    (status.code(), output)
}

#[test]
fn a_test_that_cannot_run_passes_and_is_named_at_the_end_with_how_to_run_it() {
    let (code, output) = run_without_python(false);
    assert_eq!(code, Some(0), "{output}");
    let summary = output
        .find("test result: ok. 1 passed")
        .unwrap_or_else(|| panic!("libtest's summary:\n{output}"));
    let listed = output
        .find("NOT RUN: 1 test passed without running")
        .unwrap_or_else(|| panic!("the list of tests that did not run:\n{output}"));
    assert!(
        summary < listed,
        "the list comes after the summary:\n{output}"
    );
    let last = output.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.contains(&format!("NOT RUN {TEST}: "))
            && last.contains("ONCE_INTEROP_PYTHON=/nonexistent/python3 does not exist")
            && last.contains("scripts/interop-setup"),
        "the last line names the test, what is missing and how to get it:\n{output}"
    );
}

#[test]
fn under_once_interop_required_a_missing_component_fails_the_test() {
    let (code, output) = run_without_python(true);
    assert_eq!(code, Some(101), "{output}");
    assert!(output.contains("1 failed"), "{output}");
    assert!(
        output.contains("ONCE_INTEROP_PYTHON=/nonexistent/python3 does not exist")
            && output.contains("ONCE_INTEROP_REQUIRED=1"),
        "{output}"
    );
    assert!(!output.contains("NOT RUN"), "{output}");
}
