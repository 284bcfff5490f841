//! What a tool answers when it cannot do what it was asked: one type, one rendering, a result
//! with `isError: true` whose text tells the agent what happened and what to do next.
//! (Protocol faults are JSON-RPC errors instead, and never come from here.)

use std::fmt;

use rmcp::ErrorData;
use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock};

use crate::api::ApiError;
use crate::orders::OrderError;

/// Why a tool answered with an error.
#[derive(Debug)]
pub enum ToolError {
    /// The arguments break a rule the schema cannot say.
    InvalidArguments(String),
    /// 1NCE refused, failed or could not be reached.
    Upstream(ApiError),
    /// The client cancelled the call (or went away) before 1NCE answered a read.
    Cancelled,
    /// The order path stopped, or the outcome of an order is unknown.
    Order(OrderError),
    /// Anything else, already worded for the agent.
    Other(String),
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolError::InvalidArguments(why) => {
                write!(f, "Invalid arguments: {}.", why.trim_end_matches('.'))
            }
            ToolError::Upstream(error) => f.write_str(&error.advice()),
            ToolError::Cancelled => {
                f.write_str("Cancelled before 1NCE answered; nothing was changed.")
            }
            ToolError::Order(error) => error.fmt(f),
            ToolError::Other(text) => f.write_str(text),
        }
    }
}

impl From<ApiError> for ToolError {
    fn from(error: ApiError) -> Self {
        ToolError::Upstream(error)
    }
}

impl From<OrderError> for ToolError {
    fn from(error: OrderError) -> Self {
        ToolError::Order(error)
    }
}

impl IntoCallToolResult for ToolError {
    fn into_call_tool_result(self) -> Result<CallToolResponse, ErrorData> {
        Ok(CallToolResult::error(vec![ContentBlock::text(self.to_string())]).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_is_worded_once() {
        assert_eq!(
            ToolError::InvalidArguments("page must be at least 1.".into()).to_string(),
            "Invalid arguments: page must be at least 1."
        );
        assert_eq!(
            ToolError::Upstream(ApiError::Forbidden).to_string(),
            ApiError::Forbidden.advice()
        );
        assert!(
            ToolError::Cancelled
                .to_string()
                .contains("nothing was changed")
        );
    }
}
