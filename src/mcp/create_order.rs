//! `create_order`: preview, then, with the user's approval, place a real order.
//!
//! Without `confirmation_token` nothing is sent to 1NCE: the order is checked against the 1NCE
//! catalogue and the operator's limits, priced, and answered with a preview and a token bound to
//! exactly that order. With the token, and (when the client can ask its user) the user's approval
//! in the client's own form, the order is posted once. The POST runs in its own task, so a client
//! that cancels or disconnects mid-call cannot cut it off between the POST and the record of its
//! outcome. Every step is written to the audit log first; a step that cannot be audited is not
//! taken.

use chrono::Utc;
use rmcp::handler::server::tool::{InputResponses, IntoCallToolResult, RequestState};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResponse, InputRequiredResult};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::approval::{self, Answer as UserAnswer};
use super::{Answer, OrderServer, list_orders::order_line, tool_error};
use crate::api::model::{DeliveryAddress, NewOrder, Order, ProductLine};
use crate::api::{ApiError, Client};
use crate::orders::audit::{AuditLog, Event, Record, content_hash, token_id};
use crate::orders::checks::{Money, PricedLine, PricedOrder, check_order};
use crate::orders::lost_answer;
use crate::orders::tokens::Redemption;

/// What ships when no delivery address is given.
const DEFAULT_ADDRESS: &str = "the account's default address";
/// How the approval was given, in the audit trail.
const BY_FORM: &str = "elicitation";
const BY_TOKEN: &str = "confirmation_token";

/// Arguments of `create_order`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrderArgs {
    /// Products and quantities to order, at least one line, each product at most once (list_products shows ids and allowed quantities).
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

/// Exactly what is (or would be) ordered, and what it costs.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct OrderPreview {
    /// Product lines with names, quantities and net charges from the 1NCE catalogue.
    pub products: Vec<PricedLine>,
    /// One-time net total of the order, per currency (VAT not included).
    pub one_time_net_total: Vec<Money>,
    /// Where the order ships, in one line.
    pub ships_to: String,
    /// The delivery address as it will be sent, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_address: Option<DeliveryAddress>,
    /// The customer reference, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_reference: Option<String>,
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
    /// How the order gets approved: "approval_form" (the client asks the user in its own form when the token is used) or "confirmation_token" (the agent must ask the user).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    /// Number of the new order (status placed), when 1NCE reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_number: Option<u64>,
    /// The new order as 1NCE reports it, when it could be read back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<Order>,
    /// What to do next.
    pub next_step: String,
}

/// A finished answer, or (stateless sessions) a question for the user first.
pub enum Reply {
    Done(Box<Answer<CreateOrderOutput>>),
    AskUser(InputRequiredResult),
}

impl IntoCallToolResult for Reply {
    fn into_call_tool_result(self) -> Result<CallToolResponse, ErrorData> {
        match self {
            Reply::Done(answer) => (*answer).into_call_tool_result(),
            Reply::AskUser(question) => Ok(question.into()),
        }
    }
}

