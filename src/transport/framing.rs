//! MCP's stdio framing (one JSON-RPC message per line) with every line checked before rmcp sees
//! it, so that every request whose id can be read gets an answer.
//!
//! rmcp's own line transport drops a line it cannot parse without a word, and answers a line of
//! the wrong shape with an error that carries no id: a client that sent a batch, a lone
//! surrogate, `1e400` or `"jsonrpc": "1.0"` waited for its own timeout. Here each line is parsed
//! once into a JSON value (refusing duplicate keys, which parsers disagree about), its envelope
//! is checked, and then it is either handed to rmcp or answered on the spot, through the same
//! writer as rmcp's answers:
//!
//! - not JSON (invalid UTF-8, a lone surrogate, a number out of range, two objects on one line,
//!   a trailing NUL): -32700, with the id read leniently from the raw bytes when it is there;
//! - JSON but not a valid request (a batch, no or another `jsonrpc`, `params` not an object,
//!   an id that is not a string or an integer, a duplicate key): -32600 with the id.
//!
//! A sound envelope goes to rmcp, which answers unknown methods and bad parameters itself. The
//! duplicate-key rule is the HTTP transports' too: [`duplicate_key`] refuses such a body with the
//! same answer.
//!
//! Notifications and answers (`result`/`error`) are never answered, whatever is wrong with them:
//! two peers that answered each other's broken answers would never stop. Answers without an id
//! stop after [`IDLESS_ANSWERS`] in a row, for the same reason.
//!
//! What one line costs is bounded: a line is at most [`MAX_LINE`] long; a batch is read one
//! element at a time, never as a value of its own, and gets at most [`BATCH_IDS`] refusals with
//! an id plus one for the rest, however many requests it holds; and after a long line the line
//! buffer shrinks and freed memory goes back to the operating system.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::Arc;

use futures::SinkExt;
use rmcp::RoleServer;
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use serde::Serialize;
use serde::de::{self, Deserialize, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};
use tokio::sync::Mutex;
use tokio_util::bytes::{BufMut, BytesMut};
use tokio_util::codec::{Encoder, FramedWrite};

/// The longest line read (as rmcp's transport): a longer one is skipped as it streams in, never
/// held whole, and refused.
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// How much of an over-long line is kept to find its id.
const HEAD_OF_LONG_LINE: usize = 4096;

/// The line buffer keeps at most this much room between lines: one long line must not hold its
/// megabytes for the rest of the session.
const KEEP_LINE_CAPACITY: usize = 64 * 1024;

/// After a line that needed this much room, the allocator is asked to hand freed memory back to
/// the operating system (glibc keeps it for the process otherwise).
const GIVE_BACK_AFTER: usize = 1024 * 1024;

/// Answers without an id sent in a row before the rest are only logged, until a valid message
/// arrives: a peer that answers our error with more garbage cannot start an endless exchange.
pub const IDLESS_ANSWERS: u32 = 100;

/// Requests of one batch refused each with its own answer; the rest share one answer.
pub const BATCH_IDS: usize = 100;

/// How much of a parser's complaint an answer quotes.
const MAX_DETAIL: usize = 200;

const PARSE_ERROR: i32 = -32700;
const INVALID_REQUEST: i32 = -32600;

/// An error answer of our own: the id exactly as the client wrote it (any JSON number or string),
/// or none when it could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorResponse {
    id: Option<Value>,
    code: i32,
    message: String,
}

impl ErrorResponse {
    fn new(id: Option<Value>, code: i32, message: impl Into<String>) -> Self {
        ErrorResponse {
            id,
            code,
            message: message.into(),
        }
    }

    /// The id this answer carries, if any.
    pub fn id(&self) -> Option<&Value> {
        self.id.as_ref()
    }

    /// The JSON-RPC error code.
    pub fn code(&self) -> i32 {
        self.code
    }
}

impl Serialize for ErrorResponse {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Error<'a> {
            code: i32,
            message: &'a str,
        }
        #[derive(Serialize)]
        struct Message<'a> {
            jsonrpc: &'static str,
            // Left out when unknown, as MCP 2025-11-25 and rmcp do (a null id is not a RequestId).
            #[serde(skip_serializing_if = "Option::is_none")]
            id: Option<&'a Value>,
            error: Error<'a>,
        }
        Message {
            jsonrpc: "2.0",
            id: self.id.as_ref(),
            error: Error {
                code: self.code,
                message: &self.message,
            },
        }
        .serialize(serializer)
    }
}

