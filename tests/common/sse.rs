//! Server-sent events as the HTTP tests read them, parsed by the `sse-stream` crate (rmcp's own
//! parser, already in the build). It collects a line's bytes before decoding them, so a
//! character whose bytes arrive in two chunks of the response is read whole. [`LegacySession`]
//! is a raw client of the legacy HTTP+SSE transport.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;

use axum::body::Bytes;
use futures::{Stream, StreamExt};
use serde_json::{Value, json};
use sse_stream::{Sse, SseStream};

use super::PATIENCE;
use super::net::HttpServer;

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

/// A raw legacy-SSE session.
pub struct LegacySession {
    pub http: reqwest::Client,
    pub events: SseReader,
    /// Where messages are POSTed, from the `endpoint` event.
    pub post_url: String,
    token: Option<&'static str>,
    answers: HashMap<u64, Value>,
}

impl LegacySession {
    pub async fn open(server: &HttpServer, token: Option<&'static str>) -> LegacySession {
        LegacySession::open_url(&server.url("/sse"), token).await
    }

    /// Opens the stream at `url` (`http://HOST:PORT/sse`).
    pub async fn open_url(url: &str, token: Option<&'static str>) -> LegacySession {
        let http = reqwest::Client::new();
        let mut request = http.get(url).header("accept", "text/event-stream");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let mut events = SseReader::new(response);
        let endpoint = events.next().await.expect("an endpoint event");
        assert_eq!(endpoint.event, "endpoint");
        assert!(
            endpoint.data.starts_with("/message?sessionId="),
            "{}",
            endpoint.data
        );
        LegacySession {
            http,
            events,
            post_url: format!("{}{}", url.trim_end_matches("/sse"), endpoint.data),
            token,
            answers: HashMap::new(),
        }
    }

    pub async fn post(&self, message: Value) -> reqwest::StatusCode {
        let mut request = self.http.post(&self.post_url).json(&message);
        if let Some(token) = self.token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap().status()
    }

    /// POSTs a request (202) and reads `message` events until its answer arrives.
    pub async fn request(&mut self, id: u64, method: &str, params: Value) -> Value {
        let status = self
            .post(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        assert_eq!(status, 202, "{method}");
        while !self.answers.contains_key(&id) {
            let event = self.events.next().await.expect("the stream stays open");
            assert_eq!(event.event, "message", "{event:?}");
            let message: Value = serde_json::from_str(&event.data).unwrap();
            assert_eq!(message["jsonrpc"], "2.0");
            if let Some(answered) = message["id"].as_u64() {
                self.answers.insert(answered, message);
            }
        }
        self.answers.remove(&id).unwrap()
    }

    pub async fn initialize(&mut self) {
        let init = self
            .request(
                1,
                "initialize",
                json!({"protocolVersion": "2024-11-05", "capabilities": {},
                       "clientInfo": {"name": "raw-sse", "version": "0"}}),
            )
            .await;
        assert_eq!(init["result"]["protocolVersion"], "2024-11-05");
        assert_eq!(init["result"]["serverInfo"]["name"], "onence-mcp");
        let status = self
            .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert_eq!(status, 202);
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
