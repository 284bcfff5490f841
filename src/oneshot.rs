//! One tool call without an MCP host: `1nce-mcp call <tool>`.
//!
//! The call goes through a real MCP session held in memory (rmcp's client on one end of a
//! duplex pipe, the [`OrderServer`] on the other), so argument parsing, validation, the tool
//! handler and the confirmation flow are exactly those an MCP host gets: there is no second
//! implementation to drift from the first. [`run`] is the subcommand: the arguments in, the
//! result out (structuredContent on stdout, the text on stderr), the exit status.

use std::io::{Read, Write as _};
use std::path::Path;

use rmcp::model::{CallToolRequestParams, CallToolResult, JsonObject};
use rmcp::{ServiceExt, service::ServiceError};

use crate::exit_status::{Exit, ExitStatus, QuietPipe};
use crate::mcp::{OrderServer, ToolSet};

/// Why a one-shot call produced no tool result.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The tool does not exist.
    #[error("unknown tool {name:?}; the tools are: {available}")]
    UnknownTool { name: String, available: String },
    /// The tool exists, and the configuration turned it off (the message says which setting).
    #[error("{why}; the tools offered are: {available}")]
    TurnedOff { why: String, available: String },
    /// The in-memory session failed; a bug rather than bad input.
    #[error("the in-process MCP session failed: {0}")]
    Session(String),
}

/// Runs one tool call through the server's MCP handler and returns its result. `offered` is
/// the configuration's set of tools, which says why a tool of this server is not offered.
pub async fn call(
    server: OrderServer,
    offered: &ToolSet,
    tool: &str,
    arguments: JsonObject,
) -> Result<CallToolResult, CallError> {
    let known: Vec<String> = server.tools().iter().map(|t| t.name.to_string()).collect();
    if !known.iter().any(|name| name == tool) {
        let available = known.join(", ");
        return Err(match offered.turned_off(tool) {
            Some(why) => CallError::TurnedOff { why, available },
            None => CallError::UnknownTool {
                name: tool.to_owned(),
                available,
            },
        });
    }
    let (server_end, client_end) = tokio::io::duplex(1 << 20);
    let serving = tokio::spawn(async move {
        match server.serve(server_end).await {
            Ok(running) => {
                let _ = running.waiting().await;
            }
            Err(e) => tracing::error!(error = %e, "in-process MCP server failed to start"),
        }
    });
    let session = |e: ServiceError| CallError::Session(e.to_string());
    let client = ().serve(client_end).await.map_err(|e| CallError::Session(e.to_string()))?;
    let result = client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments))
        .await
        .map_err(session);
    let _ = client.cancel().await;
    // The server side ends with the session; anything it had in flight (an order POST) runs in
    // its own task and is awaited by the caller through the server's in-flight count.
    let _ = serving.await;
    result
}

/// `call`: the tool's structuredContent on stdout, its text on stderr, the exit status says
/// whether the tool succeeded.
pub async fn run(
    server: OrderServer,
    offered: &ToolSet,
    tool: &str,
    arguments: JsonObject,
) -> Result<(), Exit> {
    let result = call(server, offered, tool, arguments)
        .await
        .map_err(|e| match e {
            CallError::UnknownTool { .. } | CallError::TurnedOff { .. } => {
                Exit::usage(e.to_string())
            }
            CallError::Session(_) => Exit::failure(e.to_string()),
        })?;
    let text: Vec<&str> = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
        .collect();
    if result.is_error == Some(true) {
        return Err(Exit {
            status: ExitStatus::ToolError,
            message: text.join("\n"),
        });
    }
    let structured = result.structured_content.unwrap_or_default();
    let json = serde_json::to_string_pretty(&structured)
        .map_err(|e| Exit::failure(format!("could not serialise the result: {e}")))?;
    let mut out = QuietPipe::new(std::io::stdout());
    let written = writeln!(out, "{json}").and_then(|()| out.flush());
    for line in text {
        eprintln!("{line}");
    }
    let unwritten = match written {
        Err(e) => Some(e.to_string()),
        Ok(()) if out.closed() => Some("stdout was closed".to_owned()),
        Ok(()) => None,
    };
    if let Some(why) = unwritten {
        // The tool did its work; what it did must not be lost with its output.
        if structured["status"] == "placed" {
            eprintln!(
                "1nce-mcp: the order WAS placed (order {}), but its result could not be written to stdout ({why})",
                structured["order_number"]
            );
        } else {
            eprintln!("1nce-mcp: the result could not be written to stdout ({why})");
        }
    }
    Ok(())
}

/// The tool arguments from `--args`, or `--args-file` (a file, or stdin when it is `-`), as a
/// JSON object; `{}` when neither is given. stdin is read only when asked for with
/// `--args-file -`: a script or an agent's tool that leaves stdin open must not hold the call up.
pub fn read_arguments(args: Option<&str>, file: Option<&Path>) -> Result<JsonObject, Exit> {
    let (text, source) = match (args, file) {
        (Some(json), _) => (json.to_owned(), "--args".to_owned()),
        (None, Some(path)) if path == Path::new("-") => (read_stdin()?, "stdin".to_owned()),
        (None, Some(path)) => {
            let file = std::fs::File::open(path).map_err(|e| {
                Exit::usage(format!("cannot read --args-file {}: {e}", path.display()))
            })?;
            let source = path.display().to_string();
            (read_bounded(file, &source)?, source)
        }
        (None, None) => return Ok(JsonObject::new()),
    };
    if text.trim().is_empty() {
        return Ok(JsonObject::new());
    }
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(other) => Err(Exit::usage(format!(
            "the tool arguments from {source} must be a JSON object such as {{\"page\": 1}}, not {}",
            json_kind(&other)
        ))),
        Err(e) => Err(Exit::usage(format!(
            "the tool arguments from {source} are not valid JSON: {e}"
        ))),
    }
}

/// Largest tool arguments read from a file or stdin: an order is a few hundred bytes.
const MAX_ARGUMENTS_BYTES: u64 = 1024 * 1024;

fn read_stdin() -> Result<String, Exit> {
    read_bounded(std::io::stdin(), "stdin")
}

/// Reads at most [`MAX_ARGUMENTS_BYTES`] (one more tells a larger input from one that fits), so
/// `--args-file /dev/zero` is refused instead of filling memory.
fn read_bounded(reader: impl Read, source: &str) -> Result<String, Exit> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_ARGUMENTS_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Exit::usage(format!("cannot read the tool arguments from {source}: {e}")))?;
    if bytes.len() as u64 > MAX_ARGUMENTS_BYTES {
        return Err(Exit::usage(format!(
            "the tool arguments from {source} are larger than 1 MiB; tool arguments are a small JSON object"
        )));
    }
    String::from_utf8(bytes).map_err(|_| {
        Exit::usage(format!(
            "the tool arguments from {source} are not UTF-8 text"
        ))
    })
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
