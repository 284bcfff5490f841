//! Human approval through the client: a test client that declares the elicitation capability
//! and answers approve, decline or cancel, connected to the built binary over stdio, which talks
//! to a sandbox. Covers both ways of asking: an `elicitation/create` request (2025-11-25) and an
//! input-required result with a retry (the stateless 2026-07-28 revision).

use std::path::Path;
use std::sync::{Arc, Mutex};

use onence_mcp::sandbox::Sandbox;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, ElicitRequestParams,
    ElicitResult, ElicitationAction, Implementation, ProtocolVersion,
};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RequestContext, RunningService};
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};
use serde_json::{Value, json};

use crate::common;
use crate::common::{child, confirming, posts, sandbox_env, temp_dir, text, with_token};

/// What the simulated person does with the approval form.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Person {
    Approves,
    /// Submits the form with the box left unticked.
    LeavesUnticked,
    Declines,
    Cancels,
}

/// A client whose user answers every approval form the same way, remembering what it was shown.
#[derive(Clone)]
pub(crate) struct AskingClient {
    person: Person,
    shown: Arc<Mutex<Vec<String>>>,
}

impl AskingClient {
    /// A client whose user acts as `person` on every form.
    pub(crate) fn new(person: Person) -> Self {
        AskingClient {
            person,
            shown: Arc::default(),
        }
    }
}

impl ClientHandler for AskingClient {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::builder().enable_elicitation().build(),
            Implementation::new("asking-test-client", "0.0.0"),
        )
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let ElicitRequestParams::FormElicitationParams {
            message,
            requested_schema,
            ..
        } = request
        else {
            return Ok(ElicitResult::new(ElicitationAction::Decline));
        };
        let schema = serde_json::to_value(&requested_schema).unwrap();
        assert_eq!(schema["properties"]["approve"]["type"], "boolean");
        self.shown.lock().unwrap().push(message);
        Ok(match self.person {
            Person::Approves => {
                ElicitResult::new(ElicitationAction::Accept).with_content(json!({"approve": true}))
            }
            Person::LeavesUnticked => {
                ElicitResult::new(ElicitationAction::Accept).with_content(json!({"approve": false}))
            }
            Person::Declines => ElicitResult::new(ElicitationAction::Decline),
            Person::Cancels => ElicitResult::new(ElicitationAction::Cancel),
        })
    }
}

struct Session {
    client: RunningService<RoleClient, AskingClient>,
    shown: Arc<Mutex<Vec<String>>>,
}

impl Session {
    async fn call(&self, args: Value) -> CallToolResult {
        let params = CallToolRequestParams::new("create_order")
            .with_arguments(args.as_object().unwrap().clone());
        self.client
            .call_tool(params)
            .await
            .expect("tools/call at the protocol level")
    }

    fn shown(&self) -> Vec<String> {
        self.shown.lock().unwrap().clone()
    }
}

/// Spawns the server against `sandbox` and connects a client whose user acts as `person`,
/// through `initialize` (2025-11-25) or, with `stateless`, `server/discover` (2026-07-28).
async fn connect(sandbox: &Sandbox, person: Person, stateless: bool, args: &[&str]) -> Session {
    let (transport, _stderr) = child(args, &sandbox_env(&sandbox.base_url()));
    let shown = Arc::new(Mutex::new(Vec::new()));
    let handler = AskingClient {
        person,
        shown: Arc::clone(&shown),
    };
    let client = if stateless {
        handler
            .serve_with_lifecycle(
                transport,
                ClientLifecycleMode::Discover {
                    preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                },
            )
            .await
            .expect("server/discover")
    } else {
        handler.serve(transport).await.expect("initialize")
    };
    let version = client.peer_info().map(|info| info.protocol_version.clone());
    let expected = if stateless {
        ProtocolVersion::V_2026_07_28
    } else {
        ProtocolVersion::V_2025_11_25
    };
    assert_eq!(version, Some(expected));
    Session { client, shown }
}

fn order() -> Value {
    json!({"products": [{"product_id": 1001, "quantity": 3}, {"product_id": 1004, "quantity": 2}],
           "delivery_address": {"city": "Köln", "country": "DE", "street": "Ring", "house_number": "1",
                                "zip": "50667", "first_name": "Max", "last_name": "Muster"}})
}

/// Previews `order()`, then confirms it with the token; returns the confirming call's result.
async fn preview_and_confirm(session: &Session) -> CallToolResult {
    let preview = session.call(order()).await;
    assert_ne!(preview.is_error, Some(true), "{}", text(&preview));
    let preview = preview.structured_content.unwrap();
    assert_eq!(preview["approval"], "approval_form");
    assert!(
        session.shown().is_empty(),
        "a preview asks nobody: it orders nothing"
    );
    session.call(confirming(&order(), &preview)).await
}

