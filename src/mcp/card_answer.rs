//! `answer_order_card`: the order card's click, Place order or Decline. Only the card calls it
//! (see `order_card.rs`); it goes down the same order path as every confirmation, with the
//! card's nonce as the proof that the click answers this very preview.

use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::OrderServer;
use super::create_order::{placed_answer, preview};
use crate::api::model::{DeliveryAddress, Order, ProductLine};
use crate::orders::desk::{Placed, Request};
use crate::orders::{Approval, CanShow, OrderError, PersonAnswer};

/// Arguments of the card's click.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CardAnswerArgs {
    /// The order exactly as previewed (the create_order arguments the card was shown for).
    #[schemars(length(min = 1))]
    pub products: Vec<ProductLine>,
    pub delivery_address: Option<DeliveryAddress>,
    pub customer_reference: Option<String>,
    /// The preview's token.
    pub confirmation_token: String,
    /// The preview's approval nonce, from its result's `_meta`.
    pub approval_nonce: String,
    /// What the person clicked.
    pub decision: CardDecision,
}

/// What the person clicked in the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CardDecision {
    Place,
    Decline,
}

/// How the click ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CardOutcome {
    /// 1NCE accepted the order.
    Placed,
    /// The person declined; the token can never place the order.
    Declined,
    /// Nothing was ordered (the message says why).
    Refused,
    /// Whether 1NCE created the order is unknown: never order again before looking.
    Unknown,
}

/// Result of the card's click.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CardAnswerOutput {
    pub outcome: CardOutcome,
    /// What happened, in words for the person (refusals and unknown outcomes say what to do).
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_number: Option<u64>,
    /// The new order as 1NCE reports it, when it could be read back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<Order>,
}

impl IntoCallToolResult for CardAnswerOutput {
    fn into_call_tool_result(self) -> Result<CallToolResponse, ErrorData> {
        let failed = matches!(self.outcome, CardOutcome::Refused | CardOutcome::Unknown);
        let value = serde_json::to_value(&self).map_err(|e| {
            ErrorData::internal_error(format!("could not serialise the result: {e}"), None)
        })?;
        let mut result = CallToolResult::success(vec![ContentBlock::text(self.message)]);
        result.structured_content = Some(value);
        result.is_error = Some(failed);
        Ok(result.into())
    }
}

impl CardAnswerOutput {
    fn stopped(error: OrderError) -> CardAnswerOutput {
        let outcome = match &error {
            OrderError::Unknown(_) | OrderError::TaskDied => CardOutcome::Unknown,
            OrderError::Stopped(crate::orders::Stop::NotApproved(..)) => CardOutcome::Declined,
            OrderError::Stopped(_) => CardOutcome::Refused,
        };
        let message = match outcome {
            CardOutcome::Declined => {
                "You declined this order. Nothing was ordered, and this preview can no longer place it.".to_owned()
            }
            _ => error.to_string(),
        };
        CardAnswerOutput {
            outcome,
            message,
            order_number: None,
            order: None,
        }
    }
}

#[tool_router(router = order_card_router, vis = "pub(super)")]
impl OrderServer {
    #[tool(
        name = "answer_order_card",
        title = "Answer the order card",
        description = "Only the order card calls this, when the person clicks Place order or Decline. It places the previewed order once, or ends its token.",
        input_schema = super::schema::input::<CardAnswerArgs>(),
        output_schema = super::schema::output::<CardAnswerOutput>(),
        annotations(
            title = "Answer the order card",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    pub async fn answer_order_card(
        &self,
        Parameters(args): Parameters<CardAnswerArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CardAnswerOutput, super::ToolError> {
        let checked = match self
            .desk
            .check(Request {
                products: &args.products,
                delivery_address: args.delivery_address.as_ref(),
                customer_reference: args.customer_reference.as_deref(),
                confirmation_token: Some(&args.confirmation_token),
                scope: &self.session_scope,
                person: super::caller(&ctx).map(|c| &c.person),
                can_show: CanShow {
                    form: false,
                    card: true,
                },
                card_nonce: Some(&args.approval_nonce),
            })
            .await
        {
            Ok(checked) => checked,
            Err(e) => return Ok(CardAnswerOutput::stopped(e)),
        };
        let answer = match args.decision {
            CardDecision::Place => PersonAnswer::Approved,
            CardDecision::Decline => PersonAnswer::Declined,
        };
        if let Err(e) = self
            .desk
            .answered(&checked, &answer, Approval::OrderCard)
            .await
        {
            return Ok(CardAnswerOutput::stopped(e));
        }
        let preview = preview(&checked);
        Ok(
            match self.place_detached(checked, Approval::OrderCard).await {
                Ok(placed) => placed_output(preview, placed),
                Err(e) => CardAnswerOutput::stopped(e),
            },
        )
    }
}

fn placed_output(preview: super::OrderPreview, placed: Placed) -> CardAnswerOutput {
    let message = match placed.order_number {
        Some(n) => format!("Order {n} is placed."),
        None => "The order is placed; 1NCE did not report its number yet.".to_owned(),
    };
    let (order_number, order) = (placed.order_number, placed.order.clone());
    // The order's lines as every other answer words them, for a host that logs the result.
    let detail = placed_answer(preview, placed).summary;
    CardAnswerOutput {
        outcome: CardOutcome::Placed,
        message: format!("{message}\n{detail}"),
        order_number,
        order,
    }
}
