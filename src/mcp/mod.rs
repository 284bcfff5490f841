//! The MCP face of the server: tools, their schemas, resources, prompts, and what agents read.
//!
//! [`OrderServer`] is one `rmcp` server handler. Each tool lives in its own file with its own
//! router, and [`OrderServer::new`] adds them together: `list_orders`, `get_order`,
//! `find_orders`, `list_products`, `create_order`, and `card_answer.rs`, the order card's own
//! tool (listed only to clients that render the card). Around them:
//! - `approval`: asking the person in the client's own form (elicitation, or an input-required
//!   result on stateless sessions);
//! - `order_card`: the order card (MCP Apps): the view, when a client is shown it, and what
//!   its click must carry;
//! - `order_view`: orders as compact lines, and quoting that no value can escape;
//! - `resources`, `prompts`: orders and the catalogue as resources, the `reorder` prompt;
//! - `schema`: the JSON Schemas agents read, from the Rust types;
//! - `tool_set`: which tools are offered (`--tools`, `--read-only`, derived from each tool's
//!   `readOnlyHint`);
//! - `tool_error`: a tool's error as one type, worded once;
//! - `waits`: a call's waits for the rate limit or retries, said in its result;
//! - `pre_init`: messages before `initialize`.
//!
//! Tools call the 1NCE [`Client`] and the order [`Desk`], and know nothing of HTTP. Every result
//! carries `structuredContent` matching the tool's output schema and a short text summary
//! ([`ToolOutput`]).

mod approval;
mod card_answer;
mod create_order;
mod find_orders;
mod get_order;
mod list_orders;
mod list_products;
pub mod order_card;
mod order_view;
mod pre_init;
mod prompts;
pub mod resources;
pub mod schema;
mod tool_error;
mod tool_set;
mod waits;

use std::sync::Arc;
use std::time::Duration;

use rmcp::handler::server::router::prompt::PromptRouter;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{
    CallToolResponse, CallToolResult, ContentBlock, Implementation, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams,
    ReadResourceResponse, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, prompt_handler, tool_handler};
use serde::Serialize;

use crate::api::Client;
use crate::api::products::{CATALOGUE_TTL, Catalogue};
use crate::oauth::{Caller, Scopes};
use crate::orders::{Account, Confirmations, Desk, Environment, OrderLimits};
pub use create_order::{CreateOrderArgs, CreateOrderOutput, CreateStatus, OrderPreview};
pub use find_orders::{FindOrdersArgs, FindOrdersOutput};
pub use get_order::GetOrderArgs;
pub use list_orders::{ListOrdersArgs, ListOrdersOutput};
pub use list_products::ListProductsOutput;
pub use pre_init::IgnoreBeforeInitialize;
pub use tool_set::{ToolSet, needed};

/// Settings of the MCP layer.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Whether the 1NCE behind the client is the built-in sandbox (said in the instructions).
    pub sandbox: bool,
    /// The tools offered (`--tools`, `--read-only`); without create_order nothing can be ordered.
    pub tools: ToolSet,
    /// Refuse to order unless the client can ask its user (elicitation).
    pub require_human_approval: bool,
    /// The operator's limits on every order.
    pub limits: OrderLimits,
    /// How long to wait for the user to answer an approval form (default 10 minutes; the
    /// binary uses the confirmation TTL).
    pub approval_timeout: Option<Duration>,
    /// Show the order card to clients that render MCP Apps (`--no-order-card` turns it off).
    pub order_card: bool,
    /// Keep the orders read in the order mirror, and answer from it (`None`: `--mirror off`).
    pub mirror: Option<crate::mirror::MirrorSettings>,
}

/// How long the user has to answer an approval form unless told otherwise.
const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(600);

/// The confirmation scope of a process owned by one user (stdio).
pub const LOCAL_SCOPE: &str = "local";

/// The MCP server: one per session, all sharing one [`Client`] and one order [`Desk`].
#[derive(Clone)]
pub struct OrderServer {
    client: Client,
    /// The order path, with every rule of the order promise.
    desk: Arc<Desk>,
    in_flight: InFlight,
    /// Confirmation tokens are bound to this scope: one per MCP session where sessions are
    /// separate (HTTP), one shared value where a single user owns the process (stdio).
    session_scope: String,
    sandbox: bool,
    limits: Arc<OrderLimits>,
    /// create_order is offered.
    can_order: bool,
    require_human_approval: bool,
    /// How long to wait for the user to answer an approval form.
    approval_timeout: Duration,
    /// Seals the state of approval questions asked through input-required results.
    state_seal: Arc<approval::StateSeal>,
    /// Clients that render MCP Apps approve orders in the order card (create_order is offered
    /// and the operator did not turn the card off).
    order_card: bool,
    tool_router: ToolRouter<Self>,
    /// The order card's own tool, routed only for clients shown the card.
    card_router: ToolRouter<Self>,
    /// The order mirror, unless `--mirror off`.
    mirror: Option<crate::mirror::Mirror>,
    prompt_router: PromptRouter<Self>,
}

