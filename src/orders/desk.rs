//! The order path, from a tool's arguments to a placed order: check, preview, the person's
//! answer, and the one POST. Every step is audited before it is taken, and every way it can
//! end without an order is a [`Stop`] with its one message.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use super::audit::{AuditOutcome, Environment, Event, Record};
use super::checks::{OrderLimits, PricedOrder, check_order};
use super::consent::{Approval, CanShow, NotApproved, PersonAnswer};
use super::lost_answer::{self, Found};
use super::person::{self, Person};
use super::post_answer::{NotProcessed, PostAnswer, classify};
use super::spend::{OverLimit, SpendFigure, Standing, unnamed_currency};
use super::tokens::{Account, Binding, Claims, Confirmations, Issued, Refusal, SpendCheck};
use crate::api::model::{DeliveryAddress, NewOrder, Order, ProductLine};
use crate::api::products::Catalogue;
use crate::api::{ApiError, Client};
use crate::state::{Recorded, Reservation};

/// How far back a preview looks for identical orders.
const IDENTICAL_WITHIN: Duration = Duration::from_secs(24 * 3600);
/// How long after an unknown outcome to look for the order again.
const LOOK_AGAIN_AFTER: Duration = Duration::from_secs(5 * 60);

/// Everything an order is checked against, shared by all sessions of a server.
pub struct Desk {
    pub client: Client,
    /// The tokens, and the state store their use and the audit trail are kept in.
    pub confirmations: Arc<Confirmations>,
    pub environment: Environment,
    pub account: Account,
    pub catalogue: Catalogue,
    pub limits: Arc<OrderLimits>,
    /// `--require-human-approval`: every order needs an approval in the client's form.
    pub require_form: bool,
}

impl fmt::Debug for Desk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Desk")
            .field("client", &self.client)
            .field("environment", &self.environment)
            .field("account", &self.account)
            .field("require_form", &self.require_form)
            .finish_non_exhaustive()
    }
}

/// What an agent asked for.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub products: &'a [ProductLine],
    pub delivery_address: Option<&'a DeliveryAddress>,
    pub customer_reference: Option<&'a str>,
    pub confirmation_token: Option<&'a str>,
    /// The session the token is (to be) bound to.
    pub scope: &'a str,
    /// Who acts, when the transport knows (OAuth): in every record, bound to the token.
    pub person: Option<&'a Person>,
    /// What the client can show its user to approve in.
    pub can_show: CanShow,
    /// The order card's approval nonce, when the person clicked in the card (and only then).
    pub card_nonce: Option<&'a str>,
}

/// An order that passed every check of this call, priced.
#[derive(Debug)]
pub struct Checked {
    pub order: NewOrder,
    pub priced: PricedOrder,
    scope: String,
    person: Option<Person>,
    token: Option<(String, Claims)>,
    /// Each spend limit as it would stand after this order (none without limits).
    pub spend: Vec<Standing>,
    /// The figures the spend check used, for the audit trail.
    spend_figures: Vec<SpendFigure>,
}

impl Checked {
    /// The token this call confirms with, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_ref().map(|(t, _)| t.as_str())
    }

    fn person_key(&self) -> String {
        person::binding_key(self.person.as_ref())
    }
}

/// A preview's token and what the person should know besides the order.
#[derive(Debug)]
pub struct PreviewIssued {
    pub issued: Issued,
    pub approval: Approval,
    /// Identical orders placed (or of unknown outcome) from this state in the last 24 hours.
    pub identical: Vec<Recorded>,
    /// For the order card only (never the agent): the nonce its click must carry.
    pub card_nonce: Option<String>,
}

/// A placed order: its number and, when it could be read, the order.
#[derive(Debug)]
pub struct Placed {
    pub order_number: Option<u64>,
    pub order: Option<Order>,
}

/// Why `create_order` placed nothing: certainly nothing ([`Stop`]), or perhaps something
/// ([`UnknownOutcome`]).
#[derive(Debug)]
pub enum OrderError {
    Stopped(Stop),
    Unknown(UnknownOutcome),
    /// The task placing the order died before it answered (a bug): its claim on the token was
    /// settled as outcome unknown when it was dropped.
    TaskDied,
}

impl From<Stop> for OrderError {
    fn from(stop: Stop) -> Self {
        OrderError::Stopped(stop)
    }
}

impl fmt::Display for OrderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrderError::Stopped(stop) => stop.fmt(f),
            OrderError::Unknown(unknown) => unknown.fmt(f),
            OrderError::TaskDied => f.write_str(
                "OUTCOME UNKNOWN: the order task failed unexpectedly, so whether 1NCE received the order is unknown. Do not order again: look for it with list_orders (sort order_date) first.",
            ),
        }
    }
}

