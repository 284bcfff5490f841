//! Server-sent events as the HTTP tests read them, parsed by the `sse-stream` crate (rmcp's own
//! parser, already in the build). It collects a line's bytes before decoding them, so a
//! character whose bytes arrive in two chunks of the response is read whole.

use std::convert::Infallible;
use std::pin::Pin;

use axum::body::Bytes;
use futures::{Stream, StreamExt};
use sse_stream::{Sse, SseStream};

use super::PATIENCE;

type Events = Pin<Box<dyn Stream<Item = Result<Sse, sse_stream::Error>> + Send>>;

/// Reads server-sent events from a streaming response.
pub struct SseReader {
    events: Events,
}

/// One server-sent event that carries data.
#[derive(Debug)]
pub struct SseEvent {
    /// `message` unless the event names another type.
    pub event: String,
    pub data: String,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        let chunks = futures::stream::unfold(response, |mut response| async move {
            match response.chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), response)),
                Ok(None) => None,
                Err(error) => Some((Err(error), response)),
            }
        });
        SseReader::from_chunks(chunks)
    }

    /// Events from a stream of body chunks, split wherever the transport split them.
    pub fn from_chunks<E>(chunks: impl Stream<Item = Result<Bytes, E>> + Send + 'static) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        SseReader {
            events: Box::pin(SseStream::from_bytes_stream(chunks)),
        }
    }

    /// The next event with data (comments such as keep-alives, and events with only an id or a
    /// retry hint, are skipped); `None` when the stream ends or breaks off. Fails the test if
    /// nothing comes within [`PATIENCE`] or the stream is not valid SSE.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            let next = tokio::time::timeout(PATIENCE, self.events.next())
                .await
                .unwrap_or_else(|_| panic!("no server-sent event within {PATIENCE:?}"));
            let sse = match next? {
                Ok(sse) => sse,
                Err(sse_stream::Error::Body(_)) => return None,
                Err(error) => panic!("not a valid event stream: {error}"),
            };
            if let Some(data) = sse.data {
                return Some(SseEvent {
                    event: sse.event.unwrap_or_else(|| "message".to_owned()),
                    data,
                });
            }
        }
    }
}

#[tokio::test]
async fn a_character_split_between_two_chunks_arrives_whole() {
    let text = "Grüße aus Köln ✓";
    let body = format!(": keep-alive\n\nid: 0\nretry: 3000\n\nevent: message\ndata: {text}\n\n");
    let body = body.as_bytes();
    // Cut after the first byte of "ü" (two bytes) and of "✓" (three).
    let after_first_byte = |c: &str| {
        body.windows(c.len())
            .position(|w| w == c.as_bytes())
            .unwrap()
            + 1
    };
    let (ue, check) = (after_first_byte("ü"), after_first_byte("✓"));
    assert!(
        std::str::from_utf8(&body[..ue]).is_err(),
        "the cut splits ü"
    );
    assert!(std::str::from_utf8(&body[ue..check]).is_err());
    let chunks = [&body[..ue], &body[ue..check], &body[check..]]
        .map(|chunk| Ok::<_, Infallible>(Bytes::copy_from_slice(chunk)));

    let mut events = SseReader::from_chunks(futures::stream::iter(chunks));
    let event = events.next().await.expect("one event with data");
    assert_eq!(event.event, "message");
    assert_eq!(event.data, text);
    assert!(events.next().await.is_none(), "and nothing else");
}
