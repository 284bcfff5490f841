//! `create_order`: preview, then, with the user's approval, place a real order.
//!
//! Without `confirmation_token` nothing is sent to 1NCE: the answer is a preview and a token
//! bound to exactly that order. With the token the order is posted once. The POST runs in its own
//! task, so a client that cancels or disconnects mid-call cannot cut it off between the POST and
//! the record of its outcome.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::confirm::Redemption;
use super::{Answer, OrderServer, ToolResult, list_orders::order_line, tool_error};
use crate::api::model::{DeliveryAddress, NewOrder, Order, ProductLine};
use crate::api::{ApiError, Client};

/// What ships when no delivery address is given.
const DEFAULT_ADDRESS: &str = "the account's default address";

/// Arguments of `create_order`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrderArgs {
    /// Products and quantities to order, at least one line, each product at most once.
    #[schemars(length(min = 1))]
    pub products: Vec<ProductLine>,
    /// Where to ship. Leave out to use the account's default delivery address (only if it has exactly one).
    pub delivery_address: Option<DeliveryAddress>,
    /// Optional customer-specific reference for the order (up to 100 characters).
    pub customer_reference: Option<String>,
    /// Token from this order's preview. Pass it only after the user explicitly approved that preview, with unchanged arguments.
    pub confirmation_token: Option<String>,
}

/// Whether the order was only previewed or placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CreateStatus {
    /// Nothing was ordered: show the preview to the user and confirm with the token after approval.
    ConfirmationRequired,
    /// 1NCE accepted the order.
    Placed,
}

/// Exactly what is (or would be) ordered.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct OrderPreview {
    /// Product lines with quantities.
    pub products: Vec<PreviewLine>,
    /// Where the order ships, in one line.
    pub ships_to: String,
    /// The delivery address as it will be sent, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_address: Option<DeliveryAddress>,
    /// The customer reference, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_reference: Option<String>,
}

/// One product line of a preview.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PreviewLine {
    /// Product id.
    pub product_id: u64,
    /// Quantity ordered.
    pub quantity: u64,
}

/// Result of `create_order`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CreateOrderOutput {
    /// "confirmation_required" (nothing ordered yet) or "placed".
    pub status: CreateStatus,
    /// What is ordered.
    pub preview: OrderPreview,
    /// Token that confirms exactly this preview (status confirmation_required only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmation_token: Option<String>,
    /// When the token expires (RFC 3339, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Number of the new order (status placed), when 1NCE reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_number: Option<u64>,
    /// The new order as 1NCE reports it, when it could be read back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<Order>,
    /// What to do next.
    pub next_step: String,
}