/// Every way `create_order` ends with certainly nothing ordered by this call.
#[derive(Debug)]
pub enum Stop {
    /// The arguments break a rule of the 1NCE API.
    Invalid(String),
    /// The confirmation token cannot be used.
    Token(Refusal),
    /// The catalogue, needed to check and price the order, could not be read (while confirming
    /// with a token, when `confirming`).
    Catalogue { error: ApiError, confirming: bool },
    /// The catalogue or the operator's limits refuse the order (the message is complete).
    Checks(String),
    /// An approval in the client's own form is required, and this client cannot show one.
    FormRequired { by_token: bool },
    /// The preview was made for the order card: only the person's click there places it.
    CardRequired,
    /// A click in the card that does not belong to this preview (a forged or foreign nonce, or a
    /// token not made for the card).
    NotThisCard,
    /// The person did not approve, in the form or the card.
    NotApproved(NotApproved, Option<String>, Approval),
    /// No token could be issued: the state store could not be read, or this process's clock
    /// disagrees with it.
    NoPreview(Refusal),
    /// A step could not be audited.
    Unaudited(String),
    /// The order would exceed one of the operator's spend limits.
    OverSpendLimit(OverLimit),
    /// The spend ledger could not be read: the limits cannot be checked, so nothing is ordered.
    SpendUnchecked(String),
    /// 1NCE refused before processing anything.
    NotProcessed(NotProcessed),
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Invalid(why) => write!(f, "Invalid arguments: {why}. Nothing was ordered."),
            Stop::Token(refusal) => write!(f, "Refused: {refusal}."),
            Stop::Catalogue { error, confirming } => {
                write!(
                    f,
                    "Could not read the 1NCE product catalogue to check the order: {}. Nothing was ordered",
                    error.advice().trim_end_matches('.')
                )?;
                if *confirming {
                    f.write_str("; the confirmation_token stays valid until it expires, so the same approved order can be confirmed again once 1NCE answers")?;
                }
                f.write_str(".")
            }
            Stop::Checks(why) => f.write_str(why),
            Stop::FormRequired { by_token: false } => f.write_str(
                "Refused: this server requires each order to be approved by a person in the MCP client's own approval form (--require-human-approval), and this client cannot show one (it does not declare the elicitation capability). Nothing was ordered. Use an MCP client that supports elicitation, or ask the server's operator to run it without --require-human-approval",
            ),
            Stop::FormRequired { by_token: true } => f.write_str(
                "Refused: this order's preview promised that the user approves it in the MCP client's own approval form, and this client cannot show one. Nothing was ordered. Confirm it from a client that can show the form, or call create_order without confirmation_token for a preview here and get the user's approval for it",
            ),
            Stop::CardRequired => f.write_str(
                "Refused: the person approves this order in the order card shown with its preview (the Place order button there); a confirmation_token alone cannot place it. Nothing was ordered. Do not ask the user to type their approval: ask them to use the card, or call create_order without confirmation_token for a new preview with its card",
            ),
            Stop::NotThisCard => f.write_str(
                "Refused: this approval does not belong to this order's preview (the order card's approval is missing, altered, or from another preview). Nothing was ordered. Ask for a new preview",
            ),
            Stop::NotApproved(answer, detail, via) => {
                let place = match via {
                    Approval::OrderCard => "the order card",
                    _ => "the approval form",
                };
                let mut what = match answer {
                    NotApproved::Declined => format!("The user declined this order in {place}"),
                    NotApproved::Cancelled => {
                        format!("The user closed {place} without approving this order")
                    }
                    NotApproved::NoAnswer => "The user's approval could not be obtained".to_owned(),
                };
                if let Some(detail) = detail {
                    what.push_str(&format!(" ({detail})"));
                }
                write!(
                    f,
                    "{what}. Nothing was ordered and nothing was sent to 1NCE; this confirmation_token can never place the order. Do not ask again unless the user asks you to; a new preview is needed then."
                )
            }
            Stop::NoPreview(Refusal::Storage(why)) => write!(
                f,
                "No preview could be made: the state store could not be read ({why}). Nothing was ordered. The operator must check the state store (the state directory, or the database of --state-url)."
            ),
            Stop::NoPreview(Refusal::ClockSkew { local, store, by }) => write!(
                f,
                "No preview could be made: this server's clock ({local}) disagrees with the state store's ({store}) by {by}, more than the minute it allows, so it makes no previews and places no orders. Nothing was ordered. Tell the user the operator must set this machine's clock right (NTP)."
            ),
            Stop::NoPreview(refusal) => write!(f, "No preview could be made: {refusal}."),
            Stop::Unaudited(why) => write!(f, "Refused: {why}. Nothing was ordered."),
            Stop::OverSpendLimit(over) => write!(f, "Refused: {over}."),
            Stop::SpendUnchecked(why) => write!(
                f,
                "Refused: the operator's spend limits could not be checked ({why}). Nothing was ordered. Try again in a moment; if it persists, the operator should run `1nce-mcp check`."
            ),
            Stop::NotProcessed(np) if matches!(np.error(), ApiError::Unauthorized) => f.write_str(
                "1NCE did not place the order: it refused this server's access token (401 Unauthorized; the token may have expired early or been revoked). Nothing was ordered, and the order was not sent a second time on its own: one approval, one POST. The confirmation_token stays valid until it expires, and the next call uses a new access token, so the same approved order can be confirmed again.",
            ),
            Stop::NotProcessed(np) => write!(
                f,
                "1NCE did not place the order: {}. Nothing was ordered; the confirmation_token stays valid until it expires, so after fixing the cause the same approved order can be confirmed again.",
                np.error().advice().trim_end_matches('.')
            ),
        }
    }
}