/// What to do with one line.
#[derive(Debug)]
pub enum Checked {
    /// A message for rmcp.
    Pass(Box<RxJsonRpcMessage<RoleServer>>),
    /// Answer these errors (one per request of a batch) and go on.
    Refuse(Vec<ErrorResponse>),
    /// Nothing to answer: a blank line, or a broken notification or answer.
    Ignore(&'static str),
}

/// Checks one line (without its newline).
pub fn check(line: &[u8]) -> Checked {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // RFC 8259 lets a parser ignore a byte order mark.
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Checked::Ignore("a blank line");
    }
    let parsed = match serde_json::from_slice::<Parsed>(line) {
        Ok(parsed) => parsed,
        Err(_) if recover(line).is_answer => return Checked::Ignore("a broken answer"),
        Err(e) if is_duplicate_key(&e) => {
            return refuse(recover_id(line), INVALID_REQUEST, duplicate_key_message(&e));
        }
        Err(e) => {
            return refuse(
                recover_id(line),
                PARSE_ERROR,
                format!(
                    "Parse error: not valid JSON ({}). Send one JSON-RPC 2.0 message per line, UTF-8 encoded.",
                    detail(&e)
                ),
            );
        }
    };
    match parsed {
        Parsed::Message(message) => check_message(message),
        Parsed::Batch(batch) => refuse_batch(batch),
        Parsed::Other => refuse(
            None,
            INVALID_REQUEST,
            "Invalid request: a JSON-RPC message is a JSON object.",
        ),
    }
}

fn refuse(id: Option<Value>, code: i32, message: impl Into<String>) -> Checked {
    Checked::Refuse(vec![ErrorResponse::new(id, code, message)])
}

/// An id a client can match an answer to: a string or a number, as written.
fn readable(id: &Value) -> Option<Value> {
    (id.is_string() || id.is_number()).then(|| id.clone())
}

fn check_message(mut message: Map<String, Value>) -> Checked {
    let is_answer = !message.contains_key("method")
        && (message.contains_key("result") || message.contains_key("error"));
    let id = message.get("id").and_then(readable);
    let problem = if is_answer {
        None
    } else {
        envelope_problem(&mut message)
    };
    if let Some(problem) = problem {
        return match (message.contains_key("id"), message.contains_key("method")) {
            (false, true) => Checked::Ignore("an invalid notification"),
            _ => refuse(id, INVALID_REQUEST, format!("Invalid request: {problem}")),
        };
    }
    match serde_json::from_value::<RxJsonRpcMessage<RoleServer>>(Value::Object(message)) {
        Ok(message) => Checked::Pass(Box::new(message)),
        Err(_) if is_answer => Checked::Ignore("an answer rmcp cannot read"),
        Err(_) if id.is_none() => Checked::Ignore("a notification rmcp cannot read"),
        // Rare: rmcp reads a request it cannot type as a custom one, answered by the server.
        Err(e) => refuse(
            id,
            INVALID_REQUEST,
            format!("Invalid request: {}", truncated(&e.to_string())),
        ),
    }
}

/// What makes a request or notification invalid JSON-RPC 2.0 for MCP, if anything.
fn envelope_problem(message: &mut Map<String, Value>) -> Option<&'static str> {
    match message.get("jsonrpc") {
        Some(Value::String(v)) if v == "2.0" => {}
        Some(_) => return Some("\"jsonrpc\" must be \"2.0\"."),
        None => return Some("\"jsonrpc\": \"2.0\" is missing."),
    }
    match message.get("id") {
        None => {}
        Some(Value::String(_)) => {}
        Some(Value::Number(n)) if n.is_i64() => {}
        Some(_) => return Some("\"id\" must be a string or an integer."),
    }
    match message.get("method") {
        Some(Value::String(_)) => {}
        Some(_) => return Some("\"method\" must be a string."),
        None => return Some("\"method\" is missing."),
    }
    if message.contains_key("result") || message.contains_key("error") {
        return Some("a request has no \"result\" or \"error\".");
    }
    match message.get("params") {
        None | Some(Value::Object(_)) => {}
        // JSON-RPC wants it left out; some clients write null for "no parameters".
        Some(Value::Null) => {
            message.remove("params");
        }
        Some(_) => return Some("\"params\" must be an object."),
    }
    None
}

