//! What a session leaves behind: stdout carries JSON-RPC only, and no secret appears anywhere.

use std::process::Stdio;
use std::time::Duration;

use onence_mcp::sandbox::{Sandbox, SandboxOptions};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::common::{command, confirming, spawn};

/// Speaks raw JSON-RPC lines to the binary, as any MCP client would, and checks every line it
/// writes to stdout is a JSON-RPC message.
#[tokio::test]
async fn stdout_carries_only_json_rpc_for_each_protocol_revision() {
    for version in ["2025-06-18", "2025-11-25"] {
        let mut child = command(&["--sandbox"], &[("RUST_LOG", "debug")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let requests = [
            json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":version,"capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}),
            json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
            json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
            json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"list_orders","arguments":{"page_size":2}}}),
            json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"get_order","arguments":{"order_number":-5}}}),
        ];
        for request in &requests {
            stdin
                .write_all(format!("{request}\n").as_bytes())
                .await
                .unwrap();
        }
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut answers = std::collections::HashMap::new();
        while answers.len() < 4 {
            let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
                .await
                .expect("an answer within 20 s")
                .unwrap()
                .expect("stdout open");
            let message: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("non-JSON on stdout ({e}): {line}"));
            assert_eq!(message["jsonrpc"], "2.0", "{line}");
            if let Some(id) = message["id"].as_u64() {
                answers.insert(id, message);
            }
        }
        assert_eq!(answers[&1]["result"]["protocolVersion"], version);
        assert_eq!(answers[&2]["result"]["tools"].as_array().unwrap().len(), 5);
        assert_eq!(
            answers[&3]["result"]["structuredContent"]["orders"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(answers[&4]["result"]["isError"], true);
        drop(stdin);
        // Stdin closed: the server ends cleanly and writes nothing more but JSON-RPC.
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("exit after stdin closes")
            .unwrap();
        assert!(status.success(), "{status}");
        while let Some(line) = lines.next_line().await.unwrap() {
            let message: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(message["jsonrpc"], "2.0");
        }
    }
}

/// A whole session at the most verbose log level, with a known secret: neither the secret nor
/// any access token the sandbox issued appears in stderr or in any tool result.
#[tokio::test]
async fn secrets_never_appear_in_logs_or_results() {
    const SECRET: &str = "Zq8-client-secret-that-must-never-leak-41c7";
    let sandbox = Sandbox::start_with(SandboxOptions {
        client_id: "leak-test-client".into(),
        client_secret: SECRET.into(),
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let url = sandbox.base_url();
    let server = spawn(
        &[],
        &[
            ("ONCE_API_URL", url.as_str()),
            ("ONCE_CLIENT_ID", "leak-test-client"),
            ("ONCE_CLIENT_SECRET", SECRET),
            ("RUST_LOG", "trace"),
        ],
    )
    .await;
    let mut results = Vec::new();
    results.push(server.call("list_orders", json!({"page": 2})).await);
    results.push(
        server
            .call("get_order", json!({"order_number": 2000000003u64}))
            .await,
    );
    results.push(server.call("get_order", json!({"order_number": 99})).await);
    sandbox.expire_tokens(); // forces a renewal mid-session
    let args = json!({"products": [{"product_id": 1001, "quantity": 1}]});
    let preview = server.call("create_order", args.clone()).await;
    let confirm = confirming(&args, preview.structured_content.as_ref().unwrap());
    results.push(preview);
    results.push(server.call("create_order", confirm).await);
    let stderr = server.stop().await;

    let tokens: Vec<String> = sandbox
        .requests()
        .iter()
        .filter_map(|r| r.header("authorization"))
        .filter_map(|h| h.strip_prefix("Bearer "))
        .map(str::to_owned)
        .collect();
    assert!(tokens.len() >= 5, "the session used bearer tokens");
    assert!(
        sandbox.count("POST", "/oauth/token") >= 2,
        "a renewal happened"
    );
    let results = serde_json::to_string(&results).unwrap();
    assert!(stderr.len() > 1000, "trace logging produced output");
    for (what, haystack) in [("stderr", &stderr), ("tool results", &results)] {
        assert!(!haystack.contains(SECRET), "client secret in {what}");
        for token in &tokens {
            assert!(!haystack.contains(token.as_str()), "access token in {what}");
            assert!(
                !haystack.contains(&token[..40]),
                "part of an access token in {what}"
            );
        }
    }
}