/// An order that may or may not exist: what is known, and what the search for it found.
#[derive(Debug)]
pub struct UnknownOutcome {
    /// Why the outcome is unknown.
    pub reason: String,
    /// When the POST was sent.
    pub since: DateTime<Utc>,
    /// Whether this call sent it (or an earlier use of the same token did).
    pub this_call: bool,
    /// What the search for the order found, or why it failed.
    pub lookup: Result<Found, String>,
    /// The time of this report.
    pub now: DateTime<Utc>,
    /// With spend limits: whether the order's amount still counts against them (it does until
    /// the order is found absent).
    pub counts_against_limits: Option<bool>,
}

impl UnknownOutcome {
    /// The numbers of the matching orders found.
    pub fn found_numbers(&self) -> Vec<u64> {
        match &self.lookup {
            Ok(found) => found.orders.iter().filter_map(|o| o.order_number).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn look_again_at(&self) -> String {
        let at = (self.since + chrono::Duration::from_std(LOOK_AGAIN_AFTER).unwrap_or_default())
            .max(self.now);
        at.format("%H:%M UTC").to_string()
    }
}

impl fmt::Display for UnknownOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sent = self.since.to_rfc3339_opts(SecondsFormat::Secs, true);
        if self.this_call {
            write!(
                f,
                "OUTCOME UNKNOWN: do not order again. The order was sent to 1NCE at {sent}, but {}, so it may or may not have been placed; the confirmation_token can never place it again.",
                self.reason
            )?;
        } else {
            write!(
                f,
                "OUTCOME UNKNOWN: nothing was sent now, and do not order again. This confirmation_token was used at {sent} and whether that order reached 1NCE is unknown ({}); the token can never place it again.",
                self.reason
            )?;
        }
        let then = self.look_again_at();
        match &self.lookup {
            Ok(found) => match found.orders.as_slice() {
                [] if found.complete => write!(
                    f,
                    " No order with these products and quantities has appeared at 1NCE since then, but 1NCE may still be processing it. Tell the user the outcome is unknown and look again after {then} with find_orders or list_orders (sort order_date)."
                ),
                [] => write!(
                    f,
                    " No matching order was found among the newest orders, but not all of them could be checked. Tell the user the outcome is unknown and look with list_orders (sort order_date), again after {then}."
                ),
                [one] => write!(
                    f,
                    " Found it: order {} has the same products and quantities and was created after the POST was sent ({}). It was most likely placed: look it up with get_order instead of ordering again.",
                    number(one),
                    brief(one)
                ),
                many => write!(
                    f,
                    " Found {} orders with the same products and quantities created since the POST was sent: {}. Look them up with get_order instead of ordering again.",
                    many.len(),
                    many.iter().map(number).collect::<Vec<_>>().join(", ")
                ),
            },
            Err(e) => write!(
                f,
                " Looking for the order failed too ({e}). Tell the user the outcome is unknown and look with list_orders (sort order_date) after {then}."
            ),
        }?;
        match self.counts_against_limits {
            Some(true) if self.found_numbers().is_empty() => write!(
                f,
                " Its amount counts against the operator's spend limits until a look after {then} finds no such order: calling create_order again with the same confirmation_token looks again, and never sends anything."
            )?,
            Some(false) => f.write_str(
                " Its amount no longer counts against the operator's spend limits: no such order appeared at 1NCE in the time it takes.",
            )?,
            _ => {}
        }
        Ok(())
    }
}