#[tool_router(router = create_order_router, vis = "pub(super)")]
impl OrderServer {
    #[tool(
        name = "create_order",
        title = "Order 1NCE SIM cards",
        description = "Place a real, paid 1NCE order that ships SIM cards. Two steps: without confirmation_token it only checks the order against the 1NCE catalogue and limits and returns a priced preview and a token (nothing is ordered); show the preview to the user and, only after they explicitly approve, call again with the same arguments plus confirmation_token. The token is single-use and expires. If the client can show the user a form, the user is also asked there before anything is ordered.",
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
        ctx: RequestContext<RoleServer>,
        RequestState(state): RequestState,
        InputResponses(responses): InputResponses,
    ) -> Result<Reply, String> {
        let order = NewOrder::new(
            &args.products,
            args.delivery_address.as_ref(),
            args.customer_reference.as_deref(),
        )
        .map_err(|e| format!("Invalid arguments: {e}. Nothing was ordered."))?;
        let token = args
            .confirmation_token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        // A token that cannot be used is refused before anything is asked of 1NCE or anyone.
        if let Some(token) = token {
            self.confirmations
                .check(token, &order, &self.session_scope)
                .map_err(|refusal| {
                    self.refuse(&order, Some(token), format!("Refused: {refusal}."))
                })?;
        }
        let catalogue = self.catalogue.products().await.map_err(|e| {
            format!(
                "Could not read the 1NCE product catalogue to check the order: {}. Nothing was ordered.",
                tool_error(&e)
            )
        })?;
        let priced = check_order(&order, &catalogue, &self.limits)
            .map_err(|why| self.refuse(&order, token, why))?;
        let can_ask = approval::client_can_ask(&ctx);
        if self.require_human_approval && !can_ask {
            return Err(self.refuse(
                &order,
                token,
                "Refused: this server requires each order to be approved by a person in the MCP client's own approval form (--require-human-approval), and this client cannot show one (it does not declare the elicitation capability). Nothing was ordered. Use an MCP client that supports elicitation, or ask the server's operator to run it without --require-human-approval".to_owned(),
            ));
        }
        let preview = preview(&order, &priced);
        let Some(token) = token else {
            return self
                .issue_preview(&order, preview, can_ask)
                .map(|a| Reply::Done(Box::new(a)));
        };

        let approved_by = if can_ask {
            let answer = if approval::stateless(&ctx) {
                let subject = format!("approve:{}:{}", content_hash(&order), token_id(token));
                match approval::answer_from_responses(responses.as_ref()) {
                    Some(answer) if self.state_seal.opens_to(state.as_deref(), &subject) => answer,
                    _ => {
                        let expected = self.state_seal.seal(&subject);
                        let question =
                            approval::input_required(approval_message(&preview), expected)?;
                        return Ok(Reply::AskUser(question));
                    }
                }
            } else {
                approval::ask(&ctx, approval_message(&preview), self.approval_timeout).await
            };
            self.record_answer(&order, token, &answer)?;
            if answer != UserAnswer::Approved {
                return Err(not_approved(&answer));
            }
            BY_FORM
        } else {
            BY_TOKEN
        };

        // Redeemed again only now: the person may have taken a while, and the token may have
        // expired or been used by a parallel call meanwhile.
        let redemption = self
            .confirmations
            .redeem(token, &order, &self.session_scope)
            .map_err(|refusal| self.refuse(&order, Some(token), format!("Refused: {refusal}.")))?;
        if let Err(e) = self
            .audit
            .write(&Record::new(Event::Post, &order, Some(token)).approval(approved_by))
        {
            redemption.nothing_placed();
            return Err(format!("Refused: {e}. Nothing was ordered."));
        }
        tracing::info!(products = ?order.products, approved_by, "placing a confirmed 1NCE order");
        // Detached so that cancelling this call cannot interrupt the POST or lose its record.
        let client = self.client.clone();
        let audit = self.audit.clone();
        let token_id = token_id(token);
        let guard = self.in_flight.enter();
        // The task carries the call's pacing record, so waits inside it reach the answer too.
        let posting = tokio::spawn(crate::api::pacing::inherit(async move {
            let outcome = place(&client, &audit, &order, &token_id, redemption).await;
            drop(guard);
            outcome
        }));
        let outcome = posting.await.map_err(|_| {
            "The order task failed unexpectedly; whether 1NCE received the order is unknown. Do not retry: check list_orders first.".to_owned()
        })?;
        outcome.map(|placed| Reply::Done(Box::new(placed_answer(preview, placed))))
    }
}

impl OrderServer {
    fn issue_preview(
        &self,
        order: &NewOrder,
        preview: OrderPreview,
        can_ask: bool,
    ) -> Result<Answer<CreateOrderOutput>, String> {
        let issued = self.confirmations.issue(order, &self.session_scope);
        // Recorded before the token is shown: a token nobody can trace is never handed out.
        self.audit
            .write(
                &Record::new(Event::Preview, order, Some(&issued.token)).approval(if can_ask {
                    BY_FORM
                } else {
                    BY_TOKEN
                }),
            )
            .map_err(|e| format!("Refused: {e}. Nothing was ordered."))?;
        let expires_at = issued
            .expires_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let next_step = if can_ask {
            format!(
                "Nothing has been ordered. Show this preview to the user. If they want to go ahead, call create_order again with the same products, delivery_address and customer_reference plus confirmation_token \"{}\" before {expires_at}: the user will then be asked to approve the order in this client's approval form, and nothing is ordered unless they approve there.",
                issued.token
            )
        } else {
            format!(
                "Nothing has been ordered. Show this preview to the user. Only if they explicitly approve it, call create_order again with the same products, delivery_address and customer_reference plus confirmation_token \"{}\" before {expires_at}.",
                issued.token
            )
        };
        let summary = format!(
            "CONFIRMATION REQUIRED. Preview: {}. {next_step}",
            describe(&preview)
        );
        Ok(Answer {
            data: CreateOrderOutput {
                status: CreateStatus::ConfirmationRequired,
                preview,
                confirmation_token: Some(issued.token),
                expires_at: Some(expires_at),
                approval: Some(if can_ask { "approval_form" } else { BY_TOKEN }.to_owned()),
                order_number: None,
                order: None,
                next_step,
            },
            summary,
        })
    }