#[tool_router(router = create_order_router, vis = "pub(super)")]
impl OrderServer {
    #[tool(
        name = "create_order",
        title = "Order 1NCE SIM cards",
        description = "Place a real, paid 1NCE order that ships SIM cards. Two steps: without confirmation_token it only returns a preview and a token (nothing is ordered); show the preview to the user and, only after they explicitly approve, call again with the same arguments plus confirmation_token. The token is single-use and expires.",
        input_schema = super::schema::input::<CreateOrderArgs>(),
        output_schema = super::schema::output::<CreateOrderOutput>(),
        annotations(
            title = "Order 1NCE SIM cards",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    pub async fn create_order(
        &self,
        Parameters(args): Parameters<CreateOrderArgs>,
    ) -> ToolResult<CreateOrderOutput> {
        let order = NewOrder::new(
            &args.products,
            args.delivery_address.as_ref(),
            args.customer_reference.as_deref(),
        )
        .map_err(|e| format!("Invalid arguments: {e}. Nothing was ordered."))?;
        let preview = preview(&order);
        match args.confirmation_token.as_deref().map(str::trim) {
            None | Some("") => Ok(self.issue_preview(&order, preview)),
            Some(token) => {
                let redemption = self
                    .confirmations
                    .redeem(token, &order, &self.session_scope)
                    .map_err(|refusal| format!("Refused: {refusal}."))?;
                tracing::info!(products = ?order.products, "placing a confirmed 1NCE order");
                // Detached so that cancelling this call cannot interrupt the POST or lose its record.
                let client = self.client.clone();
                let guard = self.in_flight.enter();
                let posting = tokio::spawn(crate::api::pacing::inherit(async move {
                    let outcome = place(&client, &order, redemption).await;
                    drop(guard);
                    outcome
                }));
                let outcome = posting.await.map_err(|_| {
                    "The order task failed unexpectedly; whether 1NCE received the order is unknown. Do not retry: check list_orders first.".to_owned()
                })?;
                outcome.map(|(number, order)| placed_answer(preview, number, order))
            }
        }
    }
}

impl OrderServer {
    fn issue_preview(&self, order: &NewOrder, preview: OrderPreview) -> Answer<CreateOrderOutput> {
        let issued = self.confirmations.issue(order, &self.session_scope);
        let expires_at = issued
            .expires_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let next_step = format!(
            "Nothing has been ordered. Show this preview to the user. Only if they explicitly approve it, call create_order again with the same products, delivery_address and customer_reference plus confirmation_token \"{}\" before {expires_at}.",
            issued.token
        );
        let summary = format!(
            "CONFIRMATION REQUIRED. Preview: {}. {next_step}",
            describe(&preview)
        );
        Answer {
            data: CreateOrderOutput {
                status: CreateStatus::ConfirmationRequired,
                preview,
                confirmation_token: Some(issued.token),
                expires_at: Some(expires_at),
                order_number: None,
                order: None,
                next_step,
            },
            summary,
        }
    }
}

/// Posts the order once and settles the confirmation with the outcome. On success, reads the
/// new order back when its number is known (a failed read-back does not undo the success).
async fn place(
    client: &Client,
    order: &NewOrder,
    redemption: Redemption,
) -> Result<(Option<u64>, Option<Order>), String> {
    match client.create_order(order).await {
        Ok(created) => {
            redemption.placed(created.order_number);
            tracing::info!(order_number = ?created.order_number, "1NCE order placed");
            let order = match (created.order, created.order_number) {
                (Some(order), _) => Some(order),
                (None, Some(number)) => client.get_order(number).await.ok(),
                (None, None) => None,
            };
            Ok((created.order_number, order))
        }
        Err(error) if error.nothing_happened() => {
            redemption.nothing_placed();
            Err(format!(
                "1NCE did not place the order: {}. Nothing was ordered; the confirmation_token stays valid until it expires, so after fixing the cause the same approved order can be confirmed again.",
                tool_error(&error)
            ))
        }
        Err(error) => {
            redemption.outcome_unknown();
            tracing::error!(error = %error, "the outcome of an order POST is unknown");
            Err(match error {
                ApiError::OutcomeUnknown { .. } => format!("{error}."),
                other => format!(
                    "{other}. 1NCE may have placed the order. Do not retry: check list_orders (sort order_date) first."
                ),
            })
        }
    }
}

fn placed_answer(
    preview: OrderPreview,
    order_number: Option<u64>,
    order: Option<Order>,
) -> Answer<CreateOrderOutput> {
    let next_step = match order_number {
        Some(n) => format!("The order is placed. Follow its status with get_order {n}."),
        None => "The order is placed, but 1NCE did not report its number: find it with list_orders (sort order_date). Do not order again.".to_owned(),
    };
    let summary = match &order {
        Some(o) => format!("ORDER PLACED: {}. {next_step}", order_line(o)),
        None => format!("ORDER PLACED: {}. {next_step}", describe(&preview)),
    };
    Answer {
        data: CreateOrderOutput {
            status: CreateStatus::Placed,
            preview,
            confirmation_token: None,
            expires_at: None,
            order_number,
            order,
            next_step,
        },
        summary,
    }
}

fn preview(order: &NewOrder) -> OrderPreview {
    OrderPreview {
        products: order
            .products
            .iter()
            .map(|p| PreviewLine {
                product_id: p.product_id,
                quantity: p.quantity,
            })
            .collect(),
        ships_to: order
            .delivery_address
            .as_ref()
            .map(|a| a.to_string())
            .unwrap_or_else(|| DEFAULT_ADDRESS.to_owned()),
        delivery_address: order.delivery_address.clone(),
        customer_reference: order.customer_reference.clone(),
    }
}

/// The preview in one sentence, for the text summary.
fn describe(preview: &OrderPreview) -> String {
    let lines: Vec<String> = preview
        .products
        .iter()
        .map(|p| format!("{} × product {}", p.quantity, p.product_id))
        .collect();
    let mut text = format!("{}; ships to {}", lines.join(", "), preview.ships_to);
    if let Some(reference) = &preview.customer_reference {
        text.push_str(&format!("; reference {reference:?}"));
    }
    text
}