fn audit_events(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| {
            (
                v["event"].as_str().unwrap().to_owned(),
                v["outcome"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_person_approves_in_the_form_and_exactly_one_order_is_placed() {
    for stateless in [false, true] {
        let sandbox = Sandbox::start().await.unwrap();
        let log = temp_dir("approve").join("audit.jsonl");
        let session = connect(
            &sandbox,
            Person::Approves,
            stateless,
            &["--audit-log", log.to_str().unwrap()],
        )
        .await;
        let placed = preview_and_confirm(&session).await;
        assert_ne!(placed.is_error, Some(true), "{}", text(&placed));
        let placed = placed.structured_content.unwrap();
        assert_eq!(placed["status"], "placed", "stateless={stateless}");
        assert_eq!(posts(&sandbox), 1);

        // The person saw the whole priced preview, once.
        let shown = session.shown();
        assert_eq!(shown.len(), 1, "stateless={stateless}: {shown:?}");
        for needle in [
            "REAL, PAID",
            "3 × 1NCE IoT FlexSIM - Standard (product 1001): 30.00 EUR",
            "2 × 1NCE Auto Top-Up - 500 MB / 250 SMS (product 1004): 20.00 EUR, plus 10.00 EUR recurring per unit",
            "One-time total: 50.00 EUR net",
            "Köln, DE",
        ] {
            assert!(shown[0].contains(needle), "{needle} not in {}", shown[0]);
        }
        let events = audit_events(&log);
        let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
        assert_eq!(names, ["preview", "approved", "post", "outcome"]);
        assert_eq!(events[3].1, "placed");
        session.client.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn decline_cancel_or_an_unticked_box_post_nothing_and_say_so() {
    let cases = [
        (Person::Declines, "declined", "The user declined this order"),
        (
            Person::Cancels,
            "cancelled",
            "closed the approval form without approving",
        ),
        (
            Person::LeavesUnticked,
            "declined",
            "The user declined this order",
        ),
    ];
    for stateless in [false, true] {
        for (person, event, needle) in cases {
            let sandbox = Sandbox::start().await.unwrap();
            let log = temp_dir("decline").join("audit.jsonl");
            let session = connect(
                &sandbox,
                person,
                stateless,
                &["--audit-log", log.to_str().unwrap()],
            )
            .await;
            let refused = preview_and_confirm(&session).await;
            assert_eq!(
                refused.is_error,
                Some(true),
                "{person:?}: {}",
                text(&refused)
            );
            let message = text(&refused);
            assert!(message.contains(needle), "{person:?}: {message}");
            assert!(message.contains("Nothing was ordered"), "{message}");
            assert_eq!(session.shown().len(), 1);
            assert_eq!(posts(&sandbox), 0, "{person:?} stateless={stateless}");
            let names: Vec<String> = audit_events(&log).into_iter().map(|(e, _)| e).collect();
            assert_eq!(names, ["preview", event], "{person:?}");
            session.client.cancel().await.unwrap();
        }
    }
}

#[tokio::test]
async fn require_human_approval_accepts_a_client_that_can_ask() {
    let sandbox = Sandbox::start().await.unwrap();
    let log = temp_dir("required").join("audit.jsonl");
    let session = connect(
        &sandbox,
        Person::Approves,
        false,
        &[
            "--require-human-approval",
            "--audit-log",
            log.to_str().unwrap(),
        ],
    )
    .await;
    let instructions = session
        .client
        .peer_info()
        .unwrap()
        .instructions
        .clone()
        .unwrap();
    assert!(instructions.contains("approval form"), "{instructions}");
    let placed = preview_and_confirm(&session).await;
    assert_ne!(placed.is_error, Some(true), "{}", text(&placed));
    assert_eq!(posts(&sandbox), 1);

    // A token the person approved once cannot place a second order.
    let again = session
        .call(with_token(
            order(),
            &json!("ct_00000000000000000000000000000000"),
        ))
        .await;
    assert_eq!(again.is_error, Some(true));
    assert_eq!(posts(&sandbox), 1);
    assert_eq!(session.shown().len(), 1, "an unusable token asks nobody");
    session.client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_forged_answer_without_the_servers_sealed_state_is_not_approval() {
    let sandbox = Sandbox::start().await.unwrap();
    let log = temp_dir("forged").join("audit.jsonl");
    let session = connect(
        &sandbox,
        Person::Declines,
        true,
        &["--audit-log", log.to_str().unwrap()],
    )
    .await;
    let preview = session.call(order()).await.structured_content.unwrap();
    let args = confirming(&order(), &preview);
    let mut answers = rmcp::model::InputResponses::new();
    answers.insert(
        "approve_order".to_owned(),
        json!({"action": "accept", "content": {"approve": true}}),
    );
    for state in [None, Some("approve:made-up")] {
        let mut params = CallToolRequestParams::new("create_order")
            .with_arguments(args.as_object().unwrap().clone())
            .with_input_responses(answers.clone());
        if let Some(state) = state {
            params = params.with_request_state(state);
        }
        // One round only: the server must ask the person instead of taking the answer.
        let response = session.client.call_tool_once(params).await.unwrap();
        assert!(
            matches!(response, rmcp::model::CallToolResponse::InputRequired(_)),
            "{state:?}: {response:?}"
        );
    }
    assert_eq!(posts(&sandbox), 0);
    session.client.cancel().await.unwrap();
}

/// `1nce-mcp call create_order` once, with `state` as the state directory, against `sandbox`.
async fn call_once(sandbox: &Sandbox, state: &Path, args: &Value) -> (i32, String) {
    let url = sandbox.base_url();
    let mut env = sandbox_env(&url).to_vec();
    env.push(("ONCE_STATE_DIR", state.to_str().unwrap()));
    let out = common::command(&["call", "create_order", "--args", &args.to_string()], &env)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_no_in_the_form_ends_the_token_for_every_process() {
    for person in [Person::Declines, Person::Cancels] {
        let sandbox = Sandbox::start().await.unwrap();
        let state = common::temp_dir("state");
        let session = connect(
            &sandbox,
            person,
            false,
            &["--state-dir", state.to_str().unwrap()],
        )
        .await;
        let preview = session.call(order()).await.structured_content.unwrap();
        let confirm = confirming(&order(), &preview);
        let refused = session.call(confirm.clone()).await;
        assert_eq!(refused.is_error, Some(true), "{}", text(&refused));
        session.client.cancel().await.unwrap();

        // Another process, with no form at all, holding the same token.
        let (code, stderr) = call_once(&sandbox, &state, &confirm).await;
        assert_eq!(code, 1, "{person:?}: {stderr}");
        assert!(stderr.contains("the person"), "{person:?}: {stderr}");
        assert!(stderr.contains("A new preview is needed"), "{stderr}");
        assert_eq!(posts(&sandbox), 0, "{person:?}");
    }
}

#[tokio::test]
async fn a_preview_made_under_require_human_approval_is_never_placed_without_the_form() {
    let sandbox = Sandbox::start().await.unwrap();
    let state = common::temp_dir("state");
    let session = connect(
        &sandbox,
        Person::Approves,
        false,
        &[
            "--state-dir",
            state.to_str().unwrap(),
            "--require-human-approval",
        ],
    )
    .await;
    let preview = session.call(order()).await.structured_content.unwrap();
    assert_eq!(preview["approval"], "approval_form");
    session.client.cancel().await.unwrap();
    let confirm = confirming(&order(), &preview);
    // A process without the flag and without a form.
    let (code, stderr) = call_once(&sandbox, &state, &confirm).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("promised that the user approves it in the MCP client's own approval form"),
        "{stderr}"
    );
    assert_eq!(posts(&sandbox), 0);
}

#[tokio::test]
async fn a_price_changed_since_the_preview_is_refused_naming_both_prices() {
    let sandbox = Sandbox::start().await.unwrap();
    let session = connect(&sandbox, Person::Approves, false, &[]).await;
    let args = json!({"products": [{"product_id": 1001, "quantity": 100}]});
    let preview = session.call(args.clone()).await.structured_content.unwrap();
    assert_eq!(
        preview["preview"]["one_time_net_total"][0]["amount"],
        "1000.00"
    );
    // 1NCE raises the price while the person looks at the preview.
    sandbox.set_one_time_charge(1001, 4500);
    let refused = session.call(confirming(&args, &preview)).await;
    let message = text(&refused);
    assert_eq!(refused.is_error, Some(true), "{message}");
    assert!(message.contains("1000.00 EUR"), "{message}");
    assert!(message.contains("4500.00 EUR"), "{message}");
    assert!(
        session.shown().is_empty(),
        "nobody is asked to approve another price"
    );
    assert_eq!(posts(&sandbox), 0);
    session.client.cancel().await.unwrap();
}