/// The refusal of a body that is JSON with a key twice in one object, at any depth: the -32600
/// a stdio line gets for it, for the HTTP transports, so that one rule holds for every transport.
/// It carries the request's id when that can be read (never an answer's: its id is ours). `None`
/// for any other body, valid or not, which the transport answers as it does anyway.
pub fn duplicate_key(body: &[u8]) -> Option<ErrorResponse> {
    match serde_json::from_slice::<Parsed>(body) {
        Err(e) if is_duplicate_key(&e) => {
            let found = recover(body);
            let id = found.id.filter(|_| !found.is_answer);
            Some(ErrorResponse::new(
                id,
                INVALID_REQUEST,
                duplicate_key_message(&e),
            ))
        }
        _ => None,
    }
}

/// Whether a parse failed on a duplicate key: the only data error [`Parsed`] and [`Unique`]
/// raise (every JSON value is of a type they take; syntax errors, numbers out of range and
/// lone surrogates included, are `Syntax` errors).
fn is_duplicate_key(e: &serde_json::Error) -> bool {
    e.classify() == serde_json::error::Category::Data
}

fn duplicate_key_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let at = format!(" at line {} column {}", e.line(), e.column());
    let what = text.strip_suffix(&at).unwrap_or(&text);
    format!(
        "Invalid request: {what} (line {}, column {}), which JSON parsers read differently; send each key once.",
        e.line(),
        e.column()
    )
}

/// MCP dropped JSON-RPC batches in 2025-06-18, and no revision this server speaks has them: each
/// request in one gets its own refusal, so that no client waits for an answer; past
/// [`BATCH_IDS`] requests, the rest share one refusal without an id that says how many they
/// were, so that one line cannot queue more answers than that.
fn refuse_batch(batch: Batch) -> Checked {
    const WHY: &str = "Invalid request: JSON-RPC batches are not supported (MCP has none since 2025-06-18); send each request on its own line.";
    let mut refusals: Vec<ErrorResponse> = batch
        .ids
        .into_iter()
        .map(|id| ErrorResponse::new(Some(id), INVALID_REQUEST, WHY))
        .collect();
    if batch.more > 0 {
        refusals.push(ErrorResponse::new(
            None,
            INVALID_REQUEST,
            format!(
                "{WHY} This batch held {} requests: the first {BATCH_IDS} were each refused with their id, and the other {} are refused by this one answer. None of them was run.",
                BATCH_IDS + batch.more,
                batch.more
            ),
        ));
    }
    if refusals.is_empty() {
        return refuse(None, INVALID_REQUEST, WHY);
    }
    Checked::Refuse(refusals)
}

/// A parser's complaint, short (serde_json's syntax errors name a position, never the input).
fn detail(e: &serde_json::Error) -> String {
    truncated(&e.to_string())
}

fn truncated(text: &str) -> String {
    match text.char_indices().nth(MAX_DETAIL) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// What a line or body holds, parsed without a key twice in any object: a message (an object),
/// a batch (an array), or any other JSON value. A batch is read one element at a time and only
/// what its refusals need is kept (see [`Batch`]), so a line of 400,000 requests costs a few
/// ids, not a `Value` of them all.
enum Parsed {
    Message(Map<String, Value>),
    Batch(Batch),
    Other,
}

impl<'de> Deserialize<'de> for Parsed {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ParsedVisitor)
    }
}

struct ParsedVisitor;