fn number(order: &Order) -> String {
    order
        .order_number
        .map(|n| n.to_string())
        .unwrap_or_else(|| "(no number)".to_owned())
}

fn brief(order: &Order) -> String {
    let mut parts = Vec::new();
    if let Some(status) = &order.order_status {
        parts.push(status.clone());
    }
    if let Some(date) = &order.order_date {
        parts.push(date.clone());
    }
    if parts.is_empty() {
        "no status reported".to_owned()
    } else {
        parts.join(", ")
    }
}

impl Desk {
    fn record(
        &self,
        event: Event,
        order: &NewOrder,
        token: Option<&str>,
        who: Option<&Person>,
    ) -> Record {
        Record::new(event, self.environment, order, token).person(who)
    }

    /// Appends `record` to the audit trail. `Err` is the message for the agent: the step is
    /// not taken when it cannot be audited.
    async fn audit(&self, record: &Record) -> Result<(), String> {
        self.confirmations
            .store()
            .append_audit(&record.entry())
            .await
            .map_err(|e| e.to_string())
    }

    /// Audits a refusal (best effort: nothing is ordered either way) and returns it.
    async fn refuse(
        &self,
        order: &NewOrder,
        token: Option<&str>,
        who: Option<&Person>,
        stop: Stop,
    ) -> OrderError {
        let _ = self
            .audit(
                &self
                    .record(Event::Refused, order, token, who)
                    .outcome(AuditOutcome::Refused)
                    .detail(stop.to_string()),
            )
            .await;
        OrderError::Stopped(stop)
    }

    /// A token refusal; one that says an earlier POST's outcome is unknown comes with a
    /// search for that order.
    async fn refused_token(
        &self,
        order: &NewOrder,
        token: &str,
        who: Option<&Person>,
        refusal: Refusal,
    ) -> OrderError {
        match refusal {
            Refusal::OutcomeUnknown { since } => {
                let outcome = self
                    .unknown(order, Some(token), who, since, false, refusal.to_string())
                    .await;
                OrderError::Unknown(outcome)
            }
            other => {
                self.refuse(order, Some(token), who, Stop::Token(other))
                    .await
            }
        }
    }

