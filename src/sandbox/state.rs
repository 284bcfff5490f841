//! The sandbox's mutable world: issued tokens, orders and, for the tests, recorded traffic and
//! queued faults.
//! It lives behind one `std::sync::Mutex`; handlers lock it briefly and never across `.await`.
//! Orders placed in the sandbox are kept here too, or, when they are shared with other
//! processes, in a file ([`super::book`]) read and written under the same lock.

#[cfg(any(test, feature = "test-support"))]
use std::collections::VecDeque;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{SubsecRound, Utc};
use rand::Rng as _;

use super::CreateResponse;
use super::book::{OrderFile, Unnumbered};
use super::model::{DeliveryAddress, Order, OrderStatus, OrderType, OrderedProduct, Product};
#[cfg(any(test, feature = "test-support"))]
use super::recording::{Fault, RecordedRequest};
use super::seed;

/// Random bytes per token; base64url turns 2250 bytes into 3000 characters, the size
/// 1NCE's tokens have, so clients are exercised with realistically long headers.
const TOKEN_BYTES: usize = 2250;

/// What the handlers share: fixed configuration plus the locked mutable state.
pub(crate) struct Shared {
    pub base_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub default_delivery_addresses: usize,
    /// The catalogue; tests may change its prices ([`super::Sandbox::set_one_time_charge`]).
    pub products: std::sync::RwLock<Vec<Product>>,
    pub default_address: DeliveryAddress,
    state: Mutex<State>,
}

impl Shared {
    /// The sandbox's world; `Err` when its file of placed orders cannot be opened.
    pub(crate) fn new(base_url: String, options: &super::SandboxOptions) -> Result<Shared, String> {
        let products = seed::products();
        let seeded = match options.orders {
            Some(n) => seed::many_orders(n, &base_url, &products),
            None => seed::orders(&base_url, &products),
        };
        let orders: BTreeMap<u64, Order> =
            seeded.into_iter().map(|o| (o.order_number, o)).collect();
        let seeded = orders.len() as u64;
        let account = match options.orders {
            Some(n) => format!("generated-{n}"),
            None => "seeded".to_owned(),
        };
        let file = options
            .orders_file
            .as_deref()
            .map(|path| OrderFile::open(path, &account))
            .transpose()?;
        Ok(Shared {
            base_url,
            client_id: options.client_id.clone(),
            client_secret: options.client_secret.clone(),
            default_delivery_addresses: options.default_delivery_addresses,
            products: std::sync::RwLock::new(products),
            default_address: seed::default_address(),
            state: Mutex::new(State {
                #[cfg(any(test, feature = "test-support"))]
                requests: Vec::new(),
                #[cfg(any(test, feature = "test-support"))]
                faults: VecDeque::new(),
                tokens: HashMap::new(),
                token_lifetime: options.token_lifetime,
                create_response: options.create_response,
                list_totals: true,
                orders,
                file,
                next_order_number: seed::FIRST_ORDER_NUMBER + seeded,
                next_invoice_number: seed::FIRST_INVOICE_NUMBER + seeded,
            }),
        })
    }

