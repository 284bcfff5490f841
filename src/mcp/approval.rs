//! Asking the person, not the agent: when the MCP client declares the elicitation capability,
//! the confirming `create_order` call shows the user the preview in the client's own form and
//! posts only if they approve.
//!
//! Two ways to ask, by protocol revision:
//! - up to 2025-11-25, a server-to-client `elicitation/create` request during the call;
//! - on the stateless 2026-07-28 revision, which forbids server-to-client requests, an
//!   input-required result (multi round-trip): the client asks the user and calls again with the
//!   answer in `inputResponses`, and the `requestState` we handed out.
//!
//! Anything but an explicit "approve" (decline, cancel, no answer, a malformed answer, a client
//! that cannot ask) is not approval.

use std::time::Duration;

use rmcp::model::{
    ElicitRequest, ElicitRequestParams, ElicitResult, ElicitationAction, ElicitationSchema,
    InputRequest, InputRequests, InputRequiredResult, ProtocolVersion, RequestStateCodec,
    SealOptions,
};
use rmcp::service::{ElicitationError, RequestContext};
use rmcp::{RoleServer, elicit_safe};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::orders::PersonAnswer;

/// Key of our question in an input-required result and in the client's answers.
pub(super) const INPUT_KEY: &str = "approve_order";

/// The form the user fills in: one yes/no field, on top of the client's accept/decline buttons.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "Approve this 1NCE order")]
pub struct OrderApproval {
    /// Tick to place this paid order exactly as shown; leave unticked or decline to order nothing.
    #[schemars(title = "Place this order")]
    pub approve: bool,
}

elicit_safe!(OrderApproval);

/// Seals the `requestState` of an approval question with a key only this server knows (derived
/// from the confirmation signing key, so every replica sharing that key opens the others'
/// seals), so a retry can only carry an answer to a question this server asked, about this
/// exact order, and not long ago.
pub(super) struct StateSeal {
    codec: RequestStateCodec,
    ttl: Duration,
}

impl StateSeal {
    pub(super) fn new(key: [u8; 32], ttl: Duration) -> Self {
        StateSeal {
            // 32 bytes is RequestStateCodec::MIN_KEY_LENGTH, so the length check cannot fail.
            codec: RequestStateCodec::new_unchecked(key.to_vec()),
            ttl,
        }
    }

    /// The sealed state for a question about `subject` (the order and token it concerns).
    pub(super) fn seal(&self, subject: &str) -> String {
        self.codec
            .seal_with(subject.as_bytes(), &SealOptions::new().ttl(self.ttl))
    }

    /// Whether `state` is a seal of this server over exactly `subject`, still fresh.
    pub(super) fn opens_to(&self, state: Option<&str>, subject: &str) -> bool {
        state
            .and_then(|s| self.codec.open(s).ok())
            .is_some_and(|payload| payload == subject.as_bytes())
    }
}

/// Whether this request's client can show its user a form.
pub(super) fn client_can_ask(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.client_capabilities()
        .and_then(|caps| caps.elicitation)
        .is_some_and(|e| e.form.is_some() || e.url.is_none())
}

/// Whether this request belongs to the stateless revision, where the server may not send
/// requests to the client and must return an input-required result instead.
pub(super) fn stateless(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.protocol_version()
        .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28)
}

fn answer_of(result: ElicitResult) -> PersonAnswer {
    match result.action {
        ElicitationAction::Accept => {
            match result.content.map(serde_json::from_value::<OrderApproval>) {
                Some(Ok(OrderApproval { approve: true })) => PersonAnswer::Approved,
                Some(Ok(OrderApproval { approve: false })) => PersonAnswer::Declined,
                Some(Err(e)) => {
                    PersonAnswer::NoAnswer(format!("the form came back malformed ({e})"))
                }
                None => PersonAnswer::NoAnswer("the form came back empty".to_owned()),
            }
        }
        ElicitationAction::Decline => PersonAnswer::Declined,
        ElicitationAction::Cancel => PersonAnswer::Cancelled,
        // A future kind of answer is not an approval.
        _ => {
            PersonAnswer::NoAnswer("the client gave an answer this server does not know".to_owned())
        }
    }
}