    fn binding<'a>(
        &self,
        order: &'a NewOrder,
        priced: Option<&'a PricedOrder>,
        scope: &'a str,
        person: &'a str,
    ) -> Binding<'a> {
        Binding {
            order,
            priced,
            scope,
            person,
            account: self.account,
        }
    }

    /// Validates, checks the token (if any) and the order against the catalogue and the
    /// limits, and prices it. Nothing is sent to 1NCE but the catalogue read.
    pub async fn check(&self, request: Request<'_>) -> Result<Checked, OrderError> {
        let order = NewOrder::new(
            request.products,
            request.delivery_address,
            request.customer_reference,
        )
        .map_err(|e| Stop::Invalid(e.to_string()))?;
        let who = request.person;
        let person_key = person::binding_key(who);
        let token = request
            .confirmation_token
            .map(str::trim)
            .filter(|t| !t.is_empty());
        // A token that cannot be used is refused before anything is asked of 1NCE or anyone,
        // and so is one presented other than the way its preview said the person approves.
        match (token, request.card_nonce) {
            (None, None) => {}
            (None, Some(_)) => {
                return Err(self.refuse(&order, None, who, Stop::NotThisCard).await);
            }
            (Some(token), card_nonce) => {
                let claims = match self
                    .confirmations
                    .check(
                        token,
                        &self.binding(&order, None, request.scope, &person_key),
                    )
                    .await
                {
                    Ok(claims) => claims,
                    Err(refusal) => {
                        return Err(self.refused_token(&order, token, who, refusal).await);
                    }
                };
                let wrong_way = match (claims.approval, card_nonce) {
                    (Approval::OrderCard, None) => Some(Stop::CardRequired),
                    (Approval::OrderCard, Some(nonce))
                        if self.confirmations.card_nonce_fits(&claims, nonce) =>
                    {
                        None
                    }
                    (_, Some(_)) => Some(Stop::NotThisCard),
                    (Approval::ApprovalForm, None) if !request.can_show.form => {
                        Some(Stop::FormRequired { by_token: true })
                    }
                    _ => None,
                };
                if let Some(stop) = wrong_way {
                    return Err(self.refuse(&order, Some(token), who, stop).await);
                }
            }
        }
        // A confirmation reads the catalogue afresh: the price bound to the token is checked
        // against 1NCE's price now, not a cached one.
        let catalogue = match token {
            Some(_) => self.catalogue.fresh().await,
            None => self.catalogue.products().await,
        }
        .map_err(|error| Stop::Catalogue {
            error,
            confirming: token.is_some(),
        })?;
        let priced = match check_order(&order, &catalogue, &self.limits) {
            Ok(priced) => priced,
            Err(why) => return Err(self.refuse(&order, token, who, Stop::Checks(why)).await),
        };
        if self.require_form && !request.can_show.any() {
            let stop = Stop::FormRequired { by_token: false };
            return Err(self.refuse(&order, token, who, stop).await);
        }
        // Checked before the person is asked; checked again, atomically, with the claim.
        let (spend, spend_figures) = match self.spend_after(&priced, &person_key).await {
            Ok(spend) => spend,
            Err(stop) => return Err(self.refuse(&order, token, who, stop).await),
        };
        let token = match token {
            None => None,
            Some(token) => {
                let claims = match self
                    .confirmations
                    .check(
                        token,
                        &self.binding(&order, Some(&priced), request.scope, &person_key),
                    )
                    .await
                {
                    Ok(claims) => claims,
                    Err(refusal) => {
                        return Err(self.refused_token(&order, token, who, refusal).await);
                    }
                };
                Some((token.to_owned(), claims))
            }
        };
        Ok(Checked {
            order,
            priced,
            scope: request.scope.to_owned(),
            person: request.person.cloned(),
            token,
            spend,
            spend_figures,
        })
    }

    /// How each spend limit would stand after `priced`, by the state store's time; a limit it
    /// would exceed, or a currency no limit names, stops the order.
    async fn spend_after(
        &self,
        priced: &PricedOrder,
        person_key: &str,
    ) -> Result<(Vec<Standing>, Vec<SpendFigure>), Stop> {
        if self.limits.spend.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        if let Some(currency) = priced
            .totals
            .keys()
            .find(|c| !self.limits.spend.iter().any(|l| &l.currency == *c))
        {
            return Err(Stop::Checks(format!(
                "{}.",
                unnamed_currency(currency, &self.limits.spend)
            )));
        }
        let store = self.confirmations.store();
        let unchecked = |e: crate::state::StateError| Stop::SpendUnchecked(e.to_string());
        let now = store.time().await.map_err(unchecked)?.now;
        let mut standings = Vec::with_capacity(self.limits.spend.len());
        let mut figures = Vec::with_capacity(self.limits.spend.len());
        for limit in self.limits.spend.iter() {
            let spent = store
                .spent(&limit.budget(now, person_key))
                .await
                .map_err(unchecked)?;
            let this_order = priced
                .totals
                .get(&limit.currency)
                .copied()
                .unwrap_or_default();
            if spent.saturating_add(this_order.0) > limit.amount.0 {
                return Err(Stop::OverSpendLimit(OverLimit {
                    limit: limit.clone(),
                    this_order,
                    left: crate::api::products::Cents((limit.amount.0 - spent).max(0)),
                }));
            }
            standings.push(limit.standing(crate::api::products::Cents(spent + this_order.0), now));
            figures.push(limit.figure(now, crate::api::products::Cents(spent), this_order));
        }
        Ok((standings, figures))
    }

    /// Each spend limit as it stands now (by the state store's time) for `person`: spent and
    /// left in the current period.
    pub async fn spend_standing(&self, person: Option<&Person>) -> Result<Vec<Standing>, String> {
        if self.limits.spend.is_empty() {
            return Ok(Vec::new());
        }
        let store = self.confirmations.store();
        let now = store.time().await.map_err(|e| e.to_string())?.now;
        let key = person::binding_key(person);
        let mut standings = Vec::with_capacity(self.limits.spend.len());
        for limit in self.limits.spend.iter() {
            let spent = store
                .spent(&limit.budget(now, &key))
                .await
                .map_err(|e| e.to_string())?;
            standings.push(limit.standing(crate::api::products::Cents(spent), now));
        }
        Ok(standings)
    }

    /// What a confirmation reserves, and the budgets it must fit at the store's time now.
    async fn spend_check(&self, checked: &Checked) -> Result<Option<SpendCheck>, Stop> {
        if self.limits.spend.is_empty() {
            return Ok(None);
        }
        let now = self
            .confirmations
            .store()
            .time()
            .await
            .map_err(|e| Stop::SpendUnchecked(e.to_string()))?
            .now;
        let person = checked.person_key();
        Ok(Some(SpendCheck {
            reservation: Reservation {
                cents: checked
                    .priced
                    .totals
                    .iter()
                    .map(|(currency, cents)| (currency.clone(), cents.0))
                    .collect(),
                person: person.clone(),
            },
            budgets: self
                .limits
                .spend
                .iter()
                .map(|l| l.budget(now, &person))
                .collect(),
            limits: self.limits.spend.to_vec(),
        }))
    }

    /// Issues a token for a checked order and audits the preview. The token requires the
    /// person's own approval wherever the client can show something to approve in (the order
    /// card, else its form: the preview promises it), or the server requires one.
    pub async fn preview(
        &self,
        checked: &Checked,
        can_show: CanShow,
    ) -> Result<PreviewIssued, OrderError> {
        let approval = can_show.approval(self.require_form);
        let issued = match self
            .confirmations
            .issue(
                &self.binding(
                    &checked.order,
                    Some(&checked.priced),
                    &checked.scope,
                    &checked.person_key(),
                ),
                approval,
            )
            .await
        {
            Ok(issued) => issued,
            Err(refusal) => {
                let who = checked.person.as_ref();
                let stop = Stop::NoPreview(refusal);
                return Err(self.refuse(&checked.order, None, who, stop).await);
            }
        };
        // Recorded before the token is shown: a token nobody can trace is never handed out.
        self.audit(
            &self
                .record(
                    Event::Preview,
                    &checked.order,
                    Some(&issued.token),
                    checked.person.as_ref(),
                )
                .approval(approval)
                .spend(checked.spend_figures.clone()),
        )
        .await
        .map_err(Stop::Unaudited)?;
        let identical = self.identical(checked).await;
        let card_nonce = (approval == Approval::OrderCard)
            .then(|| self.confirmations.claims_of(&issued.token))
            .flatten()
            .map(|claims| self.confirmations.card_nonce(&claims));
        Ok(PreviewIssued {
            issued,
            approval,
            identical,
            card_nonce,
        })
    }

    /// Identical orders (same content) placed, or of unknown outcome, from this state in the
    /// last 24 hours: for the preview and the approval form, so nobody reorders blindly.
    pub async fn identical(&self, checked: &Checked) -> Vec<Recorded> {
        self.confirmations
            .recent_identical(&checked.order, IDENTICAL_WITHIN)
            .await
    }

    /// Audits the person's answer, given `via` the client's form or the order card; anything
    /// but an approval ends the token for every process sharing the state, and stops the order.
    pub async fn answered(
        &self,
        checked: &Checked,
        answer: &PersonAnswer,
        via: Approval,
    ) -> Result<(), OrderError> {
        let (token, claims) = checked
            .token
            .as_ref()
            .map(|(t, c)| (t.as_str(), c))
            .ok_or_else(|| Stop::Unaudited("no confirmation token to answer for".to_owned()))?;
        let (event, outcome, detail) = match answer {
            PersonAnswer::Approved => (Event::Approved, AuditOutcome::Approved, None),
            PersonAnswer::Declined => (Event::Declined, AuditOutcome::Declined, None),
            PersonAnswer::Cancelled => (Event::Cancelled, AuditOutcome::Cancelled, None),
            PersonAnswer::NoAnswer(why) => {
                (Event::Cancelled, AuditOutcome::NoAnswer, Some(why.clone()))
            }
        };
        let mut record = self
            .record(event, &checked.order, Some(token), checked.person.as_ref())
            .approval(via)
            .outcome(outcome);
        if let Some(detail) = &detail {
            record = record.detail(detail.clone());
        }
        let audited = self.audit(&record).await;
        if let Some(not) = answer.not_approved() {
            match self
                .confirmations
                .end_unapproved(claims, &checked.order, not)
                .await
            {
                Ok(()) => {}
                Err(Refusal::Storage(e)) => {
                    tracing::warn!(error = %e, "could not record that the person did not approve");
                }
                // The token was in use meanwhile: what became of that use is the answer.
                Err(refusal) => {
                    let who = checked.person.as_ref();
                    return Err(self
                        .refused_token(&checked.order, token, who, refusal)
                        .await);
                }
            }
            return Err(Stop::NotApproved(not, detail, via).into());
        }
        audited.map_err(|e| Stop::Unaudited(e).into())
    }

    /// Claims the token and sends the order once, then settles the token by what 1NCE's
    /// answer proves and audits the outcome. Run it where the caller's cancellation cannot
    /// cut it off between the POST and the record of its outcome.
    pub async fn place(&self, checked: Checked, approval: Approval) -> Result<Placed, OrderError> {
        let Some((token, _)) = &checked.token else {
            return Err(Stop::Token(Refusal::Invalid).into());
        };
        let order = &checked.order;
        let who = checked.person.as_ref();
        let spend = match self.spend_check(&checked).await {
            Ok(spend) => spend,
            Err(stop) => return Err(self.refuse(order, Some(token), who, stop).await),
        };
        // Redeemed only now: the person may have taken a while, and the token may have expired,
        // been declined or been used by a parallel call meanwhile.
        let redemption = match self
            .confirmations
            .redeem_within(
                token,
                &self.binding(
                    order,
                    Some(&checked.priced),
                    &checked.scope,
                    &checked.person_key(),
                ),
                spend.as_ref(),
            )
            .await
        {
            Ok(r) => r,
            Err(refusal) => return Err(self.refused_token(order, token, who, refusal).await),
        };
        let post = self
            .record(Event::Post, order, Some(token), who)
            .approval(approval)
            .spend(
                spend
                    .as_ref()
                    .map_or_else(Vec::new, |s| reserved_figures(s, &redemption.spent_before)),
            );
        if let Err(e) = self.audit(&post).await {
            redemption
                .release(&NotProcessed::never_sent(ApiError::BadResponse {
                    reason: "the audit record could not be written".to_owned(),
                }))
                .await;
            return Err(Stop::Unaudited(e).into());
        }
        tracing::info!(
            products = ?order.products,
            approval = approval.as_str(),
            person = who.map_or("-", |p| p.sub.as_str()),
            "placing a confirmed 1NCE order"
        );
        let sent_at = self.confirmations.now();
        let outcome = self
            .record(Event::Outcome, order, Some(token), who)
            .approval(approval);
        match classify(self.client.create_order(order).await) {
            PostAnswer::Created(created) => {
                redemption.placed(&created).await;
                tracing::info!(order_number = ?created.order_number, "1NCE order placed");
                let audited = self
                    .audit(
                        &outcome
                            .outcome(AuditOutcome::Placed)
                            .order_number(created.order_number),
                    )
                    .await;
                if let Err(e) = audited {
                    // The order exists; saying so matters more than the missing line.
                    tracing::error!("order placed but its outcome could not be audited: {e}");
                }
                let order = match (created.order, created.order_number) {
                    (Some(order), _) => Some(*order),
                    (None, Some(number)) => self.client.get_order(number).await.ok(),
                    (None, None) => None,
                };
                Ok(Placed {
                    order_number: created.order_number,
                    order,
                })
            }
            PostAnswer::NotProcessed(proof) => {
                redemption.release(&proof).await;
                let _ = self
                    .audit(
                        &outcome
                            .outcome(AuditOutcome::NotPlaced)
                            .detail(audit_reason(proof.error())),
                    )
                    .await;
                Err(Stop::NotProcessed(proof).into())
            }
            PostAnswer::Unknown(unknown) => {
                redemption.unknown(&unknown).await;
                tracing::error!(reason = %unknown.reason, "the outcome of an order POST is unknown");
                let _ = self
                    .audit(
                        &outcome
                            .outcome(AuditOutcome::OutcomeUnknown)
                            .detail(unknown.reason.clone()),
                    )
                    .await;
                Err(OrderError::Unknown(
                    self.unknown(order, Some(token), who, sent_at, true, unknown.reason)
                        .await,
                ))
            }
        }
    }

    /// An unknown outcome's amount counts against the spend limits until the order is found
    /// not to exist: every order created since the POST looked at, none matching, and at least
    /// [`LOOK_AGAIN_AFTER`] since it was sent (1NCE may still be processing it before then).
    async fn release_if_absent(&self, token: &str, found: &Found) -> bool {
        if self.limits.spend.is_empty() || !found.complete || !found.orders.is_empty() {
            return false;
        }
        let Some(claims) = self.confirmations.claims_of(token) else {
            return false;
        };
        // Waited by the store's clock, from the reservation's store time: no process's clock.
        match self
            .confirmations
            .store()
            .release_unknown(&claims.id(), LOOK_AGAIN_AFTER)
            .await
        {
            Ok(false) => false,
            Ok(true) => {
                tracing::info!(
                    "an order of unknown outcome was not found at 1NCE; its amount no longer counts against the spend limits"
                );
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not release the amount of an order found absent");
                false
            }
        }
    }

    /// Looks for the order behind an unknown outcome, without ever posting, and audits what
    /// it found.
    async fn unknown(
        &self,
        order: &NewOrder,
        token: Option<&str>,
        who: Option<&Person>,
        since: DateTime<Utc>,
        this_call: bool,
        reason: String,
    ) -> UnknownOutcome {
        let lookup = lost_answer::find(&self.client, order, since)
            .await
            .map_err(|e| e.advice());
        let mut report = UnknownOutcome {
            reason,
            since,
            this_call,
            lookup,
            now: self.confirmations.now(),
            counts_against_limits: None,
        };
        let numbers = report.found_numbers();
        let released = match (token, &report.lookup) {
            (Some(token), Ok(found)) => self.release_if_absent(token, found).await,
            _ => false,
        };
        report.counts_against_limits = (!self.limits.spend.is_empty()).then_some(!released);
        let _ = self
            .audit(
                &self
                    .record(Event::Outcome, order, token, who)
                    .outcome(AuditOutcome::Lookup)
                    .order_number(numbers.first().copied())
                    .detail(match &report.lookup {
                        Ok(_) => format!("matching orders created since the POST: {numbers:?}"),
                        Err(_) => "the search for the order failed".to_owned(),
                    }),
            )
            .await;
        report
    }
}

