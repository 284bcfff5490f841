//! One tool call without an MCP host: `1nce-mcp call <tool>`.
//!
//! The call goes through a real MCP session held in memory (rmcp's client on one end of a
//! duplex pipe, the [`OrderServer`] on the other), so argument parsing, validation, the tool
//! handler and the confirmation flow are exactly those an MCP host gets: there is no second
//! implementation to drift from the first.

use rmcp::model::{CallToolRequestParams, CallToolResult, JsonObject};
use rmcp::{ServiceExt, service::ServiceError};

use crate::mcp::OrderServer;

/// Why a one-shot call produced no tool result.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The tool does not exist (or is not offered in this configuration).
    #[error("unknown tool {name:?}; the tools are: {available}")]
    UnknownTool { name: String, available: String },
    /// The in-memory session failed; a bug rather than bad input.
    #[error("the in-process MCP session failed: {0}")]
    Session(String),
}

/// Runs one tool call through the server's MCP handler and returns its result.
pub async fn call(
    server: OrderServer,
    tool: &str,
    arguments: JsonObject,
) -> Result<CallToolResult, CallError> {
    let known: Vec<String> = server.tools().iter().map(|t| t.name.to_string()).collect();
    if !known.iter().any(|name| name == tool) {
        return Err(CallError::UnknownTool {
            name: tool.to_owned(),
            available: known.join(", "),
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
