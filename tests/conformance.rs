//! The official MCP conformance suite (npm `@modelcontextprotocol/conformance`, the version
//! pinned in `scripts/interop-setup`) against the built binary serving `--sandbox --http`:
//! every server scenario that applies to this server, each one a run of the suite's own client.
//!
//! Most scenarios exercise the SDKs' test servers: they call tools, prompts and resources with
//! fixed names (`test_simple_text`, `test://static-text`, ...) that a real server has no reason
//! to offer. Those are listed in [`NOT_APPLICABLE`] with the reason, and a test checks that the
//! two lists cover every server scenario the pinned suite has, so a new version's scenarios are
//! looked at rather than silently skipped.
//!
//! The suite runs on Node.js >= 22 (`ONCE_INTEROP_NODE22`) from `ONCE_INTEROP_CONFORMANCE`,
//! both set by `eval "$(scripts/interop-setup)"`. Without them these tests skip (listed at the
//! end of the run, see `common::skip`), or fail under `ONCE_INTEROP_REQUIRED=1`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::common::net::HttpServer;
use crate::interop::{client, run};

/// The scenarios this server must pass: the protocol itself, what it lists, and its HTTP
/// transport.
const APPLICABLE: [&str; 7] = [
    "server-initialize",
    "ping",
    "tools-list",
    "resources-list",
    "prompts-list",
    "server-sse-multiple-streams",
    "dns-rebinding-protection",
];

/// The scenarios that do not apply, and why.
const NOT_APPLICABLE: [(&str, &str); 25] = [
    (
        "logging-set-level",
        "the server declares no logging capability (its logs go to stderr)",
    ),
    (
        "completion-complete",
        "no completions capability; calls the SDK test prompt `test_prompt_with_arguments`",
    ),
    (
        "tools-call-simple-text",
        "calls the SDK test tool `test_simple_text`",
    ),
    (
        "tools-call-image",
        "calls the SDK test tool `test_image_content`",
    ),
    (
        "tools-call-audio",
        "calls the SDK test tool `test_audio_content`",
    ),
    (
        "tools-call-embedded-resource",
        "calls the SDK test tool `test_embedded_resource`",
    ),
    (
        "tools-call-mixed-content",
        "calls the SDK test tool `test_multiple_content_types`",
    ),
    (
        "tools-call-with-logging",
        "calls the SDK test tool `test_tool_with_logging`",
    ),
    (
        "tools-call-error",
        "calls the SDK test tool `test_error_handling`",
    ),
    (
        "tools-call-with-progress",
        "calls the SDK test tool `test_tool_with_progress` (find_orders' progress is tested in find_orders.rs)",
    ),
    (
        "tools-call-sampling",
        "calls the SDK test tool `test_sampling`; the server never samples",
    ),
    (
        "tools-call-elicitation",
        "calls the SDK test tool `test_elicitation` (the approval form is tested in elicitation.rs)",
    ),
    (
        "json-schema-2020-12",
        "calls the SDK test tool `json_schema_2020_12_tool`",
    ),
    (
        "elicitation-sep1034-defaults",
        "calls the SDK test tool `test_elicitation_sep1034_defaults`",
    ),
    (
        "elicitation-sep1330-enums",
        "calls the SDK test tool `test_elicitation_sep1330_enums`",
    ),
    (
        "server-sse-polling",
        "calls the SDK test tool `test_reconnection`",
    ),
    (
        "resources-read-text",
        "reads the SDK test resource `test://static-text`",
    ),
    (
        "resources-read-binary",
        "reads the SDK test resource `test://static-binary`",
    ),
    (
        "resources-templates-read",
        "reads the SDK test template `test://template/{id}/data`",
    ),
    (
        "resources-subscribe",
        "no resource subscriptions: orders change in 1NCE, which sends no events",
    ),
    (
        "resources-unsubscribe",
        "no resource subscriptions, as for resources-subscribe",
    ),
    (
        "prompts-get-simple",
        "gets the SDK test prompt `test_simple_prompt`",
    ),
    (
        "prompts-get-with-args",
        "gets the SDK test prompt `test_prompt_with_arguments`",
    ),
    (
        "prompts-get-embedded-resource",
        "gets the SDK test prompt `test_prompt_with_embedded_resource`",
    ),
    (
        "prompts-get-with-image",
        "gets the SDK test prompt `test_prompt_with_image`",
    ),
];

/// Node.js >= 22 and the suite's entry point, when installed.
fn suite() -> Option<(PathBuf, PathBuf)> {
    Some((
        client("ONCE_INTEROP_NODE22")?,
        client("ONCE_INTEROP_CONFORMANCE")?,
    ))
}

#[tokio::test]
async fn every_server_scenario_of_the_suite_is_run_or_explained() {
    let Some((node, conformance)) = suite() else {
        return;
    };
    let (ok, stdout, stderr) =
        run(&node, &[conformance.display().to_string(), "list".into()]).await;
    assert!(ok, "conformance list failed:\n{stdout}\n{stderr}");
    // "Server scenarios ...:" then "  - name [versions]" lines, up to the client scenarios.
    let offered: BTreeSet<&str> = stdout
        .split("Client scenarios")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let known: BTreeSet<&str> = APPLICABLE
        .into_iter()
        .chain(NOT_APPLICABLE.map(|(name, _)| name))
        .collect();
    assert_eq!(
        known.len(),
        APPLICABLE.len() + NOT_APPLICABLE.len(),
        "a scenario is listed twice"
    );
    assert_eq!(
        offered, known,
        "the suite's server scenarios changed: sort each new one into APPLICABLE or NOT_APPLICABLE"
    );
}

#[tokio::test]
async fn the_server_passes_every_scenario_that_applies() {
    let Some((node, conformance)) = suite() else {
        return;
    };
    // No token: the suite's client sends none, and the DNS-rebinding scenario is about
    // tokenless loopback servers.
    let server = HttpServer::spawn(&["--sandbox"], &[]).await;
    let results = crate::common::temp_dir("conformance");
    let mut failed = Vec::new();
    for scenario in APPLICABLE {
        let args = [
            conformance.display().to_string(),
            "server".into(),
            "--url".into(),
            server.url("/mcp"),
            "--scenario".into(),
            scenario.into(),
            "--output-dir".into(),
            results.display().to_string(),
        ];
        let (ok, stdout, stderr) = run(&node, &args).await;
        if !ok {
            failed.push(format!("{scenario}:\n{stdout}\n{stderr}"));
        }
    }
    assert!(
        failed.is_empty(),
        "conformance failures:\n{}",
        failed.join("\n")
    );
    server.stop().await;
}