    /// Audits a refusal (best effort: nothing is ordered either way) and returns its message.
    fn refuse(&self, order: &NewOrder, token: Option<&str>, why: String) -> String {
        let _ = self.audit.write(
            &Record::new(Event::Refused, order, token)
                .outcome("refused")
                .detail(why.clone()),
        );
        why
    }

    /// Audits the user's answer; an answer that cannot be recorded stops the order.
    fn record_answer(
        &self,
        order: &NewOrder,
        token: &str,
        answer: &UserAnswer,
    ) -> Result<(), String> {
        let event = match answer {
            UserAnswer::Approved => Event::Approved,
            UserAnswer::Declined => Event::Declined,
            UserAnswer::Cancelled | UserAnswer::Unanswered(_) => Event::Cancelled,
        };
        let mut record = Record::new(event, order, Some(token))
            .approval(BY_FORM)
            .outcome(answer.as_str());
        if let UserAnswer::Unanswered(why) = answer {
            record = record.detail(why.clone());
        }
        self.audit
            .write(&record)
            .map_err(|e| format!("Refused: {e}. Nothing was ordered."))
    }
}

fn not_approved(answer: &UserAnswer) -> String {
    let what = match answer {
        UserAnswer::Declined => "The user declined this order in the approval form".to_owned(),
        UserAnswer::Cancelled => {
            "The user closed the approval form without approving this order".to_owned()
        }
        UserAnswer::Unanswered(why) => format!("The user's approval could not be obtained: {why}"),
        UserAnswer::Approved => unreachable!("not_approved is only called without approval"),
    };
    format!(
        "{what}. Nothing was ordered and nothing was sent to 1NCE. Do not ask again unless the user asks you to."
    )
}

/// The text of the approval form: the whole preview with prices.
fn approval_message(preview: &OrderPreview) -> String {
    let mut text = String::from(
        "Approve this REAL, PAID 1NCE order? It ships SIM cards and is charged to the account.\n",
    );
    for line in &preview.products {
        text.push_str(&format!(
            "\n- {} × {} (product {}): {}",
            line.quantity,
            line.name,
            line.product_id,
            money(&line.one_time_net, "no one-time charge")
        ));
        if !line.recurring_net_per_unit.is_empty() {
            text.push_str(&format!(
                ", plus {} recurring per unit",
                money(&line.recurring_net_per_unit, "")
            ));
        }
    }
    text.push_str(&format!(
        "\n\nOne-time total: {} net (plus VAT)\nShips to: {}",
        money(&preview.one_time_net_total, "0.00"),
        preview.ships_to
    ));
    if let Some(reference) = &preview.customer_reference {
        text.push_str(&format!("\nReference: {reference}"));
    }
    text
}

