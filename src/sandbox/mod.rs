//! A simulated 1NCE Management API (OAuth token, orders, products) served over real
//! HTTP on a local port.
//!
//! It owns everything a client can observe of 1NCE without spending money: token
//! issue and expiry, the documented validation errors, pagination headers, order
//! creation and a reproducible seeded account. The test hooks (request recording, fault
//! injection, forced token expiry, changed prices and answer styles) are compiled only for the
//! tests and benchmarks (cargo feature `test-support`), never into the shipped binary, whose
//! `--sandbox` therefore keeps no record of its traffic. It knows nothing of MCP or of this crate's
//! client: it only speaks the HTTP contract of 1NCE's published OpenAPI documents (plus
//! the behaviour 1NCE documents elsewhere), so the `--sandbox` mode, end-to-end tests and
//! benchmarks can all point a real client at it.

mod book;
mod create;
#[cfg(any(test, feature = "test-support"))]
mod faults;
mod model;
#[cfg(any(test, feature = "test-support"))]
mod recording;
mod routes;
mod seed;
mod state;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[cfg(any(test, feature = "test-support"))]
pub use faults::FaultAction;
#[cfg(any(test, feature = "test-support"))]
pub use recording::{Fault, RecordedRequest};
pub use routes::MAX_BODY_BYTES;
use state::Shared;

/// The client id the sandbox accepts unless [`SandboxOptions::client_id`] says otherwise.
pub const SANDBOX_CLIENT_ID: &str = "sandbox-client-id";
/// The client secret the sandbox accepts unless [`SandboxOptions::client_secret`] says otherwise.
pub const SANDBOX_CLIENT_SECRET: &str = "sandbox-client-secret";

/// How long [`Sandbox::shutdown`] waits for open connections before cutting them off.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How `POST /v1/orders` answers, since the document allows two styles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CreateResponse {
    /// `201 Created`, empty body, `Location: {base_url}/v1/orders/{order_number}`.
    #[default]
    Created201,
    /// `200 OK` with the created order as JSON and no `Location`.
    Ok200WithOrder,
}

/// Start-up settings of a [`Sandbox`].
#[derive(Clone)]
pub struct SandboxOptions {
    /// Where to listen; port 0 picks a free one.
    pub addr: SocketAddr,
    pub client_id: String,
    pub client_secret: String,
    /// Lifetime of newly issued tokens, reported as `expires_in` in whole seconds (at least 1).
    pub token_lifetime: Duration,
    pub create_response: CreateResponse,
    /// How many default delivery addresses the account has. 1NCE only lets an order
    /// omit `delivery_address` when there is exactly one.
    pub default_delivery_addresses: usize,
    /// An account of this many generated orders instead of the 25 seeded ones.
    pub orders: Option<usize>,
    /// A SQLite file to keep the orders placed in this sandbox in, shared by every sandbox
    /// started with it (each account, seeded or of N generated orders, has its own), so that
    /// they see each other's orders and number new ones one after another. `None` keeps them
    /// in memory, for this sandbox alone. The caller makes the file private.
    pub orders_file: Option<std::path::PathBuf>,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            client_id: SANDBOX_CLIENT_ID.to_owned(),
            client_secret: SANDBOX_CLIENT_SECRET.to_owned(),
            token_lifetime: Duration::from_secs(3600),
            create_response: CreateResponse::Created201,
            default_delivery_addresses: 1,
            orders: None,
            orders_file: None,
        }
    }
}

/// Hand-written so the secret never reaches a log through `{:?}`.
impl fmt::Debug for SandboxOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxOptions")
            .field("addr", &self.addr)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("token_lifetime", &self.token_lifetime)
            .field("create_response", &self.create_response)
            .field(
                "default_delivery_addresses",
                &self.default_delivery_addresses,
            )
            .field("orders", &self.orders)
            .field("orders_file", &self.orders_file)
            .finish()
    }
}

/// A running sandbox server. Dropping it stops the server: the listening socket is
/// released at once and open connections finish their current request.
pub struct Sandbox {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl Sandbox {
    /// Starts a sandbox with [`SandboxOptions::default`].
    pub async fn start() -> std::io::Result<Sandbox> {
        Sandbox::start_with(SandboxOptions::default()).await
    }

