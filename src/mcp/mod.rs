//! The MCP face of the server: tools, their schemas, and the order confirmation flow.
//!
//! [`OrderServer`] is one `rmcp` server handler. Each tool lives in its own file with its own
//! router; [`OrderServer::new`] adds them together. Tools call the 1NCE [`Client`] and know
//! nothing of HTTP: they see typed models and [`ApiError`]s, which [`tool_error`] turns into
//! messages an agent can act on. Every result carries `structuredContent` matching the tool's
//! output schema and a short text summary ([`Answer`]).

mod confirm;
mod create_order;
mod find_orders;
mod get_order;
mod list_orders;
mod pre_init;
mod prompts;
pub mod resources;
pub mod schema;
mod waits;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rmcp::handler::server::router::prompt::PromptRouter;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{
    CallToolResponse, CallToolResult, ContentBlock, Implementation, ListResourceTemplatesResult,
    ListResourcesResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, prompt_handler, tool_handler};
use serde::Serialize;
use tokio::sync::Notify;

use crate::api::{ApiError, Client};
pub use confirm::{Confirmations, Refusal};
pub use create_order::{CreateOrderArgs, CreateOrderOutput, CreateStatus, OrderPreview};
pub use find_orders::{FindOrdersArgs, FindOrdersOutput};
pub use get_order::GetOrderArgs;
pub use list_orders::{ListOrdersArgs, ListOrdersOutput};
pub use pre_init::IgnoreBeforeInitialize;

/// Settings of the MCP layer.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Whether the 1NCE behind the client is the built-in sandbox (said in the instructions).
    pub sandbox: bool,
}

/// The confirmation scope of a process owned by one user (stdio).
pub const LOCAL_SCOPE: &str = "local";

/// The MCP server: one per session, all sharing one [`Client`] and one [`Confirmations`].
#[derive(Clone)]
pub struct OrderServer {
    client: Client,
    confirmations: Arc<Confirmations>,
    in_flight: InFlight,
    /// Confirmation tokens are bound to this scope: one per MCP session where sessions are
    /// separate (HTTP), one shared value where a single user owns the process (stdio).
    session_scope: String,
    sandbox: bool,
    tool_router: ToolRouter<Self>,
    prompt_router: PromptRouter<Self>,
}

impl OrderServer {
    pub fn new(client: Client, confirmations: Arc<Confirmations>, options: ServerOptions) -> Self {
        OrderServer {
            client,
            confirmations,
            in_flight: InFlight::default(),
            session_scope: LOCAL_SCOPE.to_owned(),
            sandbox: options.sandbox,
            tool_router: Self::router(),
            prompt_router: Self::prompt_router(),
        }
    }

    fn router() -> ToolRouter<Self> {
        Self::list_orders_router()
            + Self::get_order_router()
            + Self::find_orders_router()
            + Self::create_order_router()
    }

    /// The tools as `tools/list` shows them, without a running server.
    pub fn tool_definitions() -> Vec<rmcp::model::Tool> {
        let mut tools = Self::router().list_all();
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        tools
    }

    /// A server for a separate session that shares this one's client, confirmations and
    /// in-flight count, with confirmation tokens bound to `scope`.
    pub fn for_session(&self, scope: impl Into<String>) -> Self {
        OrderServer {
            session_scope: scope.into(),
            ..self.clone()
        }
    }

    /// Counts order placements in progress, so shutdown can wait for them.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.clone()
    }

    /// The tools as listed to clients.
    pub fn tools(&self) -> Vec<rmcp::model::Tool> {
        self.tool_router.list_all()
    }
}

#[tool_handler(router = self.tool_router)]
#[prompt_handler(router = self.prompt_router)]
impl ServerHandler for OrderServer {
    /// Routes the call to its tool, noting in the result any time it spent waiting for the
    /// rate limit or for retries.
    async fn call_tool(
        &self,
        request: rmcp::model::CallToolRequestParams,
        context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let call = rmcp::handler::server::tool::ToolCallContext::new(self, request, context);
        let (response, waits) = crate::api::pacing::observe(self.tool_router.call(call)).await;
        Ok(waits::annotate(response?, &waits))
    }

    fn get_info(&self) -> ServerConfig {
        let mut instructions = String::from(
            "Reads and places orders for 1NCE IoT SIM cards. list_orders, get_order and find_orders only read. \
             create_order places a real, paid order that ships hardware, in two steps: call it without \
             confirmation_token to get a preview and a token (nothing is ordered), show the preview to \
             the user, and only after the user explicitly approves it call create_order again with the \
             same arguments plus that confirmation_token. Never confirm without that approval.",
        );
        if self.sandbox {
            instructions.push_str(
                " This server runs against the built-in 1NCE sandbox: orders are simulated and nothing is charged or shipped.",
            );
        }
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_prompts()
                .build(),
        )
        .with_server_info(
            Implementation::new(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
                .with_title("1NCE orders"),
        )
        .with_instructions(instructions)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(Vec::new()))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(
            resources::templates(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.read(&request.uri).await.map(Into::into)
    }
}

/// A successful tool result: `data` becomes `structuredContent`, `summary` the text content.
pub struct Answer<T> {
    pub data: T,
    pub summary: String,
}

impl<T: Serialize> IntoCallToolResult for Answer<T> {
    fn into_call_tool_result(self) -> Result<CallToolResponse, ErrorData> {
        let value = serde_json::to_value(&self.data).map_err(|e| {
            ErrorData::internal_error(format!("could not serialise the result: {e}"), None)
        })?;
        let mut result = CallToolResult::structured(value);
        result.content = vec![ContentBlock::text(self.summary)];
        Ok(result.into())
    }
}

/// A tool error (`isError: true`) with a message for the agent.
pub type ToolResult<T> = Result<Answer<T>, String>;

/// Turns a 1NCE error into what the agent should read: what happened and what to do.
pub fn tool_error(error: &ApiError) -> String {
    match error {
        ApiError::Authentication { .. } => format!(
            "{error}. Check ONCE_CLIENT_ID and ONCE_CLIENT_SECRET: they must belong to a 1NCE API user (1NCE portal → Organisation → API access). The user must fix this; retrying will not help."
        ),
        ApiError::Unauthorized | ApiError::Forbidden => {
            format!("{error}. The user must fix this in the 1NCE portal; retrying will not help.")
        }
        _ => error.to_string(),
    }
}

/// Counts operations that must finish before the process exits.
#[derive(Clone, Default)]
pub struct InFlight {
    inner: Arc<InFlightInner>,
}

#[derive(Default)]
struct InFlightInner {
    count: AtomicUsize,
    idle: Notify,
}

impl InFlight {
    /// Marks one operation as running until the guard is dropped.
    pub fn enter(&self) -> InFlightGuard {
        self.inner.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard {
            inner: Arc::clone(&self.inner),
        }
    }

    /// How many operations are running.
    pub fn count(&self) -> usize {
        self.inner.count.load(Ordering::SeqCst)
    }

    /// Waits until no operation is running.
    pub async fn idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Held while an operation runs; see [`InFlight::enter`].
pub struct InFlightGuard {
    inner: Arc<InFlightInner>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.inner.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.inner.idle.notify_waiters();
        }
    }
}
