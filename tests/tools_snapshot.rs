//! What agents see: `tools/list` compared with committed snapshots (every tool, and what
//! `--read-only` offers), so an accidental change to a tool's name, description, schema or
//! annotations fails here. After an intended change, run
//! `UPDATE_SNAPSHOTS=1 cargo test --test integration tools_snapshot` and review the diff of
//! `tests/snapshots/`.

use onence_mcp::api::{Client, ClientConfig, Credentials};
use onence_mcp::mcp::{OrderServer, ServerOptions};
use onence_mcp::orders::Confirmations;
use onence_mcp::state::{Location, Store};
use rmcp::ServiceExt;
use rmcp::model::Tool;
use serde_json::json;

use crate::common::{self, spawn_against};

const SNAPSHOT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/snapshots/tools_list.json"
);
const READ_ONLY_SNAPSHOT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/snapshots/tools_list_read_only.json"
);

/// Most bytes of what a model reads of the tool list on every turn: each tool's name,
/// description and input schema, as compact JSON.
const DEFINITIONS_BUDGET: usize = 4_500;

#[tokio::test]
async fn tools_list_matches_the_snapshot() {
    // Listing tools makes no 1NCE request, so the client may point nowhere.
    let client = Client::new(ClientConfig::new(
        "http://127.0.0.1:9".parse().unwrap(),
        Credentials::new("unused", "unused"),
    ))
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let store = Store::open(
        &Location::Directory {
            dir: state.path().to_owned(),
            audit_log: None,
            inside: None,
        },
        &onence_mcp::state::Account::BuiltInSandbox,
    )
    .await
    .unwrap();
    let confirmations = Confirmations::new(store, std::time::Duration::from_secs(60));
    let server = OrderServer::new(client, confirmations.into(), ServerOptions::default());
    let (server_io, client_io) = tokio::io::duplex(1 << 16);
    tokio::spawn(async move {
        if let Ok(running) = server.serve(server_io).await {
            let _ = running.waiting().await;
        }
    });
    let client = ().serve(client_io).await.unwrap();
    let mut tools = client.list_all_tools().await.unwrap();
    tools.sort_by(|a, b| a.name.cmp(&b.name));
    client.cancel().await.unwrap();
    assert_eq!(
        serde_json::to_value(&tools).unwrap(),
        serde_json::to_value(OrderServer::tool_definitions()).unwrap(),
        "`1nce-mcp tools` prints what tools/list shows"
    );
    compare(SNAPSHOT, &tools);
}

/// `--read-only` and `--tools`, over stdio from the built binary: the read-only list is every tool
/// whose annotations say it only reads (snapshotted), and `--tools` offers exactly the named ones,
/// each defined as in the full list.
#[tokio::test]
async fn read_only_and_chosen_tools_over_stdio() {
    let sandbox = onence_mcp::sandbox::Sandbox::start().await.unwrap();
    let listed = |args: &'static [&'static str]| {
        let sandbox = &sandbox;
        async move {
            let server = spawn_against(sandbox, args).await;
            let mut tools = server.client.list_all_tools().await.unwrap();
            tools.sort_by(|a, b| a.name.cmp(&b.name));
            server.stop().await;
            tools
        }
    };
    let read_only = listed(&["--read-only"]).await;
    let all = OrderServer::tool_definitions();
    let reads: Vec<&Tool> = all
        .iter()
        .filter(|t| t.annotations.as_ref().and_then(|a| a.read_only_hint) == Some(true))
        .collect();
    assert_eq!(read_only.iter().collect::<Vec<_>>(), reads);
    compare(READ_ONLY_SNAPSHOT, &read_only);

    let chosen = listed(&["--tools", "get_order,list_products"]).await;
    let names: Vec<&str> = chosen.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, ["get_order", "list_products"]);
    for tool in &chosen {
        assert!(
            all.contains(tool),
            "{} is defined as in the full list",
            tool.name
        );
    }
    let both = listed(&["--tools", "create_order,find_orders", "--read-only"]).await;
    assert_eq!(both.len(), 1);
    assert_eq!(both[0].name, "find_orders");

    // The tool left out is not there to call.
    let server = spawn_against(&sandbox, &["--tools", "get_order"]).await;
    let call = rmcp::model::CallToolRequestParams::new("list_orders")
        .with_arguments(json!({}).as_object().unwrap().clone());
    assert!(server.client.call_tool(call).await.is_err());
    server.stop().await;
}

