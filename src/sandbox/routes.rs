//! The HTTP surface: the router, the front door every request passes (size limit, logging,
//! and for the tests recording and faults), bearer authentication and the endpoint handlers.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
#[cfg(any(test, feature = "test-support"))]
use axum::extract::ConnectInfo;
use axum::extract::{FromRequestParts, Path, RawQuery, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
#[cfg(any(test, feature = "test-support"))]
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use super::CreateResponse;
use super::create::validate_order;
#[cfg(any(test, feature = "test-support"))]
use super::faults::{self, Connection, FaultAction};
use super::model::Order;
#[cfg(any(test, feature = "test-support"))]
use super::recording::{Fault, RecordedRequest};
use super::state::Shared;

/// Largest accepted request body; anything bigger is answered 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// `pageSize` limit documented for `GET /v1/orders`.
const MAX_PAGE_SIZE: usize = 10;

type AppState = Arc<Shared>;

pub(crate) fn router(shared: AppState) -> Router {
    Router::new()
        .route("/oauth/token", post(issue_token))
        .route("/v1/orders", get(list_orders).post(create_order))
        .route("/v1/orders/{order_number}", get(get_order))
        .route("/v1/products", get(list_products))
        // Declared explicitly so unknown paths also pass the front door below.
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(middleware::from_fn_with_state(shared.clone(), front_door))
        .with_state(shared)
}

/// Buffers the body (413 past the limit) and hands over to routing; for the tests, records the
/// request first and answers from a queued fault if one matches. Logs method, path and status
/// only: headers and bodies may hold credentials.
#[cfg_attr(not(any(test, feature = "test-support")), allow(unused_labels))]
async fn front_door(State(shared): State<AppState>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    // `to_bytes` also fails when the client breaks off mid-body; that client never reads
    // the answer, so treating every failure as "too large" is harmless.
    let buffered = axum::body::to_bytes(body, MAX_BODY_BYTES).await;
    #[cfg(any(test, feature = "test-support"))]
    let fault = record(&shared, &parts, &buffered);
    #[cfg(not(any(test, feature = "test-support")))]
    let _ = shared;
    let (response, source) = match buffered {
        Err(_) => (StatusCode::PAYLOAD_TOO_LARGE.into_response(), "limit"),
        Ok(bytes) => 'answer: {
            let request = Request::from_parts(parts, Body::from(bytes));
            #[cfg(any(test, feature = "test-support"))]
            if let Some(fault) = fault {
                break 'answer misbehave(fault, &shared, request, next).await;
            }
            (next.run(request).await, "route")
        }
    };
    tracing::debug!(%method, %path, status = response.status().as_u16(), source, "sandbox request");
    response
}

/// Records the request for the tests, and takes the first queued fault that matches it (none
/// for a body past the limit).
#[cfg(any(test, feature = "test-support"))]
fn record(shared: &Shared, parts: &Parts, buffered: &Result<Bytes, axum::Error>) -> Option<Fault> {
    let recorded = RecordedRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect(),
        body: buffered
            .as_ref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default(),
    };
    let mut state = shared.lock();
    state.requests.push(recorded);
    if buffered.is_err() {
        return None;
    }
    state.take_fault(parts.method.as_str(), parts.uri.path())
}

/// Answers `request` as an injected `fault` says, with the source for the log.
#[cfg(any(test, feature = "test-support"))]
async fn misbehave(
    fault: Fault,
    shared: &Shared,
    request: Request,
    next: Next,
) -> (Response, &'static str) {
    let connection = request
        .extensions()
        .get::<ConnectInfo<Connection>>()
        .cloned();
    // A slow 1NCE finishes what it was sent even when the client stopped waiting (a POST it
    // gave up on still creates its order), as a real server would.
    if fault.action == FaultAction::PassThrough {
        let delay = fault.delay;
        let handling = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            next.run(request).await
        });
        let response = handling
            .await
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
        return (response, "delayed");
    }
    if !fault.delay.is_zero() {
        tokio::time::sleep(fault.delay).await;
    }
    match fault.action {
        FaultAction::ExpireTokens => {
            shared.lock().expire_tokens();
            (next.run(request).await, "tokens expired")
        }
        _ if fault.after_handling => {
            let handled = next.run(request).await;
            tracing::debug!(
                status = handled.status().as_u16(),
                "sandbox answer replaced by a fault"
            );
            (
                fault_response(&fault, connection.as_ref()),
                "fault after handling",
            )
        }
        _ => (fault_response(&fault, connection.as_ref()), "fault"),
    }
}