    /// Locks the state. A panic elsewhere while holding the lock leaves data that is still
    /// consistent enough for a simulator, so poisoning is ignored rather than propagated.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The catalogue as it is now.
    pub(crate) fn products(&self) -> Vec<Product> {
        self.products
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The validated content of a `POST /v1/orders`, ready to become an order.
pub(crate) struct NewOrder {
    pub products: Vec<OrderedProduct>,
    pub delivery_address: Option<DeliveryAddress>,
    pub customer_reference: Option<String>,
    pub invoice_amount: String,
}

pub(crate) struct State {
    #[cfg(any(test, feature = "test-support"))]
    pub requests: Vec<RecordedRequest>,
    #[cfg(any(test, feature = "test-support"))]
    pub faults: VecDeque<Fault>,
    /// Token → expiry; `None` when the lifetime is too long to represent.
    tokens: HashMap<String, Option<Instant>>,
    pub token_lifetime: Duration,
    pub create_response: CreateResponse,
    /// Whether `GET /v1/orders` sends `X-Total-Pages` and `X-Total-Count`.
    pub list_totals: bool,
    /// The seeded orders, and (without a file) the orders placed in this sandbox.
    pub orders: BTreeMap<u64, Order>,
    /// Where placed orders are kept when they are shared with other processes.
    file: Option<OrderFile>,
    /// The next numbers, without a file (with one, the file says).
    next_order_number: u64,
    next_invoice_number: u64,
}

impl State {
    /// Mints a fresh token valid for the current lifetime. Earlier tokens stay valid until
    /// they expire, as at 1NCE; expired ones are forgotten here to bound memory.
    pub(crate) fn issue_token(&mut self, now: Instant) -> (String, Duration) {
        self.tokens
            .retain(|_, expiry| expiry.is_none_or(|at| at > now));
        let mut bytes = vec![0u8; TOKEN_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        let token = URL_SAFE_NO_PAD.encode(&bytes);
        let lifetime = self.token_lifetime;
        self.tokens.insert(token.clone(), now.checked_add(lifetime));
        (token, lifetime)
    }

    pub(crate) fn token_is_valid(&self, token: &str, now: Instant) -> bool {
        self.tokens
            .get(token)
            .is_some_and(|expiry| expiry.is_none_or(|at| at > now))
    }

    #[cfg(any(test, feature = "test-support"))]
    pub(crate) fn expire_tokens(&mut self) {
        self.tokens.clear();
    }

    /// Removes one use from the first queued fault matching the request and returns it.
    #[cfg(any(test, feature = "test-support"))]
    pub(crate) fn take_fault(&mut self, method: &str, path: &str) -> Option<Fault> {
        let index = self
            .faults
            .iter()
            .position(|f| f.times > 0 && f.matches(method, path))?;
        let fault = self.faults.get_mut(index)?;
        fault.times -= 1;
        let answer = fault.clone();
        if fault.times == 0 {
            self.faults.remove(index);
        }
        Some(answer)
    }

    /// Turns a validated POST into a stored order: the next number and invoice, placed now,
    /// in progress and without SIMs until it ships. `Err` when the file of placed orders
    /// cannot be written (nothing was placed then).
    pub(crate) fn create_order(
        &mut self,
        new: NewOrder,
        default_address: &DeliveryAddress,
    ) -> Result<Order, String> {
        let new = Unnumbered {
            placed_at: Utc::now().trunc_subsecs(0),
            invoice_amount: new.invoice_amount,
            products: new.products,
            address: new
                .delivery_address
                .unwrap_or_else(|| default_address.clone()),
            reference: new.customer_reference,
        };
        if let Some(file) = &mut self.file {
            return file.place(new, self.next_order_number, self.next_invoice_number);
        }
        let order = Order {
            order_number: self.next_order_number,
            order_type: OrderType::AdditionalOrder,
            order_date: new.placed_at,
            order_status: OrderStatus::InProgress,
            invoice_number: self.next_invoice_number.to_string(),
            invoice_amount: new.invoice_amount,
            currency: "EUR",
            shipping_address: new.address,
            sims: Vec::new(),
            products: new.products,
            customer_reference: new.reference,
        };
        self.next_order_number += 1;
        self.next_invoice_number += 1;
        self.orders.insert(order.order_number, order.clone());
        Ok(order)
    }

    /// The orders placed in the file shared with other processes (none without one): the
    /// orders of the account are these and [`State::orders`].
    pub(crate) fn placed(&self) -> Result<Vec<Order>, String> {
        match &self.file {
            Some(file) => file.all(),
            None => Ok(Vec::new()),
        }
    }

    /// Order `number`, wherever it is kept.
    pub(crate) fn order(&self, number: u64) -> Result<Option<Order>, String> {
        match (self.orders.get(&number), &self.file) {
            (Some(order), _) => Ok(Some(order.clone())),
            (None, Some(file)) => file.get(number),
            (None, None) => Ok(None),
        }
    }

    /// Moves order `number` to `status`; `false` when there is no such order.
    #[cfg(any(test, feature = "test-support"))]
    pub(crate) fn set_status(&mut self, number: u64, status: OrderStatus) -> bool {
        if let Some(order) = self.orders.get_mut(&number) {
            order.order_status = status;
            return true;
        }
        match &self.file {
            Some(file) => file.set_status(number, status).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "sandbox: could not change an order's status");
                false
            }),
            None => false,
        }
    }
}
