//! Who acts on an order, when the transport knows: over HTTP with OAuth, the person the
//! organisation's authorization server vouches for. Their subject is in every audit record, and
//! a confirmation token is bound to the person who previewed the order.

use serde::Serialize;

/// A person, as an access token names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Person {
    /// The authorization server that vouches for them: a subject is unique only within it.
    #[serde(skip)]
    pub issuer: String,
    /// The token's `sub`: stable for this person at this issuer.
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
}

impl Person {
    /// What a confirmation token binds: issuer and subject, never the changeable names.
    pub fn binding_key(&self) -> String {
        format!("{}\n{}", self.issuer, self.sub)
    }
}

/// The binding key of whoever acts: a person's, or the empty key of a transport that knows
/// nobody (stdio, a static HTTP token), which only a call that also knows nobody matches.
pub fn binding_key(person: Option<&Person>) -> String {
    person.map(Person::binding_key).unwrap_or_default()
}