impl OrderServer {
    pub fn new(client: Client, confirmations: Arc<Confirmations>, options: ServerOptions) -> Self {
        let tool_router = options.tools.router();
        let can_order = tool_router.has_route("create_order");
        let approval_timeout = options.approval_timeout.unwrap_or(DEFAULT_APPROVAL_TIMEOUT);
        let limits = Arc::new(options.limits);
        let seal_key = confirmations.derived_key("request-state");
        let mirror = options.mirror.map(|settings| {
            crate::mirror::Mirror::new(confirmations.store().clone(), client.clone(), settings)
        });
        let (environment, account) = if options.sandbox {
            (Environment::Sandbox, Account::sandbox(client.client_id()))
        } else {
            (
                Environment::Live,
                Account::live(client.base_url().as_str(), client.client_id()),
            )
        };
        let desk = Desk {
            client: client.clone(),
            confirmations,
            environment,
            account,
            catalogue: Catalogue::new(client.clone(), CATALOGUE_TTL),
            limits: Arc::clone(&limits),
            require_form: options.require_human_approval,
        };
        OrderServer {
            client,
            desk: Arc::new(desk),
            in_flight: InFlight::default(),
            session_scope: LOCAL_SCOPE.to_owned(),
            sandbox: options.sandbox,
            limits,
            can_order,
            require_human_approval: options.require_human_approval,
            approval_timeout,
            state_seal: Arc::new(approval::StateSeal::new(seal_key, approval_timeout)),
            order_card: can_order && options.order_card,
            mirror,
            tool_router,
            card_router: if can_order && options.order_card {
                Self::order_card_router()
            } else {
                ToolRouter::new()
            },
            // The one prompt walks the agent through a reorder: nothing a server that cannot
            // order offers.
            prompt_router: if can_order {
                Self::prompt_router()
            } else {
                PromptRouter::new()
            },
        }
    }

    /// Every tool this server has; [`ToolSet`] picks those one server offers.
    fn router() -> ToolRouter<Self> {
        Self::list_orders_router()
            + Self::get_order_router()
            + Self::find_orders_router()
            + Self::list_products_router()
            + Self::create_order_router()
    }

    /// Every tool as `tools/list` shows it, sorted by name, without a running server.
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

    /// The order mirror, unless it is off.
    pub fn mirror(&self) -> Option<&crate::mirror::Mirror> {
        self.mirror.as_ref()
    }

    /// The operator's spend limits as they stand now, for nobody in particular (per-person
    /// limits: the figures of callers the transport knows nobody of).
    pub async fn spend_standing(&self) -> Result<Vec<crate::orders::spend::Standing>, String> {
        self.desk.spend_standing(None).await
    }

    /// The 1NCE client all sessions share.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// This machine's clock against the state store's (`1nce-mcp check`).
    pub async fn clock_check(&self) -> Result<crate::orders::tokens::ClockAgreement, String> {
        self.desk.confirmations.clock_check().await
    }

