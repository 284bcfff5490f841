//! Independent MCP clients against the built binary: the official Python SDK and the MCP
//! Inspector CLI. They find what rmcp-to-rmcp tests cannot: schemas another validator rejects,
//! arguments another client encodes differently, revisions another SDK negotiates.
//!
//! The clients are installed by `scripts/interop-setup` (CI runs it; see `.ci/run`), which
//! exports `ONCE_INTEROP_PYTHON` and `ONCE_INTEROP_INSPECTOR`. Without them these tests skip
//! (listed at the end of the run, see `common::skip`), unless `ONCE_INTEROP_REQUIRED=1`, as in
//! CI, makes a missing client a failure.

use std::path::PathBuf;

use serde_json::Value;

use crate::common::net::HttpServer;
use crate::common::{binary, installed, temp_dir};

/// The installed client named by `var`, or `None` (after [`crate::common::skip`]) when it is not
/// installed.
pub(crate) fn client(var: &str) -> Option<PathBuf> {
    installed(var, None, "run `eval \"$(scripts/interop-setup)\"`")
}

fn server_args(state: &std::path::Path) -> Vec<String> {
    vec![
        binary().display().to_string(),
        "--sandbox".into(),
        "--state-dir".into(),
        state.display().to_string(),
    ]
}

pub(crate) async fn run(program: &PathBuf, args: &[String]) -> (bool, String, String) {
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        tokio::process::Command::new(program)
            .args(args)
            .env_remove("RUST_LOG")
            // Killed if it outlives the timeout; a server it spawned on stdio then sees EOF.
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the client finishes within 2 minutes")
    .expect("the client runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn python_sdk_over_stdio_with_initialize_and_with_server_discover() {
    let Some(python) = client("ONCE_INTEROP_PYTHON") else {
        return;
    };
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/python_client.py"
    );
    for (mode, version) in [("legacy", "2025-11-25"), ("auto", "2026-07-28")] {
        let state = temp_dir("state");
        let mut args = vec![script.to_owned(), mode.to_owned(), "stdio".to_owned()];
        args.extend(server_args(&state));
        let (ok, stdout, stderr) = run(&python, &args).await;
        assert!(ok, "python SDK ({mode}) failed:\n{stdout}\n{stderr}");
        let report: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
        assert_eq!(report["protocol_version"], version, "{report}");
        assert!(report["order_number"].as_u64().is_some());
    }
}

#[tokio::test]
async fn inspector_cli_lists_and_calls_every_tool_over_stdio() {
    let Some(inspector) = client("ONCE_INTEROP_INSPECTOR") else {
        return;
    };
    let state = temp_dir("state");
    let call = |method: &str, extra: &[&str]| {
        let mut args = vec!["--cli".to_owned()];
        args.extend(server_args(&state));
        args.extend(["--method".to_owned(), method.to_owned()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let (ok, stdout, stderr) = run(&inspector, &call("tools/list", &[])).await;
    assert!(ok, "{stderr}");
    assert!(
        !stderr.contains("unknown format") && !stderr.contains("strict mode"),
        "the Inspector's schema compiler complained:\n{stderr}"
    );
    let tools: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(tools["tools"].as_array().unwrap().len(), 5);

    let calls: [&[&str]; 4] = [
        &["--tool-name", "list_products"],
        &["--tool-name", "list_orders", "--tool-arg", "page_size=2"],
        &[
            "--tool-name",
            "get_order",
            "--tool-arg",
            "order_number=2000000001",
        ],
        &[
            "--tool-name",
            "create_order",
            "--tool-arg",
            r#"products=[{"product_id":1001,"quantity":1}]"#,
        ],
    ];
    for extra in calls {
        let (ok, stdout, stderr) = run(&inspector, &call("tools/call", extra)).await;
        assert!(ok, "{extra:?}: {stderr}");
        let result: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(result["isError"], false, "{extra:?}: {result}");
        assert!(result["structuredContent"].is_object(), "{result}");
    }
}

#[tokio::test]
async fn python_sdk_over_streamable_http_with_initialize_and_stateless() {
    let Some(python) = client("ONCE_INTEROP_PYTHON") else {
        return;
    };
    let server = HttpServer::spawn(&["--sandbox"], &[]).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/python_client.py"
    );
    for (mode, version) in [("legacy", "2025-11-25"), ("auto", "2026-07-28")] {
        let args = [script, mode, "http", &server.url("/mcp")].map(str::to_owned);
        let (ok, stdout, stderr) = run(&python, &args).await;
        assert!(
            ok,
            "python SDK over HTTP ({mode}) failed:\n{stdout}\n{stderr}"
        );
        let report: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
        assert_eq!(report["protocol_version"], version, "{report}");
    }
}

#[tokio::test]
async fn inspector_cli_over_streamable_http_and_legacy_sse() {
    let Some(inspector) = client("ONCE_INTEROP_INSPECTOR") else {
        return;
    };
    let server = HttpServer::spawn(&["--sandbox"], &[]).await;
    for (path, transport) in [("/mcp", "http"), ("/sse", "sse")] {
        let base = [
            "--cli".to_owned(),
            server.url(path),
            "--transport".to_owned(),
            transport.to_owned(),
        ];
        let mut list = base.to_vec();
        list.extend(["--method", "tools/list"].map(str::to_owned));
        let (ok, stdout, stderr) = run(&inspector, &list).await;
        assert!(ok, "{transport}: {stderr}");
        let tools: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(tools["tools"].as_array().unwrap().len(), 5, "{transport}");

        let mut call = base.to_vec();
        call.extend(
            [
                "--method",
                "tools/call",
                "--tool-name",
                "get_order",
                "--tool-arg",
                "order_number=2000000003",
            ]
            .map(str::to_owned),
        );
        let (ok, stdout, stderr) = run(&inspector, &call).await;
        assert!(ok, "{transport}: {stderr}");
        let result: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(
            result["structuredContent"]["order_number"], 2000000003u64,
            "{transport}"
        );
    }
}