/// Asks the user through an `elicitation/create` request (sessions before 2026-07-28).
pub(super) async fn ask(
    ctx: &RequestContext<RoleServer>,
    message: String,
    timeout: Duration,
) -> PersonAnswer {
    match ctx
        .peer
        .elicit_with_timeout::<OrderApproval>(message, Some(timeout))
        .await
    {
        Ok(Some(OrderApproval { approve: true })) => PersonAnswer::Approved,
        Ok(Some(OrderApproval { approve: false })) => PersonAnswer::Declined,
        Ok(None) | Err(ElicitationError::NoContent) => {
            PersonAnswer::NoAnswer("the form came back empty".to_owned())
        }
        Err(ElicitationError::UserDeclined) => PersonAnswer::Declined,
        Err(ElicitationError::UserCancelled) => PersonAnswer::Cancelled,
        Err(ElicitationError::ParseError { error, .. }) => {
            PersonAnswer::NoAnswer(format!("the form came back malformed ({error})"))
        }
        Err(ElicitationError::CapabilityNotSupported) => {
            PersonAnswer::NoAnswer("the client cannot show an approval form".to_owned())
        }
        Err(other) => PersonAnswer::NoAnswer(format!("the approval request failed ({other})")),
    }
}

/// The input-required result that asks the user (2026-07-28 sessions). `state` comes back in
/// the retry and ties the answer to this exact order.
pub(super) fn input_required(
    message: String,
    state: String,
) -> Result<InputRequiredResult, String> {
    let schema = ElicitationSchema::from_type::<OrderApproval>()
        .map_err(|e| format!("could not build the approval form: {e}"))?;
    let mut requests = InputRequests::new();
    requests.insert(
        INPUT_KEY.to_owned(),
        InputRequest::Elicitation(ElicitRequest::new(
            ElicitRequestParams::FormElicitationParams {
                meta: None,
                message,
                requested_schema: schema,
            },
        )),
    );
    Ok(InputRequiredResult::new(Some(requests), Some(state)))
}

/// Reads the user's answer from a retried call's input responses. `None` when the call carries
/// no answer to our question (so the question must be asked).
pub(super) fn answer_from_responses(
    responses: Option<&rmcp::model::InputResponses>,
) -> Option<PersonAnswer> {
    let value = responses?.get(INPUT_KEY)?.clone();
    Some(match serde_json::from_value::<ElicitResult>(value) {
        Ok(result) => answer_of(result),
        Err(e) => PersonAnswer::NoAnswer(format!("the answer is not an elicitation result ({e})")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_an_explicit_approval_counts() {
        let answer = |v: serde_json::Value| {
            let mut map = rmcp::model::InputResponses::new();
            map.insert(INPUT_KEY.to_owned(), v);
            answer_from_responses(Some(&map)).unwrap()
        };
        assert_eq!(
            answer(json!({"action": "accept", "content": {"approve": true}})),
            PersonAnswer::Approved
        );
        assert_eq!(
            answer(json!({"action": "accept", "content": {"approve": false}})),
            PersonAnswer::Declined
        );
        assert!(matches!(
            answer(json!({"action": "accept"})),
            PersonAnswer::NoAnswer(_)
        ));
        assert!(matches!(
            answer(json!({"action": "accept", "content": {"approve": "yes"}})),
            PersonAnswer::NoAnswer(_)
        ));
        assert_eq!(answer(json!({"action": "decline"})), PersonAnswer::Declined);
        assert_eq!(answer(json!({"action": "cancel"})), PersonAnswer::Cancelled);
        assert!(matches!(
            answer(json!("approve")),
            PersonAnswer::NoAnswer(_)
        ));
        assert_eq!(answer_from_responses(None), None);
        assert_eq!(
            answer_from_responses(Some(&rmcp::model::InputResponses::new())),
            None
        );
    }

    #[test]
    fn sealed_states_open_only_to_their_subject() {
        let seal = StateSeal::new([1; 32], Duration::from_secs(60));
        let state = seal.seal("order-a");
        assert!(seal.opens_to(Some(&state), "order-a"));
        assert!(!seal.opens_to(Some(&state), "order-b"));
        assert!(!seal.opens_to(Some("order-a"), "order-a"));
        assert!(!seal.opens_to(None, "order-a"));
        let other = StateSeal::new([2; 32], Duration::from_secs(60));
        assert!(!other.opens_to(Some(&state), "order-a"));
    }

    #[test]
    fn the_form_is_one_boolean() {
        let result = input_required("m".into(), "s".into()).unwrap();
        let json = serde_json::to_value(&result).unwrap();
        let schema = &json["inputRequests"][INPUT_KEY]["params"]["requestedSchema"];
        assert_eq!(schema["properties"]["approve"]["type"], "boolean", "{json}");
    }
}
