//! Tells the agent when a tool call was slow on purpose: it waited for the client-side rate
//! limit or repeated a request to 1NCE. Without that, a pause of many seconds looks like a hang.

use rmcp::model::{CallToolResponse, ContentBlock};

use crate::api::pacing::Waits;

/// One sentence describing the waits, or `None` when there were none.
pub(super) fn note(waits: &Waits) -> Option<String> {
    if waits.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    if !waits.rate_limited.is_zero() {
        parts.push(format!(
            "waited {:.1} s for this server's rate limit, which keeps requests within 1NCE's limit (space out or batch calls to avoid this)",
            waits.rate_limited.as_secs_f32()
        ));
    }
    if !waits.retries.is_empty() {
        let reasons: Vec<String> = waits
            .retries
            .iter()
            .map(|r| {
                format!(
                    "{} (retried after {:.1} s)",
                    r.reason,
                    r.delay.as_secs_f32()
                )
            })
            .collect();
        parts.push(format!(
            "repeated a request to 1NCE {} time(s): {}",
            waits.retries.len(),
            reasons.join("; ")
        ));
    }
    Some(format!(
        "Note: this call took {:.1} s longer than usual: {}.",
        waits.total().as_secs_f32(),
        parts.join("; ")
    ))
}

/// Appends the note, if any, to a completed tool result (success or tool error) as one more
/// text block; `structuredContent` stays exactly as the output schema says.
pub(super) fn annotate(mut response: CallToolResponse, waits: &Waits) -> CallToolResponse {
    if let (CallToolResponse::Complete(result), Some(note)) = (&mut response, note(waits)) {
        result.content.push(ContentBlock::text(note));
    }
    response
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::api::pacing::Retry;

    #[test]
    fn says_what_was_waited_for() {
        assert_eq!(note(&Waits::default()), None);
        let waits = Waits {
            rate_limited: Duration::from_millis(1500),
            retries: vec![Retry {
                reason: "1NCE answered 503".into(),
                delay: Duration::from_millis(500),
            }],
        };
        let text = note(&waits).unwrap();
        assert!(
            text.starts_with("Note: this call took 2.0 s longer"),
            "{text}"
        );
        assert!(
            text.contains("waited 1.5 s for this server's rate limit"),
            "{text}"
        );
        assert!(
            text.contains("1 time(s): 1NCE answered 503 (retried after 0.5 s)"),
            "{text}"
        );
    }
}