/// Builds the canned answer of an injected fault. Headers that are not valid HTTP are
/// skipped with a warning rather than failing the request.
#[cfg(any(test, feature = "test-support"))]
fn fault_response(fault: &Fault, connection: Option<&ConnectInfo<Connection>>) -> Response {
    let status = StatusCode::from_u16(fault.status).unwrap_or_else(|_| {
        tracing::warn!(
            status = fault.status,
            "injected fault has an invalid status; answering 500"
        );
        StatusCode::INTERNAL_SERVER_ERROR
    });
    let mut response = match fault.action {
        FaultAction::DropConnection => {
            match connection {
                Some(ConnectInfo(connection)) => connection.kill(),
                None => tracing::warn!("no connection to drop; answering 500 instead"),
            }
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        FaultAction::Truncate => return faults::truncated(status, &fault.body),
        FaultAction::Stream { bytes } => return faults::streamed(bytes),
        FaultAction::Respond | FaultAction::PassThrough | FaultAction::ExpireTokens => {
            (status, fault.body.clone()).into_response()
        }
    };
    response.headers_mut().remove(CONTENT_TYPE);
    for (name, value) in &fault.headers {
        match (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            (Ok(name), Ok(value)) => {
                response.headers_mut().append(name, value);
            }
            _ => tracing::warn!(header = %name, "injected fault has an invalid header; skipped"),
        }
    }
    response
}

/// Proof that the request carried a live bearer token. Rejection is 401 with an empty
/// body, as 1NCE answers.
struct Authorized;

impl FromRequestParts<AppState> for Authorized {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, shared: &AppState) -> Result<Self, StatusCode> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or(StatusCode::UNAUTHORIZED)?;
        if shared.lock().token_is_valid(token, Instant::now()) {
            Ok(Authorized)
        } else {
            Err(StatusCode::UNAUTHORIZED)
        }
    }
}

/// A 400 in 1NCE's error shape.
fn bad_request(error_code: &str, message: impl Into<String>) -> Response {
    let body = json!({ "statusCode": 400, "errorCode": error_code, "message": message.into() });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// `POST /oauth/token`: the client-credentials exchange, checked in 1NCE's order
/// (content type, Basic header, body, then the credentials themselves).
async fn issue_token(State(shared): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return bad_request("UnsupportedContentTypeError", "Content-Type not supported");
    }

    let (username, password) = match basic_credentials(&headers) {
        Ok(credentials) => credentials,
        Err(message) => return bad_request("AuthValidationError", message),
    };

    let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(&body) else {
        return bad_request(
            "BodyValidationError",
            "Request body validation error: body must be a JSON object",
        );
    };
    match fields.get("grant_type") {
        Some(serde_json::Value::String(g)) if g == "client_credentials" => {}
        None => {
            return bad_request(
                "BodyValidationError",
                "Request body validation error: Missing attributes 'grant_type'",
            );
        }
        Some(_) => {
            return bad_request(
                "BodyValidationError",
                "Request body validation error: 'grant_type' must be 'client_credentials'",
            );
        }
    }

    if username != shared.client_id || password != shared.client_secret {
        return bad_request("BadCredentials", "Bad credentials");
    }

    let (token, lifetime) = shared.lock().issue_token(Instant::now());
    Json(json!({
        "status_code": 200,
        "access_token": token,
        "token_type": "bearer",
        "expires_in": lifetime.as_secs().max(1),
        "userId": "sandbox-user",
        "scope": "all",
    }))
    .into_response()
}

/// Extracts `(username, password)` from a Basic header, or the AuthValidationError message.
fn basic_credentials(headers: &HeaderMap) -> Result<(String, String), String> {
    const MISSING_BOTH: &str =
        "Auth header validation error: Missing attributes 'username', 'password'";
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Err(MISSING_BOTH.into());
    };
    let encoded = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, encoded)| encoded.trim())
        .ok_or_else(|| {
            "Auth header validation error: Authorization header must use the Basic scheme"
                .to_owned()
        })?;
    let decoded = STANDARD
        .decode(encoded)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| {
            "Auth header validation error: Basic credentials are not valid base64".to_owned()
        })?;
    let (username, password) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
    match (username.is_empty(), password.is_empty()) {
        (true, true) => Err(MISSING_BOTH.into()),
        (true, false) => Err("Auth header validation error: Missing attributes 'username'".into()),
        (false, true) => Err("Auth header validation error: Missing attributes 'password'".into()),
        (false, false) => Ok((username.to_owned(), password.to_owned())),
    }
}

/// A sort key of `GET /v1/orders`.
#[derive(Clone, Copy)]
enum SortKey {
    Number,
    Status,
    Date,
}

impl SortKey {
    fn compare(self, a: &Order, b: &Order) -> Ordering {
        match self {
            SortKey::Number => a.order_number.cmp(&b.order_number),
            SortKey::Status => a.order_status.as_str().cmp(b.order_status.as_str()),
            SortKey::Date => a.order_date.cmp(&b.order_date),
        }
    }
}

/// Validated `page`, `pageSize` and `sort` of an order listing.
struct ListQuery {
    page: usize,
    page_size: usize,
    sort: Vec<SortKey>,
}

