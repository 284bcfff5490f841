//! How a person approves an order, and what they answered.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How an order is (to be) approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    /// The person approves in the MCP client's own form when the token is used.
    ApprovalForm,
    /// The person approves with a click in the order card the client shows with the preview
    /// (an MCP App); the agent cannot place the order. Left out of the schema clients without
    /// the card see (theirs stays as it was); `crate::mcp` adds it for those that show it.
    #[schemars(skip)]
    OrderCard,
    /// The agent asks the person and passes the token only after they approve.
    ConfirmationToken,
}

impl Approval {
    pub fn as_str(self) -> &'static str {
        match self {
            Approval::ApprovalForm => "approval_form",
            Approval::OrderCard => "order_card",
            Approval::ConfirmationToken => "confirmation_token",
        }
    }
}

/// What the MCP client can show its user, so the person approves there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CanShow {
    /// The client's own approval form (elicitation).
    pub form: bool,
    /// The order card (the client renders MCP Apps, and the operator did not turn the card off).
    pub card: bool,
}

impl CanShow {
    /// How a preview made for this client is approved: in the card where the client shows it
    /// (the person sees the server's own rendering and clicks), else in the client's form, else
    /// through the agent, unless the operator requires a person's approval (`require`), which
    /// the client's form then gives.
    pub fn approval(self, require: bool) -> Approval {
        if self.card {
            Approval::OrderCard
        } else if self.form || require {
            Approval::ApprovalForm
        } else {
            Approval::ConfirmationToken
        }
    }

    /// Whether the client can show its user anything to approve in.
    pub fn any(self) -> bool {
        self.form || self.card
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

/// A token's end without approval, as the token ledger records it.
pub use crate::state::NotApproved;

impl NotApproved {
    /// What happened, as the rest of a sentence that starts with "the person".
    pub fn what(self) -> &'static str {
        match self {
            NotApproved::Declined => "declined this order when asked to approve it",
            NotApproved::Cancelled => "closed the approval of this order without approving it",
            NotApproved::NoAnswer => "gave no usable answer when asked to approve this order",
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