    /// Counts order placements in progress, so shutdown can wait for them.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.clone()
    }

    /// The tools as listed to clients.
    pub fn tools(&self) -> Vec<rmcp::model::Tool> {
        self.tool_router.list_all()
    }

    /// Every tool some client may call: those listed to every client, and the order card's.
    pub fn callable_tools(&self) -> Vec<rmcp::model::Tool> {
        let mut tools = self.tool_router.list_all();
        tools.extend(self.card_router.list_all());
        tools
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
        let scopes = caller(&context).map_or(Scopes::ALL, |c| c.scopes);
        // The card's tool exists only for clients shown the card; for any other it is as
        // unknown as any name that is no tool.
        let router = if self.card_router.has_route(&request.name) && self.shows_card(&context) {
            &self.card_router
        } else {
            &self.tool_router
        };
        if let Some(tool) = router.get(&request.name)
            && !scopes.allow(needed(tool))
        {
            // The HTTP transport answers such a call 403 before it gets here; this is the
            // second lock on the same door.
            return Err(ErrorData::invalid_request(
                format!(
                    "{} needs the {} scope, which this access token does not carry",
                    request.name,
                    needed(tool).scope().unwrap_or_default()
                ),
                None,
            ));
        }
        // A client that cancels a read (or goes away) stops its 1NCE requests too; a call that
        // may order runs to its end, whatever the client does (see `create_order`).
        let reads_only = router
            .get(&request.name)
            .is_some_and(|tool| needed(tool) == crate::oauth::Needed::Read);
        let cancelled = context.ct.clone();
        let call = rmcp::handler::server::tool::ToolCallContext::new(self, request, context);
        let routed = crate::api::pacing::observe(router.call(call));
        let (response, waits) = if reads_only {
            tokio::select! {
                done = routed => done,
                () = cancelled.cancelled() => {
                    return ToolError::Cancelled.into_call_tool_result();
                }
            }
        } else {
            routed.await
        };
        Ok(waits::annotate(response?, &waits))
    }

    fn get_info(&self) -> ServerConfig {
        let mut reading: Vec<String> = self
            .tool_router
            .list_all()
            .into_iter()
            .filter(|t| t.name != "create_order")
            .map(|t| t.name.into_owned())
            .collect();
        reading.sort();
        let reading = match reading.as_slice() {
            [] => String::new(),
            [one] => format!(" {one} only reads."),
            [first @ .., last] => format!(" {} and {last} only read.", first.join(", ")),
        };
        let mut instructions = if self.can_order {
            format!(
                "Reads and places orders for 1NCE IoT SIM cards.{reading} \
             create_order places a real, paid order that ships hardware, in two steps: call it without \
             confirmation_token to get a preview and a token (nothing is ordered), show the preview to \
             the user, and only after the user explicitly approves it call create_order again with the \
             same arguments plus that confirmation_token. Never confirm without that approval.",
            )
        } else {
            format!(
                "This server is READ-ONLY: it reads 1NCE orders and the product catalogue and cannot \
                 place orders (create_order is not available).{reading}",
            )
        };
        if self.can_order {
            if self.require_human_approval {
                instructions.push_str(
                    " Every order must also be approved by the user in this client's own approval form (elicitation); clients that cannot show one cannot order.",
                );
            } else {
                instructions.push_str(
                    " When this client can show the user a form (elicitation), the confirming call also asks the user to approve the order there.",
                );
            }
            if self.order_card {
                instructions.push_str(
                    " Where the client shows MCP Apps, the preview comes with an order card in which the user approves or declines the order themselves; the preview's next_step then says so, and the token alone cannot place it.",
                );
            }
            if let Some(limits) = self.limits.describe() {
                instructions.push_str(&format!(" The operator allows {limits}."));
            }
        }
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

    /// The tools offered, less those the caller's access token has no scope for.
    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let scopes = caller(&context).map_or(Scopes::ALL, |c| c.scopes);
        let mut tools = self.tool_router.list_all();
        if self.shows_card(&context) {
            tools.extend(self.card_router.list_all());
            tools = tools.into_iter().map(order_card::with_card).collect();
        }
        if scopes != Scopes::ALL {
            tools.retain(|t| scopes.allow(needed(t)));
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let mut listed = resources::resources();
        if self.shows_card(&context) {
            listed.push(order_card::resource());
        }
        Ok(ListResourcesResult::with_all_items(listed))
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
        // Hosts may read views ahead of any tool call; the card holds nothing private.
        if self.order_card && request.uri == order_card::CARD_URI {
            return Ok(order_card::contents().into());
        }
        self.read(&request.uri).await.map(Into::into)
    }
}

/// The OAuth caller of a request, when the HTTP transport verified one: the legacy SSE
/// transport puts it in the request's extensions, Streamable HTTP in the HTTP request's parts
/// that rmcp hands over.
pub fn caller(context: &RequestContext<RoleServer>) -> Option<&Caller> {
    context.extensions.get::<Caller>().or_else(|| {
        context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Caller>())
    })
}

/// A successful tool result: `data` becomes `structuredContent`, `summary` the text content.
pub struct ToolOutput<T> {
    pub data: T,
    pub summary: String,
}

impl<T: Serialize> IntoCallToolResult for ToolOutput<T> {
    fn into_call_tool_result(self) -> Result<CallToolResponse, ErrorData> {
        let value = serde_json::to_value(&self.data).map_err(|e| {
            ErrorData::internal_error(format!("could not serialise the result: {e}"), None)
        })?;
        // Not `CallToolResult::structured`: it also prints the whole value as text, which the
        // summary replaces, so that would be a serialisation thrown away on every call.
        let mut result = CallToolResult::success(vec![ContentBlock::text(self.summary)]);
        result.structured_content = Some(value);
        Ok(result.into())
    }
}

/// A tool's answer: its output, or a [`ToolError`] (`isError: true`).
pub type ToolResult<T> = Result<ToolOutput<T>, ToolError>;

pub use tool_error::ToolError;

/// The operations that must finish before the process exits: order placements, and (over
/// HTTP) calls whose answers are still on their way. Each is a spawned task or a token held
/// until it ends; shutdown closes the tracker and waits for it to empty.
pub type InFlight = tokio_util::task::TaskTracker;

/// Held while an operation runs; see [`InFlight`].
pub type InFlightGuard = tokio_util::task::task_tracker::TaskTrackerToken;
