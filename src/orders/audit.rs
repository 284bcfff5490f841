//! The audit trail's records: every preview, approval, decline, order POST and outcome, one
//! [`Record`] each, kept by the state store (a line of `audit.jsonl`, or a row of the database)
//! and flushed to disk before the tool answers.
//!
//! A record that cannot be written stops the order: the caller treats a write failure like any
//! other refusal, so no order is ever placed without its record. A record carries no secret
//! (the confirmation token appears only as a hash prefix) and no personal detail beyond the
//! delivery city and country.

use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::consent::Approval;
use super::person::Person;
use crate::api::model::NewOrder;
use crate::state::AuditEntry;

/// What happened, as written to the `event` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A preview passed every check and a confirmation token was issued.
    Preview,
    /// A preview or confirmation was refused before anything was posted.
    Refused,
    /// The person approved the order (through the client's approval form).
    Approved,
    /// The person declined the order.
    Declined,
    /// The person dismissed the question, or gave no usable answer.
    Cancelled,
    /// The order POST is about to be sent.
    Post,
    /// What became of a POST, or of a search for the order behind a lost answer.
    Outcome,
}

/// The `outcome` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    Refused,
    Approved,
    Declined,
    Cancelled,
    NoAnswer,
    /// 1NCE created the order.
    Placed,
    /// 1NCE processed nothing; the token stays usable.
    NotPlaced,
    /// The order may or may not exist; the token is spent.
    OutcomeUnknown,
    /// The search for the order behind an unknown outcome.
    Lookup,
}

/// Where the orders of this server go: the real 1NCE API or the built-in sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    Live,
    Sandbox,
}

/// One audit line.
#[derive(Debug, Serialize)]
pub struct Record {
    pub time: String,
    pub event: Event,
    /// `live` or `sandbox`.
    pub environment: Environment,
    /// First 16 hex digits of SHA-256 of the confirmation token, never the token itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// SHA-256 of the validated order (products, address, reference), as the token binds it.
    pub content_hash: String,
    pub products: Vec<AuditLine>,
    /// Where the order ships, reduced to city and country.
    pub ships_to: String,
    /// Who acted, when the transport knows (OAuth): `sub`, and `email` and
    /// `preferred_username` when the access token carries them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person: Option<Person>,
    /// How the order is approved: `approval_form` or `confirmation_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<AuditOutcome>,
    /// A short explanation (never personal details).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_number: Option<u64>,
    /// The spend limits' figures this decision used (a preview's check, a confirmation's
    /// reservation).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub spend: Vec<super::spend::SpendFigure>,
}

/// A product line in the audit trail.
#[derive(Debug, Serialize)]
pub struct AuditLine {
    pub product_id: u64,
    pub quantity: u64,
}

impl Record {
    /// A record of `event` about `order` in `environment`, with the optional fields empty.
    pub fn new(
        event: Event,
        environment: Environment,
        order: &NewOrder,
        token: Option<&str>,
    ) -> Record {
        Record {
            time: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            event,
            environment,
            token_id: token.map(token_id),
            content_hash: content_hash(order),
            products: order
                .products
                .iter()
                .map(|p| AuditLine {
                    product_id: p.product_id,
                    quantity: p.quantity,
                })
                .collect(),
            ships_to: ships_to(order),
            person: None,
            approval: None,
            outcome: None,
            detail: None,
            order_number: None,
            spend: Vec::new(),
        }
    }

    pub fn person(mut self, who: Option<&Person>) -> Self {
        self.person = who.cloned();
        self
    }

    pub fn approval(mut self, how: Approval) -> Self {
        self.approval = Some(how);
        self
    }

    pub fn outcome(mut self, outcome: AuditOutcome) -> Self {
        self.outcome = Some(outcome);
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn order_number(mut self, number: Option<u64>) -> Self {
        self.order_number = number;
        self
    }

    pub fn spend(mut self, figures: Vec<super::spend::SpendFigure>) -> Self {
        self.spend = figures;
        self
    }

    /// The record as the state store keeps it.
    pub fn entry(&self) -> AuditEntry {
        let body = serde_json::to_value(self).unwrap_or_default();
        AuditEntry {
            event: body["event"].as_str().unwrap_or_default().to_owned(),
            token_id: self.token_id.clone(),
            body,
        }
    }
}

/// The token's public id: a hash prefix, enough to correlate lines, useless to redeem.
pub fn token_id(token: &str) -> String {
    crate::hex(&Sha256::digest(token.trim().as_bytes())[..8])
}

/// The order's digest ([`super::tokens::digest`]) in hex.
pub fn content_hash(order: &NewOrder) -> String {
    crate::hex(&super::tokens::digest(order))
}

/// City and country of the delivery address, or that the account's default address is used.
fn ships_to(order: &NewOrder) -> String {
    match &order.delivery_address {
        None => "account default address".to_owned(),
        Some(a) => {
            let parts: Vec<&str> = [a.city.as_deref(), a.country.as_deref()]
                .into_iter()
                .flatten()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            if parts.is_empty() {
                "address without city or country".to_owned()
            } else {
                parts.join(", ")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model::{DeliveryAddress, ProductLine};

    #[test]
    fn lines_hold_no_secrets_or_personal_details() {
        let address = DeliveryAddress {
            salutation: Some("2".into()),
            first_name: Some("Erika".into()),
            last_name: Some("Mustermann".into()),
            street: Some("Hauptstraße".into()),
            house_number: Some("5".into()),
            zip: Some("20095".into()),
            city: Some("Hamburg".into()),
            country: Some("DE".into()),
            phone: Some("+49 40 123".into()),
            ..Default::default()
        };
        let order = NewOrder::new(
            &[ProductLine {
                product_id: 1001,
                quantity: 3,
            }],
            Some(&address),
            Some("ref"),
        )
        .unwrap();
        let token = "ct_0123456789abcdef0123456789abcdef";
        let entries = [
            Record::new(Event::Preview, Environment::Sandbox, &order, Some(token)).entry(),
            Record::new(Event::Outcome, Environment::Sandbox, &order, Some(token))
                .outcome(AuditOutcome::Placed)
                .order_number(Some(7))
                .entry(),
        ];
        assert_eq!(entries[0].event, "preview");
        assert_eq!(
            entries[0].token_id.as_deref(),
            Some(token_id(token).as_str())
        );
        let lines: Vec<serde_json::Value> = entries.iter().map(|e| e.body.clone()).collect();
        let text = serde_json::to_string(&lines).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "preview");
        assert_eq!(lines[0]["ships_to"], "Hamburg, DE");
        assert_eq!(lines[0]["environment"], "sandbox");
        assert_eq!(lines[0]["products"][0]["quantity"], 3);
        assert_eq!(lines[1]["order_number"], 7);
        assert_eq!(lines[0]["token_id"], token_id(token));
        for secret in [token, "Erika", "Mustermann", "Hauptstraße", "20095", "+49"] {
            assert!(!text.contains(secret), "{secret} leaked into {text}");
        }
    }
}
