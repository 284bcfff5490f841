//! What agents see: `tools/list` compared with a committed snapshot, so an accidental change to a
//! tool's name, description, schema or annotations fails here. After an intended change, run
//! `UPDATE_SNAPSHOTS=1 cargo test --test integration tools_snapshot` and review the diff of
//! `tests/snapshots/tools_list.json`.

use onence_mcp::api::{Client, ClientConfig, Credentials};
use onence_mcp::mcp::{OrderServer, ServerOptions};
use onence_mcp::orders::Confirmations;
use rmcp::ServiceExt;

const SNAPSHOT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/snapshots/tools_list.json"
);

#[tokio::test]
async fn tools_list_matches_the_snapshot() {
    // Listing tools makes no 1NCE request, so the client may point nowhere.
    let client = Client::new(ClientConfig::new(
        "http://127.0.0.1:9".parse().unwrap(),
        Credentials::new("unused", "unused"),
    ))
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let confirmations =
        Confirmations::open(state.path(), std::time::Duration::from_secs(60)).unwrap();
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
    let actual = serde_json::to_string_pretty(&tools).unwrap() + "\n";
    client.cancel().await.unwrap();
    assert_eq!(
        serde_json::to_value(&tools).unwrap(),
        serde_json::to_value(OrderServer::tool_definitions()).unwrap(),
        "`1nce-mcp tools` prints what tools/list shows"
    );

    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(SNAPSHOT, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(SNAPSHOT).unwrap_or_default();
    assert!(
        actual == expected,
        "tools/list changed. If intended, run `UPDATE_SNAPSHOTS=1 cargo test --test integration tools_snapshot` and review the diff.\nActual:\n{actual}"
    );
}
