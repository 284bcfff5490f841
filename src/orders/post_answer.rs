//! What an answer to the order POST means for the order: the one rule that decides whether a
//! confirmation token may be used again.
//!
//! An allow-list. Only answers that prove 1NCE processed nothing make [`PostAnswer::NotProcessed`]:
//! nothing left this machine (no access token, no rate-limit slot, no connection), or 1NCE
//! refused before processing in a way it documents (400 with its JSON validation error, 401,
//! 403, 429). A 200 or 201 is [`PostAnswer::Created`]. Everything else, including every
//! status 1NCE does not document for this call (a redirect, 404, 409, 422, 5xx, an unexpected
//! 2xx), a timeout, a reset or a cut-off answer, is [`PostAnswer::Unknown`]: the order may
//! exist, so the token is spent and the agent is told to look before anything else.
//!
//! [`NotProcessed`] has no public constructor: the only way to release a claimed token
//! ([`super::tokens::Redemption::release`]) is with a value this module made.

use crate::api::model::{CreatedOrder, Order};
use crate::api::{ApiError, PostFailure};

/// The classification of one order POST.
#[derive(Debug)]
pub enum PostAnswer {
    /// 1NCE created the order (200 or 201).
    Created(Created),
    /// 1NCE certainly processed nothing.
    NotProcessed(NotProcessed),
    /// The order may or may not exist.
    Unknown(Unknown),
}

/// A created order: its number and the order itself, when 1NCE said them.
#[derive(Debug, Clone)]
pub struct Created {
    pub order_number: Option<u64>,
    pub order: Option<Box<Order>>,
}

/// Proof that 1NCE processed nothing; see the module docs.
#[derive(Debug, Clone)]
pub struct NotProcessed {
    error: ApiError,
}

impl NotProcessed {
    /// Nothing was sent because this server stopped before the POST (for instance, its audit
    /// record could not be written).
    pub(super) fn never_sent(error: ApiError) -> NotProcessed {
        NotProcessed { error }
    }

    /// What 1NCE (or the way to it) said.
    pub fn error(&self) -> &ApiError {
        &self.error
    }
}

/// Why the outcome of a POST is unknown, in a few words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    pub reason: String,
}

/// Judges the result of [`crate::api::Client::create_order`].
pub fn classify(result: Result<CreatedOrder, PostFailure>) -> PostAnswer {
    match result {
        Ok(created) if matches!(created.status, 200 | 201) => PostAnswer::Created(Created {
            order_number: created.order_number,
            order: created.order.map(Box::new),
        }),
        Ok(created) => PostAnswer::Unknown(Unknown {
            reason: format!(
                "1NCE answered HTTP {}, which it does not document for a new order",
                created.status
            ),
        }),
        Err(PostFailure::NotSent(error)) => PostAnswer::NotProcessed(NotProcessed { error }),
        Err(PostFailure::Answered {
            status,
            error_body,
            error,
        }) => match status {
            400 if error_body => PostAnswer::NotProcessed(NotProcessed { error }),
            401 | 403 | 429 => PostAnswer::NotProcessed(NotProcessed { error }),
            400 => PostAnswer::Unknown(Unknown {
                reason: "1NCE answered HTTP 400 without its validation error".to_owned(),
            }),
            300..=399 => PostAnswer::Unknown(Unknown {
                reason: format!(
                    "1NCE answered HTTP {status}, a redirect, which can mean the order was created"
                ),
            }),
            _ => PostAnswer::Unknown(Unknown {
                reason: format!("1NCE answered HTTP {status}"),
            }),
        },
        Err(PostFailure::NoAnswer { reason }) => PostAnswer::Unknown(Unknown { reason }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16, error_body: bool) -> PostAnswer {
        classify(Err(PostFailure::Answered {
            status,
            error_body,
            error: ApiError::Upstream { status },
        }))
    }

    fn created(status: u16) -> PostAnswer {
        classify(Ok(CreatedOrder {
            status,
            order_number: Some(7),
            order: None,
        }))
    }

    #[test]
    fn only_documented_refusals_release_the_token() {
        for status in [200, 201] {
            assert!(
                matches!(created(status), PostAnswer::Created(_)),
                "{status}"
            );
        }
        for status in [202, 203, 204, 206] {
            assert!(
                matches!(created(status), PostAnswer::Unknown(_)),
                "{status}"
            );
        }
        assert!(matches!(answered(400, true), PostAnswer::NotProcessed(_)));
        assert!(matches!(answered(400, false), PostAnswer::Unknown(_)));
        for status in [401, 403, 429] {
            for body in [false, true] {
                assert!(
                    matches!(answered(status, body), PostAnswer::NotProcessed(_)),
                    "{status}"
                );
            }
        }
        for status in [
            301, 302, 303, 304, 307, 308, 404, 405, 408, 409, 410, 422, 500, 502, 503, 504, 418,
            599,
        ] {
            for body in [false, true] {
                assert!(
                    matches!(answered(status, body), PostAnswer::Unknown(_)),
                    "{status} must be outcome unknown"
                );
            }
        }
        assert!(matches!(
            classify(Err(PostFailure::NotSent(ApiError::Unreachable {
                reason: "could not connect".into()
            }))),
            PostAnswer::NotProcessed(_)
        ));
        assert!(matches!(
            classify(Err(PostFailure::NoAnswer {
                reason: "no answer within 30 s".into()
            })),
            PostAnswer::Unknown(_)
        ));
    }
}