fn money(list: &[Money], none: &str) -> String {
    if list.is_empty() {
        return none.to_owned();
    }
    list.iter()
        .map(|m| format!("{} {}", m.amount, m.currency))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// A placed order: its number and, when it could be read back, the order.
type Placed = (Option<u64>, Option<Order>);

/// Posts the order once, settles the confirmation and audits the outcome. On success, reads the
/// new order back when its number is known (a failed read-back does not undo the success). When
/// the answer was lost, looks for an order created by this POST without ever posting again.
async fn place(
    client: &Client,
    audit: &AuditLog,
    order: &NewOrder,
    token_id: &str,
    redemption: Redemption,
) -> Result<Placed, String> {
    let record = |outcome: &'static str| {
        let mut r = Record::new(Event::Outcome, order, None).outcome(outcome);
        r.token_id = Some(token_id.to_owned());
        r
    };
    let sent_at = Utc::now();
    match client.create_order(order).await {
        Ok(created) => {
            redemption.placed(created.order_number);
            tracing::info!(order_number = ?created.order_number, "1NCE order placed");
            let audited = audit.write(&record("placed").order_number(created.order_number));
            let read_back = match (created.order, created.order_number) {
                (Some(order), _) => Some(order),
                (None, Some(number)) => client.get_order(number).await.ok(),
                (None, None) => None,
            };
            if let Err(e) = audited {
                // The order exists; saying so matters more than the missing line.
                tracing::error!("order placed but its outcome could not be audited: {e}");
            }
            Ok((created.order_number, read_back))
        }
        Err(error) if error.nothing_happened() => {
            redemption.nothing_placed();
            let _ = audit.write(&record("not_placed").detail(audit_reason(&error)));
            Err(format!(
                "1NCE did not place the order: {}. Nothing was ordered; the confirmation_token stays valid until it expires, so after fixing the cause the same approved order can be confirmed again.",
                tool_error(&error)
            ))
        }
        Err(error) => {
            redemption.outcome_unknown();
            tracing::error!(error = %error, "the outcome of an order POST is unknown");
            let reason = match &error {
                ApiError::OutcomeUnknown { reason } => reason.clone(),
                other => other.to_string(),
            };
            let _ = audit.write(&record("outcome_unknown").detail(reason.clone()));
            let mut text = format!(
                "OUTCOME UNKNOWN: do not retry. The order was sent to 1NCE but its answer was lost ({reason}), so it may or may not have been placed; the confirmation_token can never place it again."
            );
            match lost_answer::find(client, order, sent_at).await {
                Ok(found) => {
                    let numbers: Vec<u64> =
                        found.orders.iter().filter_map(|o| o.order_number).collect();
                    let _ = audit.write(
                        &record("lookup")
                            .order_number(numbers.first().copied())
                            .detail(format!("matching orders created since the POST: {numbers:?}")),
                    );
                    match found.orders.as_slice() {
                        [] if found.complete => text.push_str(
                            " No order with these products and quantities was created since the POST was sent, so it was most likely not placed. Tell the user; check list_orders again in a few minutes before ordering anew, and only with their approval.",
                        ),
                        [] => text.push_str(
                            " No matching order was found among the newest orders, but not every order could be checked. Check list_orders (sort order_date) before ordering anew.",
                        ),
                        [one] => text.push_str(&format!(
                            " Found it: order {} has the same products and quantities and was created after the POST was sent ({}). It was most likely placed; look it up with get_order instead of ordering again.",
                            one.order_number.map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
                            order_line(one)
                        )),
                        many => text.push_str(&format!(
                            " Found {} orders with the same products and quantities created since the POST was sent: {}. Look them up with get_order instead of ordering again.",
                            many.len(),
                            numbers.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
                        )),
                    }
                }
                Err(e) => text.push_str(&format!(
                    " Looking for the order failed too ({}): check list_orders (sort order_date) before doing anything else.",
                    tool_error(&e)
                )),
            }
            Err(text)
        }
    }
}

/// Why 1NCE refused, for the audit trail: 1NCE's own message may quote the address back, so
/// a rejection is reduced to its status and code.
fn audit_reason(error: &ApiError) -> String {
    match error {
        ApiError::Rejected { status, code, .. } => format!(
            "1NCE rejected the order (HTTP {status}{})",
            code.as_deref()
                .map(|c| format!(", {c}"))
                .unwrap_or_default()
        ),
        ApiError::Authentication { code, .. } => format!(
            "1NCE refused the API credentials{}",
            code.as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default()
        ),
        other => other.to_string(),
    }
}

fn placed_answer(
    preview: OrderPreview,
    (order_number, order): Placed,
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
            approval: None,
            order_number,
            order,
            next_step,
        },
        summary,
    }
}

fn preview(order: &NewOrder, priced: &PricedOrder) -> OrderPreview {
    OrderPreview {
        products: priced.lines.clone(),
        one_time_net_total: priced.totals_for_people(),
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
        .map(|p| {
            format!(
                "{} × {} (product {}, {})",
                p.quantity,
                p.name,
                p.product_id,
                money(&p.one_time_net, "no one-time charge")
            )
        })
        .collect();
    let mut text = format!(
        "{}; one-time total {} net; ships to {}",
        lines.join(", "),
        money(&preview.one_time_net_total, "0.00"),
        preview.ships_to
    );
    if let Some(reference) = &preview.customer_reference {
        text.push_str(&format!("; reference {reference:?}"));
    }
    text
}
