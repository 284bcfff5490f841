//! How a person approves an order, and what they answered.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How an order is (to be) approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    /// The person approves in the MCP client's own form when the token is used.
    ApprovalForm,
    /// The agent asks the person and passes the token only after they approve.
    ConfirmationToken,
}

impl Approval {
    pub fn as_str(self) -> &'static str {
        match self {
            Approval::ApprovalForm => "approval_form",
            Approval::ConfirmationToken => "confirmation_token",
        }
    }
}

/// What the person answered in the approval form. Anything but [`PersonAnswer::Approved`] is
/// not approval, and ends the token for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersonAnswer {
    Approved,
    Declined,
    Cancelled,
    /// No usable answer (the request failed, timed out, or came back malformed).
    NoAnswer(String),
}

/// A token's end without approval, as the single-use store records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotApproved {
    Declined,
    Cancelled,
    NoAnswer,
}

impl NotApproved {
    /// What happened, as the rest of a sentence that starts with "the person".
    pub fn what(self) -> &'static str {
        match self {
            NotApproved::Declined => "declined this order in the approval form",
            NotApproved::Cancelled => {
                "closed the approval form for this order without approving it"
            }
            NotApproved::NoAnswer => "gave no usable answer in the approval form for this order",
        }
    }
}

impl PersonAnswer {
    /// `None` for an approval.
    pub fn not_approved(&self) -> Option<NotApproved> {
        match self {
            PersonAnswer::Approved => None,
            PersonAnswer::Declined => Some(NotApproved::Declined),
            PersonAnswer::Cancelled => Some(NotApproved::Cancelled),
            PersonAnswer::NoAnswer(_) => Some(NotApproved::NoAnswer),
        }
    }
}