/// The figures a confirmation's reservation used: each budget's sum before it, and the order.
fn reserved_figures(spend: &SpendCheck, spent_before: &[i64]) -> Vec<SpendFigure> {
    use crate::api::products::Cents;
    spend
        .limits
        .iter()
        .zip(&spend.budgets)
        .zip(spent_before)
        .map(|((limit, budget), spent)| {
            let from = DateTime::from_timestamp_millis(budget.from_ms).unwrap_or_default();
            let this = spend.reservation.cents.get(&limit.currency).copied();
            limit.figure(from, Cents(*spent), Cents(this.unwrap_or(0)))
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn over_limit() -> OverLimit {
        OverLimit {
            limit: crate::orders::spend::SpendLimit::parse("5000EUR/month", false).unwrap(),
            this_order: crate::api::products::Cents(90_000),
            left: crate::api::products::Cents(40_000),
        }
    }

    #[test]
    fn every_stop_says_nothing_was_ordered_in_one_clean_sentence() {
        let refusals = [
            Refusal::Invalid,
            Refusal::OtherAccount,
            Refusal::OtherSession,
            Refusal::Expired("2026-01-01T00:00:00Z".into()),
            Refusal::Mismatch(crate::orders::tokens::Changed(vec![
                crate::orders::tokens::Part::Quantities,
            ])),
            Refusal::PriceChanged {
                then: "10.00 EUR".into(),
                now: "12.00 EUR".into(),
            },
            Refusal::AlreadyPlaced(Some(2000000038)),
            Refusal::AlreadyPlaced(None),
            Refusal::InFlight,
            Refusal::NotApproved(NotApproved::Declined),
            Refusal::Storage("disk full".into()),
            Refusal::FromTheFuture {
                issued: "2027-01-01T00:00:00Z".into(),
                expires: "2027-01-01T00:10:00Z".into(),
                now: "2026-12-06T00:00:00Z".into(),
            },
            Refusal::ClockSkew {
                local: "2026-12-14T00:00:00Z".into(),
                store: "2026-12-06T00:00:00Z".into(),
                by: "8days".into(),
            },
            Refusal::Cleared("2026-12-06T00:10:00Z".into()),
            Refusal::OverSpendLimit(over_limit()),
        ];
        let mut stops: Vec<Stop> = refusals.into_iter().map(Stop::Token).collect();
        stops.extend([
            Stop::Invalid("products[0].quantity must be an integer".into()),
            Stop::Catalogue {
                error: ApiError::Forbidden,
                confirming: true,
            },
            Stop::Checks("Refused: product 9 is not in the catalogue. Nothing was ordered.".into()),
            Stop::FormRequired { by_token: false },
            Stop::FormRequired { by_token: true },
            Stop::NotApproved(NotApproved::Cancelled, None, Approval::ApprovalForm),
            Stop::NotApproved(
                NotApproved::NoAnswer,
                Some("timed out".into()),
                Approval::ApprovalForm,
            ),
            Stop::NotApproved(NotApproved::Declined, None, Approval::OrderCard),
            Stop::CardRequired,
            Stop::NotThisCard,
            Stop::Unaudited("the audit log could not be written".into()),
            Stop::OverSpendLimit(over_limit()),
            Stop::SpendUnchecked("the spend ledger is locked".into()),
            Stop::Checks(format!(
                "{}.",
                unnamed_currency("USD", &[over_limit().limit])
            )),
            Stop::NotProcessed(NotProcessed::never_sent(ApiError::Unauthorized)),
            Stop::NotProcessed(NotProcessed::never_sent(ApiError::Forbidden)),
            Stop::NoPreview(Refusal::Storage("disk full".into())),
            Stop::NoPreview(Refusal::ClockSkew {
                local: "2026-12-14T00:00:00Z".into(),
                store: "2026-12-06T00:00:00Z".into(),
                by: "8days".into(),
            }),
        ]);
        for stop in stops {
            let text = stop.to_string();
            assert!(!text.contains(".."), "{text}");
            assert!(
                text.contains("othing was ordered") || text.contains("nothing more was ordered"),
                "{text}"
            );
        }
    }
}