impl<'de> Visitor<'de> for ParsedVisitor {
    type Value = Parsed;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Parsed, E> {
        Ok(Parsed::Other)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Parsed, E> {
        Ok(Parsed::Other)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Parsed, E> {
        Ok(Parsed::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Parsed, E> {
        Ok(Parsed::Other)
    }

    fn visit_str<E>(self, _: &str) -> Result<Parsed, E> {
        Ok(Parsed::Other)
    }

    fn visit_unit<E>(self) -> Result<Parsed, E> {
        Ok(Parsed::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Parsed, A::Error> {
        let mut batch = Batch::default();
        while let Some(Unique(item)) = seq.next_element()? {
            let id = item
                .as_object()
                .filter(|m| m.contains_key("method"))
                .and_then(|m| m.get("id"))
                .and_then(readable);
            if let Some(id) = id {
                if batch.ids.len() < BATCH_IDS {
                    batch.ids.push(id);
                } else {
                    batch.more += 1;
                }
            }
        }
        Ok(Parsed::Batch(batch))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Parsed, A::Error> {
        unique_map(map).map(Parsed::Message)
    }
}

/// What is kept of a batch: the ids of its first [`BATCH_IDS`] requests (objects with a
/// `method` and a readable id; notifications are never answered), and how many came after.
#[derive(Debug, Default)]
struct Batch {
    ids: Vec<Value>,
    more: usize,
}

/// A JSON value in which no object has a key twice: `{"quantity":1,"quantity":1000}` means one
/// thing to one parser and another to the next, so it is refused rather than guessed at.
struct Unique(Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(Unique(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        unique_map(map).map(Value::Object)
    }
}

/// An object's entries, refused at the first key it holds twice.
fn unique_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Map<String, Value>, A::Error> {
    let mut object = Map::new();
    while let Some(key) = map.next_key::<String>()? {
        if object.contains_key(&key) {
            return Err(de::Error::custom(format_args!(
                "the key {:?} appears twice in one object",
                truncated_key(&key)
            )));
        }
        let Unique(value) = map.next_value()?;
        object.insert(key, value);
    }
    Ok(object)
}

fn truncated_key(key: &str) -> String {
    match key.char_indices().nth(40) {
        Some((at, _)) => format!("{}…", &key[..at]),
        None => key.to_owned(),
    }
}

/// What can be read of a line that did not parse, leniently: the value of the first top-level
/// `"id"` key, if it is a readable string or number, and whether the top-level keys read before
/// whatever is broken make it an answer (`result` or `error`, no `method`). Nested values are
/// skipped by bracket and quote, never decoded, so a broken string or number elsewhere does not
/// hide the id.
#[derive(Debug, Default, PartialEq)]
pub struct Recovered {
    pub id: Option<Value>,
    pub is_answer: bool,
}

pub fn recover(line: &[u8]) -> Recovered {
    let mut found = Recovered::default();
    let (mut method, mut answer) = (false, false);
    let mut scan = Scanner { bytes: line, at: 0 };
    // Reads keys until the end of the object or the first thing that is broken.
    let mut read = || -> Option<()> {
        scan.skip_space();
        scan.expect(b'{')?;
        loop {
            scan.skip_space();
            let key = scan.string()?;
            scan.skip_space();
            scan.expect(b':')?;
            scan.skip_space();
            let start = scan.at;
            scan.value()?;
            match key {
                b"id" if found.id.is_none() => {
                    found.id = serde_json::from_slice::<Value>(&line[start..scan.at])
                        .ok()
                        .as_ref()
                        .and_then(readable);
                }
                b"method" => method = true,
                b"result" | b"error" => answer = true,
                _ => {}
            }
            scan.skip_space();
            scan.expect(b',')?;
        }
    };
    read();
    found.is_answer = answer && !method;
    found
}

/// The id [`recover`] finds, for an answer of ours.
fn recover_id(line: &[u8]) -> Option<Value> {
    recover(line).id
}

struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.bump()? == want).then_some(())
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    /// A string's raw bytes, escapes left as written.
    fn string(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let start = self.at;
        loop {
            match self.bump()? {
                b'\\' => {
                    self.bump()?;
                }
                b'"' => return Some(&self.bytes[start..self.at - 1]),
                _ => {}
            }
        }
    }

    fn value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => {
                self.string()?;
            }
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => depth -= 1,
                        _ => {}
                    }
                    self.at += 1;
                    if depth == 0 {
                        break;
                    }
                }
            }
            _ => {
                while self
                    .peek()
                    .is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace())
                {
                    self.at += 1;
                }
            }
        }
        Some(())
    }
}