/// Every format in every schema a client gets is one JSON Schema defines: validators (Ajv, in
/// the MCP Inspector and many hosts) warn about the `uint`, `int64`… schemars writes for Rust's
/// number types on every call. The ranges those formats implied stay, as `minimum`.
#[tokio::test]
async fn schemas_carry_only_formats_json_schema_defines() {
    fn formats<'a>(value: &'a serde_json::Value, found: &mut Vec<&'a str>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(f) = map.get("format").and_then(|f| f.as_str()) {
                    found.push(f);
                }
                map.values().for_each(|v| formats(v, found));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| formats(v, found)),
            _ => {}
        }
    }
    let sandbox = onence_mcp::sandbox::Sandbox::start().await.unwrap();
    let server = spawn_against(&sandbox, &[]).await;
    let tools = server.client.list_all_tools().await.unwrap();
    server.stop().await;
    let listed = serde_json::to_value(&tools).unwrap();
    let mut found = Vec::new();
    formats(&listed, &mut found);
    for format in found {
        assert!(
            onence_mcp::mcp::schema::is_standard_format(format),
            "a schema of tools/list has the non-standard format {format:?}"
        );
    }
    let text = listed.to_string();
    assert!(!text.contains("\"format\":\"uint"), "{text}");
    let sim_count = tools
        .iter()
        .find(|t| t.name == "list_orders")
        .and_then(|t| t.output_schema.as_ref())
        .map(|s| serde_json::to_value(s.as_ref()).unwrap())
        .and_then(|s| {
            s.pointer("/$defs/OrderSummary/properties/sim_count")
                .cloned()
        })
        .expect("list_orders' summaries count SIMs");
    assert_eq!(sim_count["minimum"], 0, "{sim_count}");
}

/// A name that is no tool stops the server before it starts (exit 2), naming the tools.
#[tokio::test]
async fn an_unknown_tool_name_is_a_usage_error() {
    for args in [
        &["--sandbox", "--tools", "list_orders,delete_everything"][..],
        &["--sandbox", "--tools", "create_order", "--read-only"],
        &["tools", "--tools", "nope"],
    ] {
        let out = common::command(args, &[]).output().await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(
            stderr.contains("list_orders"),
            "{args:?} names the tools: {stderr}"
        );
    }
    let out = common::command(&["tools", "--tools", "get_order"], &[])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let printed: Vec<Tool> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed.len(), 1);
    assert_eq!(printed[0].name, "get_order");
}

/// What a model reads of the tool list on every turn stays within its budget, and keeps the
/// rules an agent needs.
#[test]
fn definitions_cost_little_and_say_enough() {
    let tools = OrderServer::tool_definitions();
    let read: Vec<serde_json::Value> = tools
        .iter()
        .map(|t| json!({"name": t.name, "description": t.description, "inputSchema": t.input_schema}))
        .collect();
    let bytes: usize = read
        .iter()
        .map(|t| serde_json::to_string(t).unwrap().len())
        .sum();
    assert!(
        bytes <= DEFINITIONS_BUDGET,
        "the tool definitions a model reads are {bytes} bytes, over the budget of {DEFINITIONS_BUDGET}"
    );
    let text = serde_json::to_string(&read).unwrap();
    assert!(!text.contains("$schema"), "no boilerplate");
    for rule in [
        "confirmation_token",
        "explicitly approve",
        "single-use",
        "\"full\"",
        "up to 10 per page",
        "Answers from the orders this server keeps",
        "up to 100 characters",
    ] {
        assert!(text.contains(rule), "the definitions say {rule:?}");
    }
}

fn compare(snapshot: &str, tools: &[Tool]) {
    let actual = serde_json::to_string_pretty(tools).unwrap() + "\n";
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(snapshot, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(snapshot).unwrap_or_default();
    assert!(
        actual == expected,
        "{snapshot} changed. If intended, run `UPDATE_SNAPSHOTS=1 cargo test --test integration tools_snapshot` and review the diff.\nActual:\n{actual}"
    );
}