    /// Binds `options.addr`, seeds the account and serves until dropped or shut down.
    pub async fn start_with(options: SandboxOptions) -> std::io::Result<Sandbox> {
        let listener = TcpListener::bind(options.addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(
            Shared::new(format!("http://{addr}"), &options).map_err(std::io::Error::other)?,
        );
        let (stop, stopped) = oneshot::channel::<()>();
        // Either an explicit stop or the handle being dropped ends the wait.
        let signal = async {
            let _ = stopped.await;
        };
        // With fault injection, connections that a fault can cut off.
        #[cfg(any(test, feature = "test-support"))]
        let serving = axum::serve(
            faults::FaultListener(listener),
            routes::router(shared.clone())
                .into_make_service_with_connect_info::<faults::Connection>(),
        )
        .with_graceful_shutdown(signal)
        .into_future();
        #[cfg(not(any(test, feature = "test-support")))]
        let serving = axum::serve(listener, routes::router(shared.clone()))
            .with_graceful_shutdown(signal)
            .into_future();
        let server = tokio::spawn(async move {
            if let Err(error) = serving.await {
                tracing::warn!(%error, "sandbox server stopped with an error");
            }
        });
        tracing::debug!(%addr, "sandbox listening");
        Ok(Sandbox {
            shared,
            addr,
            stop: Some(stop),
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash; every route is relative to it.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections and waits (up to a few seconds) for open ones to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut server) = self.server.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut server)
                .await
                .is_err()
        {
            server.abort();
        }
    }
}

/// The test hooks: what the tests see of the traffic, and what they change of 1NCE's behaviour.
#[cfg(any(test, feature = "test-support"))]
impl Sandbox {
    /// Every request received so far, oldest first, including rejected and faulted ones.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// How many recorded requests have `method` (case-insensitive) and a path starting
    /// with `path_prefix`.
    pub fn count(&self, method: &str, path_prefix: &str) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path.starts_with(path_prefix))
            .count()
    }

    /// The current orders, by order number, serialised as the API returns them (empty when
    /// the file of placed orders cannot be read).
    pub fn orders(&self) -> Vec<serde_json::Value> {
        let state = self.shared.lock();
        let placed = state.placed().unwrap_or_default();
        let mut all: Vec<&model::Order> = state.orders.values().chain(&placed).collect();
        all.sort_by_key(|o| o.order_number);
        all.into_iter()
            .filter_map(|order| serde_json::to_value(order).ok())
            .collect()
    }

    /// Moves order `number` to `status` (COMPLETED, CANCELLED, SHIPPED or IN_PROGRESS), as 1NCE
    /// does while an order is processed. `false` when there is no such order or status.
    pub fn set_order_status(&self, number: u64, status: &str) -> bool {
        let Some(status) = model::OrderStatus::parse(status) else {
            return false;
        };
        self.shared.lock().set_status(number, status)
    }

    /// Invalidates every token issued so far; the next request using one gets 401.
    pub fn expire_tokens(&self) {
        self.shared.lock().expire_tokens();
    }

    /// Changes the lifetime of tokens issued from now on; existing tokens keep theirs.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.shared.lock().token_lifetime = lifetime;
    }

    pub fn set_create_response(&self, style: CreateResponse) {
        self.shared.lock().create_response = style;
    }

    /// Whether the order list reports its totals (`X-Total-Pages`, `X-Total-Count`); on by
    /// default. Without them a client can only walk forward until a short page.
    pub fn set_list_totals(&self, on: bool) {
        self.shared.lock().list_totals = on;
    }

    /// Sets the first one-time charge of product `id` to `cents` net: 1NCE changed a price.
    pub fn set_one_time_charge(&self, id: u64, cents: u64) {
        let mut products = self
            .shared
            .products
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(charge) = products
            .iter_mut()
            .find(|p| p.id == id)
            .and_then(|p| p.one_time_charges.first_mut())
        {
            charge.amount_net = cents;
        }
    }

    /// Queues `fault` behind earlier ones; a fault with `times == 0` is ignored.
    pub fn inject(&self, fault: Fault) {
        if fault.times > 0 {
            self.shared.lock().faults.push_back(fault);
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}