/// Serialises straight into the writer's buffer, a newline after each message: rmcp's messages
/// and our refusals alike, so both go out whole, in order, through one buffer.
struct Lines;

impl Lines {
    fn line(item: &impl Serialize, buf: &mut BytesMut) -> io::Result<()> {
        let mut writer = buf.writer();
        serde_json::to_writer(&mut writer, item)?;
        writer.into_inner().put_u8(b'\n');
        Ok(())
    }
}

impl Encoder<TxJsonRpcMessage<RoleServer>> for Lines {
    type Error = io::Error;

    fn encode(&mut self, item: TxJsonRpcMessage<RoleServer>, buf: &mut BytesMut) -> io::Result<()> {
        Lines::line(&item, buf)
    }
}

impl Encoder<ErrorResponse> for Lines {
    type Error = io::Error;

    fn encode(&mut self, item: ErrorResponse, buf: &mut BytesMut) -> io::Result<()> {
        Lines::line(&item, buf)
    }
}

type Writer<W> = Arc<Mutex<Option<FramedWrite<W, Lines>>>>;

/// How reading one line ended.
enum LineRead {
    Line,
    TooLong,
    End,
    Failed(io::Error),
}

/// A server transport over a reader and a writer of lines; see the module docs.
pub struct LineTransport<R, W> {
    read: BufReader<R>,
    /// The line being read. It lives here rather than in `receive`, which rmcp polls in a
    /// `select!` and drops whenever an answer is ready to go: the next call goes on where the
    /// dropped one stopped.
    line: Vec<u8>,
    /// Skipping the rest of an over-long line.
    skipping: bool,
    write: Writer<W>,
    /// Refusals not yet handed to the writer (kept across a dropped `receive`).
    owed: VecDeque<ErrorResponse>,
    /// Refusals handed to the writer but perhaps not yet flushed.
    unflushed: bool,
    /// Answers without an id since the last valid message.
    idless_in_a_row: u32,
    /// A long line was read: memory is handed back once its answers are written.
    give_back: bool,
}

impl<R, W> LineTransport<R, W>
where
    R: AsyncRead + Send + Unpin,
    W: AsyncWrite + Send + Unpin + 'static,
{
    pub fn new(read: R, write: W) -> Self {
        LineTransport {
            read: BufReader::new(read),
            line: Vec::new(),
            skipping: false,
            write: Arc::new(Mutex::new(Some(FramedWrite::new(write, Lines)))),
            owed: VecDeque::new(),
            unflushed: false,
            idless_in_a_row: 0,
            give_back: false,
        }
    }

    /// Empties the line buffer for the next line, and gives up the room a long line made it
    /// take (see [`KEEP_LINE_CAPACITY`], [`GIVE_BACK_AFTER`]).
    fn next_line(&mut self) {
        self.line.clear();
        let room = self.line.capacity();
        if room > KEEP_LINE_CAPACITY {
            self.line = Vec::new();
        }
        self.give_back |= room >= GIVE_BACK_AFTER;
    }

    /// Reads up to and including the next newline into `self.line`, never past [`MAX_LINE`].
    /// Cancel-safe: bytes move from the reader's buffer into `self.line` with no await between.
    async fn read_line(&mut self) -> LineRead {
        loop {
            let available = match self.read.fill_buf().await {
                Ok(available) => available,
                Err(e) => return LineRead::Failed(e),
            };
            if available.is_empty() {
                return LineRead::End;
            }
            let newline = available.iter().position(|b| *b == b'\n');
            let take = newline.map_or(available.len(), |at| at + 1);
            let mut outcome = newline.map(|_| LineRead::Line);
            if self.skipping {
                self.skipping = newline.is_none();
                outcome = None;
            } else if self.line.len() + take > MAX_LINE {
                // Keep the head, where the id usually is; skip the rest as it arrives.
                let room = HEAD_OF_LONG_LINE.saturating_sub(self.line.len());
                self.line.truncate(HEAD_OF_LONG_LINE);
                self.line.extend_from_slice(&available[..room.min(take)]);
                self.skipping = newline.is_none();
                outcome = Some(LineRead::TooLong);
            } else {
                self.line.extend_from_slice(&available[..take]);
            }
            self.read.consume(take);
            if let Some(outcome) = outcome {
                return outcome;
            }
        }
    }

    /// Queues refusals, after the cap on answers without an id.
    fn owe(&mut self, refusals: Vec<ErrorResponse>) {
        for refusal in refusals {
            tracing::debug!(code = refusal.code, "refusing a malformed stdio line");
            if refusal.id.is_none() {
                self.idless_in_a_row = self.idless_in_a_row.saturating_add(1);
                if self.idless_in_a_row > IDLESS_ANSWERS {
                    if self.idless_in_a_row == IDLESS_ANSWERS + 1 {
                        tracing::warn!(
                            "{IDLESS_ANSWERS} unreadable stdio lines in a row; no longer answering them until a valid message arrives"
                        );
                    }
                    continue;
                }
            }
            self.owed.push_back(refusal);
        }
    }

    /// Writes and flushes every refusal owed. Cancel-safe: a refusal leaves the queue only once
    /// the writer holds all of it, and a flush cut short is finished by the next call (or by
    /// rmcp's next answer, which flushes the same buffer).
    async fn pay(&mut self) -> io::Result<()> {
        let mut guard = self.write.lock().await;
        let Some(framed) = guard.as_mut() else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        while let Some(refusal) = self.owed.front() {
            framed.feed(refusal.clone()).await?;
            self.owed.pop_front();
            self.unflushed = true;
        }
        SinkExt::<ErrorResponse>::flush(framed).await?;
        self.unflushed = false;
        Ok(())
    }
}