impl ListQuery {
    /// Parses the raw query; unknown parameters are ignored, and the first occurrence of
    /// a repeated one wins. `Err` is the message of the 400 answer.
    fn parse(raw: Option<&str>) -> Result<ListQuery, String> {
        let pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };

        let page = match get("page") {
            None => 1,
            Some(v) => v.parse::<usize>().ok().filter(|p| *p >= 1).ok_or_else(|| {
                format!("Invalid value '{v}' for query parameter 'page': must be an integer >= 1")
            })?,
        };
        let page_size = match get("pageSize") {
            None => MAX_PAGE_SIZE,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|s| (1..=MAX_PAGE_SIZE).contains(s))
                .ok_or_else(|| {
                    format!(
                        "Invalid value '{v}' for query parameter 'pageSize': must be an integer between 1 and {MAX_PAGE_SIZE}"
                    )
                })?,
        };
        let sort = match get("sort") {
            None => vec![SortKey::Number],
            Some(v) => v
                .split(',')
                .map(|key| match key.trim() {
                    "order_number" => Some(SortKey::Number),
                    "order_status" => Some(SortKey::Status),
                    "order_date" => Some(SortKey::Date),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    format!(
                        "Invalid value '{v}' for query parameter 'sort': must be a comma-separated list of order_number, order_status, order_date"
                    )
                })?,
        };
        Ok(ListQuery {
            page,
            page_size,
            sort,
        })
    }
}

/// `GET /v1/orders`: one page as a bare array, totals in `X-*` headers.
async fn list_orders(
    State(shared): State<AppState>,
    _: Authorized,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = match ListQuery::parse(raw.as_deref()) {
        Ok(query) => query,
        Err(message) => return bad_request("BadRequest", message),
    };
    let (page, total, with_totals) = {
        let state = shared.lock();
        let placed = match state.placed() {
            Ok(placed) => placed,
            Err(e) => return unavailable(&e),
        };
        let mut orders: Vec<&Order> = state.orders.values().chain(&placed).collect();
        // Stable sort over number order, so ties not settled by the keys stay by number.
        orders.sort_by(|a, b| {
            query
                .sort
                .iter()
                .map(|key| key.compare(a, b))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        });
        let start = (query.page - 1).saturating_mul(query.page_size);
        let page: Vec<Order> = orders
            .into_iter()
            .skip(start)
            .take(query.page_size)
            .cloned()
            .collect();
        (page, state.orders.len() + placed.len(), state.list_totals)
    };
    let mut response = Json(page).into_response();
    let headers = response.headers_mut();
    if with_totals {
        headers.insert("x-total-pages", total.div_ceil(query.page_size).into());
        headers.insert("x-total-count", total.into());
    }
    headers.insert("x-current-page", query.page.into());
    headers.insert("x-count-per-page", query.page_size.into());
    response
}

/// `GET /v1/orders/{order_number}`.
async fn get_order(
    State(shared): State<AppState>,
    _: Authorized,
    Path(raw): Path<String>,
) -> Response {
    let Ok(number) = raw.parse::<u64>() else {
        return bad_request(
            "BadRequest",
            format!("Invalid order_number '{raw}': must be an integer"),
        );
    };
    let order = shared.lock().order(number);
    match order {
        Ok(Some(order)) => Json(order).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => unavailable(&e),
    }
}

/// `POST /v1/orders`: validates, stores, and answers in the configured style.
async fn create_order(State(shared): State<AppState>, _: Authorized, body: Bytes) -> Response {
    let new = match validate_order(&body, &shared.products(), shared.default_delivery_addresses) {
        Ok(new) => new,
        Err(message) => return bad_request("BadRequest", message),
    };
    let (order, style) = {
        let mut state = shared.lock();
        let order = match state.create_order(new, &shared.default_address) {
            Ok(order) => order,
            Err(e) => return unavailable(&e),
        };
        (order, state.create_response)
    };
    match style {
        CreateResponse::Created201 => {
            let location = format!("{}/v1/orders/{}", shared.base_url, order.order_number);
            (StatusCode::CREATED, [(LOCATION, location)]).into_response()
        }
        CreateResponse::Ok200WithOrder => Json(order).into_response(),
    }
}

/// A 503 for a sandbox whose file of placed orders failed (nothing was placed), said in the
/// log and in 1NCE's error shape.
fn unavailable(why: &str) -> Response {
    tracing::error!(error = %why, "sandbox: the placed orders could not be read or written");
    let body = json!({ "statusCode": 503, "message": format!("the sandbox could not use its orders: {why}") });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// `GET /v1/products`: the whole catalogue as a bare array.
async fn list_products(State(shared): State<AppState>, _: Authorized) -> Response {
    Json(shared.products()).into_response()
}