impl<R, W> Transport<RoleServer> for LineTransport<R, W>
where
    R: AsyncRead + Send + Unpin,
    W: AsyncWrite + Send + Unpin + 'static,
{
    type Error = io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let write = self.write.clone();
        async move {
            match write.lock().await.as_mut() {
                Some(framed) => framed.send(item).await,
                None => Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the stdio transport is closed",
                )),
            }
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            if (!self.owed.is_empty() || self.unflushed)
                && let Err(e) = self.pay().await
            {
                tracing::debug!("could not answer on stdout: {e}");
                return None;
            }
            if std::mem::take(&mut self.give_back) {
                give_memory_back();
            }
            let verdict = match self.read_line().await {
                LineRead::Line => check(self.line.strip_suffix(b"\n").unwrap_or(&self.line)),
                LineRead::TooLong => {
                    let id = recover_id(&self.line);
                    refuse(
                        id,
                        INVALID_REQUEST,
                        format!(
                            "Invalid request: the message is longer than {} MiB, the most this server reads.",
                            MAX_LINE >> 20
                        ),
                    )
                }
                // A last line without a newline is cut short: nothing to deliver.
                LineRead::End => return None,
                LineRead::Failed(e) => {
                    tracing::debug!("could not read stdin: {e}");
                    return None;
                }
            };
            self.next_line();
            match verdict {
                Checked::Pass(message) => {
                    self.idless_in_a_row = 0;
                    return Some(*message);
                }
                Checked::Refuse(refusals) => self.owe(refusals),
                Checked::Ignore(what) => tracing::debug!("ignoring {what} on stdin"),
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        drop(self.write.lock().await.take());
        Ok(())
    }
}

/// Hands the heap memory freed since the last trim back to the operating system. glibc keeps
/// freed memory for the process (in each thread's arena, below its top), so a server that once
/// read and parsed a 16 MiB line would hold what that took for good; `malloc_trim` releases the
/// free pages of every arena. Other allocators are left to their own policy.
fn give_memory_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer; it only walks the allocator's own free lists, under
    // the allocator's locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refusals(line: &str) -> Vec<(Option<Value>, i32)> {
        match check(line.as_bytes()) {
            Checked::Refuse(r) => r.into_iter().map(|r| (r.id, r.code)).collect(),
            other => panic!("{line}: expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn valid_requests_pass() {
        for line in [
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":"a","method":"ping","params":null}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_orders","arguments":{"page_size":1}}}"#,
            r#"{"jsonrpc":"2.0","id":3,"method":"no/such/method","params":{"x":[1,2]}}"#,
            "\u{feff}{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"ping\"}\r",
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            // rmcp reads what it does not know as custom messages, and answers or drops them.
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":{"a":1}}}"#,
            r#"{"jsonrpc":"2.0","method":"textDocument/didOpen","params":{}}"#,
        ] {
            assert!(matches!(check(line.as_bytes()), Checked::Pass(_)), "{line}");
        }
    }

    #[test]
    fn each_broken_line_of_the_issue_is_answered_with_its_id() {
        let x = Some(json!("x"));
        for (line, code) in [
            (r#"{"id":"x","method":"ping"}"#, INVALID_REQUEST),
            (
                r#"{"jsonrpc":"1.0","id":"x","method":"ping"}"#,
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":"list_orders"}"#,
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":[1]}"#,
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","method":"ping","params":{"a":1e400}}"#,
                PARSE_ERROR,
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","method":"ping","params":{"a":"\ud800"}}"#,
                PARSE_ERROR,
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","method":"ping"}{"jsonrpc":"2.0","id":"y","method":"ping"}"#,
                PARSE_ERROR,
            ),
            (
                "{\"jsonrpc\":\"2.0\",\"id\":\"x\",\"method\":\"ping\"}\0",
                PARSE_ERROR,
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","method":"ping","method":"tools/list"}"#,
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"create_order","arguments":{"q":1,"q":2}}}"#,
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x","method":"ping","result":{}}"#,
                INVALID_REQUEST,
            ),
            (r#"{"jsonrpc":"2.0","id":"x"}"#, INVALID_REQUEST),
        ] {
            assert_eq!(refusals(line), [(x.clone(), code)], "{line}");
        }
        let mut invalid_utf8 =
            br#"{"jsonrpc":"2.0","id":"x","method":"ping","params":{"a":""#.to_vec();
        invalid_utf8.extend_from_slice(b"\xff\xfe\"}}");
        let Checked::Refuse(r) = check(&invalid_utf8) else {
            panic!("invalid UTF-8 passed")
        };
        assert_eq!((r[0].id.clone(), r[0].code), (x, PARSE_ERROR));
    }

    #[test]
    fn a_batch_gets_one_refusal_per_request() {
        assert_eq!(
            refusals(
                r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":"b","method":"tools/list"}]"#
            ),
            [
                (Some(json!(1)), INVALID_REQUEST),
                (Some(json!("b")), INVALID_REQUEST)
            ]
        );
        assert_eq!(refusals("[]"), [(None, INVALID_REQUEST)]);
    }

    #[test]
    fn a_large_batch_gets_its_first_ids_and_one_refusal_for_the_rest() {
        let mut line = String::from("[");
        for id in 0..1000 {
            line.push_str(&format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}},"#
            ));
            // Notifications are neither answered nor counted.
            line.push_str(r#"{"jsonrpc":"2.0","method":"notifications/initialized"},"#);
        }
        line.push_str(r#""junk"]"#);
        let Checked::Refuse(answers) = check(line.as_bytes()) else {
            panic!("a batch passed")
        };
        assert_eq!(answers.len(), BATCH_IDS + 1);
        for (n, refusal) in answers[..BATCH_IDS].iter().enumerate() {
            assert_eq!(
                (refusal.id(), refusal.code()),
                (Some(&json!(n)), INVALID_REQUEST)
            );
        }
        let rest = &answers[BATCH_IDS];
        assert_eq!((rest.id(), rest.code()), (None, INVALID_REQUEST));
        assert!(
            rest.message.contains("held 1000 requests") && rest.message.contains("other 900"),
            "{}",
            rest.message
        );
        // A duplicate key inside an element refuses the whole line, as anywhere else.
        assert_eq!(
            refusals(r#"[{"jsonrpc":"2.0","id":1,"method":"ping","id":2}]"#),
            [(None, INVALID_REQUEST)]
        );
    }

    #[tokio::test]
    async fn a_long_line_is_answered_then_its_buffer_is_given_up() {
        let mut input = b"[".to_vec();
        for id in 0..50_000 {
            input.extend_from_slice(
                format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}},"#).as_bytes(),
            );
        }
        input.pop();
        input.extend_from_slice(b"]\n{\"jsonrpc\":\"2.0\",\"id\":\"next\",\"method\":\"ping\"}\n");
        assert!(input.len() > GIVE_BACK_AFTER);
        let mut transport = LineTransport::new(&input[..], Vec::new());
        let next = transport
            .receive()
            .await
            .expect("the request after the batch");
        assert!(
            matches!(next, RxJsonRpcMessage::<RoleServer>::Request(_)),
            "{next:?}"
        );
        assert!(transport.line.capacity() <= KEEP_LINE_CAPACITY);
        assert!(transport.owed.is_empty() && !transport.unflushed);
        let written = transport.write.lock().await;
        let written = written.as_ref().unwrap().get_ref();
        assert_eq!(
            written.iter().filter(|b| **b == b'\n').count(),
            BATCH_IDS + 1
        );
    }

    #[test]
    fn duplicate_keys_at_any_depth_are_refused_for_http_as_on_stdio() {
        let body = r#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"create_order","arguments":{"products":[{"product_id":1001,"quantity":1,"quantity":900}]}}}"#;
        let refusal = duplicate_key(body.as_bytes()).expect("refused");
        assert_eq!(
            (refusal.id(), refusal.code()),
            (Some(&json!("x")), INVALID_REQUEST)
        );
        assert!(
            refusal.message.contains(r#""quantity""#),
            "{}",
            refusal.message
        );
        assert!(
            refusal.message.contains("send each key once"),
            "{}",
            refusal.message
        );
        // The same line on stdio gets the same answer.
        let Checked::Refuse(on_stdio) = check(body.as_bytes()) else {
            panic!("passed on stdio")
        };
        assert_eq!(on_stdio, [refusal]);
        // An answer's id is the server's own: refused without it.
        let answer = r#"{"jsonrpc":"2.0","id":7,"result":{"action":"accept","action":"decline"}}"#;
        assert_eq!(duplicate_key(answer.as_bytes()).unwrap().id(), None);
        for fine in [
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            r#"{"a":{"k":1},"b":{"k":2}}"#,
            // Not JSON, or not a message: the transport's own answer.
            r#"{"jsonrpc":"2.0","id":1,"method":"ping""#,
            r#"{"a":1e400,"a":1}"#,
            "",
            "[1,2]",
        ] {
            assert_eq!(duplicate_key(fine.as_bytes()), None, "{fine}");
        }
    }

    #[test]
    fn ids_that_are_not_request_ids_are_echoed_when_readable() {
        assert_eq!(
            refusals(r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#),
            [(Some(json!(1.5)), INVALID_REQUEST)]
        );
        assert_eq!(
            refusals(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#),
            [(None, INVALID_REQUEST)]
        );
        assert_eq!(
            refusals(r#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#),
            [(None, INVALID_REQUEST)]
        );
    }

    #[test]
    fn notifications_answers_and_blank_lines_are_never_answered() {
        for line in [
            "",
            " \t",
            "\r",
            r#"{"jsonrpc":"1.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"a":1e400}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{},"result":{}}"#,
        ] {
            assert!(
                matches!(check(line.as_bytes()), Checked::Ignore(_)),
                "{line:?}"
            );
        }
    }

    #[test]
    fn garbage_is_a_parse_error_without_an_id() {
        for line in [
            "#",
            "{",
            "nul",
            "\"str",
            "[1,",
            r#"{"id":1e400,"method":"ping"}"#,
        ] {
            assert_eq!(refusals(line), [(None, PARSE_ERROR)], "{line}");
        }
        for line in ["1", "true", "\"text\"", "null"] {
            assert_eq!(refusals(line), [(None, INVALID_REQUEST)], "{line}");
        }
    }

    #[test]
    fn the_id_is_recovered_past_broken_values_but_not_from_inside_them() {
        assert_eq!(
            recover_id(br#" { "a" : {"id":7,"b":[1,"]}"]}, "id" : 8 , "c": 1e999 }x"#),
            Some(json!(8))
        );
        assert_eq!(recover_id(br#"{"a":"\"id\":9","id":"ok"#), None);
        assert_eq!(
            recover_id(br#"{"a":"\"id\":9","id":"ok"}"#),
            Some(json!("ok"))
        );
        assert_eq!(recover_id(br#"{"params":{"x":1},"id":-3"#), Some(json!(-3)));
        assert_eq!(recover_id(br#"["id",1]"#), None);
        assert_eq!(recover_id(br#"{"id":[1]}"#), None);
    }
}
