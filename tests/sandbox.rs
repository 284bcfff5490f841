//! The sandbox over real HTTP, driven with reqwest: what a client of 1NCE can observe (tokens,
//! validation errors, pagination, order creation, the seeded account) and the test hooks
//! (request recording, faults, forced expiry). Tests of its types alone stay in src/sandbox.

use std::time::Duration;

use onence_mcp::sandbox::{
    CreateResponse, Fault, MAX_BODY_BYTES, SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, Sandbox,
    SandboxOptions,
};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

use crate::common::{eventually, install_crypto};

fn client() -> Client {
    install_crypto();
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client builds")
}

fn basic(id: &str, secret: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

async fn request_token(sandbox: &Sandbox, client: &Client) -> Response {
    client
        .post(format!("{}/oauth/token", sandbox.base_url()))
        .header(
            "authorization",
            basic(SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET),
        )
        .json(&json!({ "grant_type": "client_credentials" }))
        .send()
        .await
        .expect("token request")
}

async fn token(sandbox: &Sandbox, client: &Client) -> String {
    let body: Value = request_token(sandbox, client)
        .await
        .json()
        .await
        .expect("token json");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

async fn get(sandbox: &Sandbox, client: &Client, token: &str, path_and_query: &str) -> Response {
    client
        .get(format!("{}{path_and_query}", sandbox.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET")
}

async fn post_order(sandbox: &Sandbox, client: &Client, token: &str, body: &Value) -> Response {
    client
        .post(format!("{}/v1/orders", sandbox.base_url()))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("POST")
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Asserts a 400 in 1NCE's error shape and returns its message.
async fn expect_400(response: Response, error_code: &str) -> String {
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("error json");
    assert_eq!(body["statusCode"], 400, "{body}");
    assert_eq!(body["errorCode"], error_code, "{body}");
    body["message"].as_str().expect("message").to_owned()
}

async fn expect_empty(response: Response, status: StatusCode) {
    assert_eq!(response.status(), status);
    assert_eq!(response.text().await.expect("body"), "");
}

fn order_numbers(page: &Value) -> Vec<u64> {
    page.as_array()
        .expect("array")
        .iter()
        .map(|o| o["order_number"].as_u64().expect("order_number"))
        .collect()
}

#[tokio::test]
async fn token_success_is_long_url_safe_and_fresh() {
    let sandbox = Sandbox::start().await.unwrap();
    let client = client();
    let response = request_token(&sandbox, &client).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status_code"], 200);
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["userId"], "sandbox-user");
    assert_eq!(body["scope"], "all");
    let first = body["access_token"].as_str().unwrap();
    assert!(first.len() >= 1000);
    assert!(
        first
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    let second = token(&sandbox, &client).await;
    assert_ne!(first, second);
    // Renewal does not revoke: both tokens work.
    for t in [first, second.as_str()] {
        assert_eq!(
            get(&sandbox, &client, t, "/v1/products").await.status(),
            StatusCode::OK
        );
    }
}

/// Each way to get the token request wrong, one request each: a 400 in 1NCE's shape naming the
/// problem (and never echoing a secret sent), and what is right gets a token.
#[tokio::test]
async fn token_errors_follow_1nce() {
    let sandbox = Sandbox::start().await.unwrap();
    let client = client();
    let url = format!("{}/oauth/token", sandbox.base_url());
    const JSON: Option<&str> = Some("application/json");
    const GRANT: &str = r#"{"grant_type":"client_credentials"}"#;
    const WRONG_SECRET: &str = "wrong-secret-value";
    let good = Some(basic(SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET));
    // (Authorization, Content-Type, body, the 400's errorCode or "" for a token, a word its
    // message names)
    let mut cases = Vec::new();
    // The body must be declared JSON; a charset is fine.
    for (content_type, error_code) in [
        (None, "UnsupportedContentTypeError"),
        (Some("text/plain"), "UnsupportedContentTypeError"),
        (Some("application/json; charset=utf-8"), ""),
    ] {
        cases.push((good.clone(), content_type, GRANT, error_code, ""));
    }
    // Basic credentials, with both parts.
    for (authorization, names) in [
        (None, "'username'"),
        (Some("Basic !!!not-base64".to_owned()), ""),
        (Some("Bearer abc".to_owned()), ""),
        (Some(basic(SANDBOX_CLIENT_ID, "")), "'password'"),
    ] {
        cases.push((authorization, JSON, GRANT, "AuthValidationError", names));
    }
    // A JSON body asking for client_credentials.
    for (body, names) in [
        ("not json", ""),
        ("{}", "grant_type"),
        (r#"{"grant_type":"password"}"#, ""),
    ] {
        cases.push((good.clone(), JSON, body, "BodyValidationError", names));
    }
    // Credentials that are not the account's.
    for authorization in [
        basic(SANDBOX_CLIENT_ID, WRONG_SECRET),
        basic("someone-else", SANDBOX_CLIENT_SECRET),
    ] {
        cases.push((Some(authorization), JSON, GRANT, "BadCredentials", ""));
    }

    for (authorization, content_type, body, error_code, names) in cases {
        let what = format!("{authorization:?} {content_type:?} {body}");
        let mut request = client.post(&url).body(body);
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        if error_code.is_empty() {
            assert_eq!(response.status(), StatusCode::OK, "{what}");
            continue;
        }
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{what}");
        let answer: Value = response.json().await.expect("error json");
        assert_eq!(answer["statusCode"], 400, "{what}: {answer}");
        assert_eq!(answer["errorCode"], error_code, "{what}: {answer}");
        let message = answer["message"].as_str().expect("message");
        assert!(message.contains(names), "{what}: {message}");
        assert!(!message.contains(WRONG_SECRET), "{what}: {message}");
    }
}

#[tokio::test]
async fn custom_credentials_and_lifetime_are_honoured() {
    let sandbox = Sandbox::start_with(SandboxOptions {
        client_id: "id".into(),
        client_secret: "secret".into(),
        token_lifetime: Duration::from_millis(10),
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let client = client();
    let response = client
        .post(format!("{}/oauth/token", sandbox.base_url()))
        .header("authorization", basic("id", "secret"))
        .json(&json!({ "grant_type": "client_credentials" }))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["expires_in"], 1, "sub-second lifetimes report 1");
}

#[tokio::test]
async fn v1_routes_need_a_live_bearer_token() {
    let sandbox = Sandbox::start().await.unwrap();
    let client = client();
    let base = sandbox.base_url();

    for path in ["/v1/orders", "/v1/orders/2000000001", "/v1/products"] {
        let r = client.get(format!("{base}{path}")).send().await.unwrap();
        expect_empty(r, StatusCode::UNAUTHORIZED).await;
    }
    let r = client
        .post(format!("{base}/v1/orders"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    expect_empty(r, StatusCode::UNAUTHORIZED).await;
    expect_empty(
        get(&sandbox, &client, "made-up-token", "/v1/orders").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let basic_on_v1 = client
        .get(format!("{base}/v1/orders"))
        .header(
            "authorization",
            basic(SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET),
        )
        .send()
        .await
        .unwrap();
    expect_empty(basic_on_v1, StatusCode::UNAUTHORIZED).await;

    let live = token(&sandbox, &client).await;
    assert_eq!(
        get(&sandbox, &client, &live, "/v1/orders").await.status(),
        StatusCode::OK
    );
    sandbox.expire_tokens();
    expect_empty(
        get(&sandbox, &client, &live, "/v1/orders").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    sandbox.set_token_lifetime(Duration::from_millis(300));
    let short = token(&sandbox, &client).await;
    assert_eq!(
        get(&sandbox, &client, &short, "/v1/orders").await.status(),
        StatusCode::OK
    );
    // Not waiting for a signal: outliving the token's 300 ms lifetime is the behaviour under test.
    tokio::time::sleep(Duration::from_millis(400)).await;
    expect_empty(
        get(&sandbox, &client, &short, "/v1/orders").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let fresh = token(&sandbox, &client).await;
    assert_eq!(
        get(&sandbox, &client, &fresh, "/v1/orders").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn pagination_walks_25_orders_in_three_pages() {
    let sandbox = Sandbox::start().await.unwrap();
    let client = client();
    let token = token(&sandbox, &client).await;
    let mut seen = Vec::new();
    for (page, expected_len) in [(1, 10), (2, 10), (3, 5), (4, 0)] {
        let r = get(
            &sandbox,
            &client,
            &token,
            &format!("/v1/orders?page={page}&pageSize=10"),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "x-total-pages"), Some("3"));
        assert_eq!(header(&r, "x-total-count"), Some("25"));
        assert_eq!(
            header(&r, "x-current-page"),
            Some(page.to_string().as_str())
        );
        assert_eq!(header(&r, "x-count-per-page"), Some("10"));
        let body: Value = r.json().await.unwrap();
        assert_eq!(body.as_array().unwrap().len(), expected_len);
        seen.extend(order_numbers(&body));
    }
    let expected: Vec<u64> = (2_000_000_001..=2_000_000_025).collect();
    assert_eq!(seen, expected);

    // Defaults: page 1, pageSize 10.
    let r = get(&sandbox, &client, &token, "/v1/orders").await;
    assert_eq!(header(&r, "x-current-page"), Some("1"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        order_numbers(&body),
        (2_000_000_001..=2_000_000_010).collect::<Vec<_>>()
    );

    let r = get(&sandbox, &client, &token, "/v1/orders?page=2&pageSize=7").await;
    assert_eq!(header(&r, "x-total-pages"), Some("4"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        order_numbers(&body),
        (2_000_000_008..=2_000_000_014).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn sort_keys_order_the_listing() {
    let sandbox = Sandbox::start().await.unwrap();
    let client = client();
    let token = token(&sandbox, &client).await;
    let mut all = Vec::new();
    for page in 1..=3 {
        let r = get(
            &sandbox,
            &client,
            &token,
            &format!("/v1/orders?sort=order_status,order_number&page={page}"),
        )
        .await;
        let body: Value = r.json().await.unwrap();
        all.extend(body.as_array().unwrap().clone());
    }
    let keys: Vec<(String, u64)> = all
        .iter()
        .map(|o| {
            (
                o["order_status"].as_str().unwrap().to_owned(),
                o["order_number"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(keys.first().map(|k| k.0.as_str()), Some("CANCELLED"));
    assert_eq!(keys.last().map(|k| k.0.as_str()), Some("SHIPPED"));

    let r = get(&sandbox, &client, &token, "/v1/orders?sort=order_date").await;
    let body: Value = r.json().await.unwrap();
    let dates: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_date"].as_str().unwrap())
        .collect();
    let mut sorted_dates = dates.clone();
    sorted_dates.sort();
    assert_eq!(dates, sorted_dates);
}

#[tokio::test]
async fn invalid_list_parameters_are_400_with_the_allowed_values() {
    let sandbox = Sandbox::start().await.unwrap();
    let client = client();
    let token = token(&sandbox, &client).await;
    for (query, hint) in [
        ("page=0", ">= 1"),
        ("page=abc", ">= 1"),
        ("page=", ">= 1"),
        ("pageSize=11", "between 1 and 10"),
        ("pageSize=0", "between 1 and 10"),
        ("pageSize=2.5", "between 1 and 10"),
        ("sort=price", "order_number, order_status, order_date"),
        (
            "sort=order_number,",
            "order_number, order_status, order_date",
        ),
    ] {
        let r = get(&sandbox, &client, &token, &format!("/v1/orders?{query}")).await;
        let message = expect_400(r, "BadRequest").await;
        assert!(message.contains(hint), "{query}: {message}");
    }
}

#[tokio::test]
async fn single_order_lookup() {
    let sandbox = Sandbox::start().await.unwrap();
    let client = client();
    let token = token(&sandbox, &client).await;
    let r = get(&sandbox, &client, &token, "/v1/orders/2000000001").await;
    assert_eq!(r.status(), StatusCode::OK);
    let order: Value = r.json().await.unwrap();
    assert_eq!(order["order_number"], 2_000_000_001u64);
    assert_eq!(order["order_type"], "FIRST_ORDER");
    expect_empty(
        get(&sandbox, &client, &token, "/v1/orders/1999999999").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    expect_400(
        get(&sandbox, &client, &token, "/v1/orders/abc").await,
        "BadRequest",
    )
    .await;
}

#[tokio::test]
async fn seeded_account_is_realistic_and_deterministic() {
    let sandbox = Sandbox::start().await.unwrap();
    let other = Sandbox::start().await.unwrap();
    let orders = sandbox.orders();
    assert_eq!(orders.len(), 25);
    assert_eq!(orders[0]["order_type"], "FIRST_ORDER");
    for kind in ["ADDITIONAL_ORDER", "TOPUP", "BULK_TOPUP", "TARIFF_CHANGE"] {
        assert!(orders.iter().any(|o| o["order_type"] == kind), "{kind}");
    }
    for status in ["COMPLETED", "IN_PROGRESS", "SHIPPED", "CANCELLED"] {
        assert!(
            orders.iter().any(|o| o["order_status"] == status),
            "{status}"
        );
    }
    let product_ids = [1001, 1002, 1003, 1004];
    for order in &orders {
        assert_eq!(order["currency"], "EUR");
        assert_eq!(order["shipping_address"]["country"], "DE");
        assert_eq!(order["shipping_address"]["salutation"], "1");
        let date = order["order_date"].as_str().unwrap();
        assert!(("2024".."2027").contains(&date), "{date}");
        let amount = order["invoice_amount"].as_str().unwrap();
        assert!(
            amount
                .split_once('.')
                .is_some_and(|(_, cents)| cents.len() == 2),
            "{amount}"
        );
        for line in order["products"].as_array().unwrap() {
            assert!(product_ids.contains(&line["product_id"].as_u64().unwrap()));
        }
        for sim in order["sims"].as_array().unwrap() {
            let iccid = sim["iccid"].as_str().unwrap();
            assert_eq!(iccid.len(), 19);
            assert!(iccid.starts_with("89882806") && iccid.bytes().all(|b| b.is_ascii_digit()));
            assert_eq!(sim["_links"][0]["rel"], "self");
            assert_eq!(
                sim["_links"][0]["href"],
                format!("{}/v1/sims/{iccid}", sandbox.base_url())
            );
        }
    }
    assert!(
        orders
            .iter()
            .filter(|o| o["order_status"] == "COMPLETED")
            .count()
            > 12
    );
    // Only the SIM links differ between two sandboxes (they embed the port).
    let strip = |orders: Vec<Value>| -> Vec<Value> {
        orders
            .into_iter()
            .map(|mut o| {
                for sim in o["sims"].as_array_mut().unwrap() {
                    sim["_links"] = Value::Null;
                }
                o
            })
            .collect()
    };
    assert_eq!(strip(orders), strip(other.orders()));
}

#[tokio::test]
async fn created_order_is_201_with_location_and_then_listed() {
    let sandbox = Sandbox::start().await.unwrap();
    let client = client();
    let token = token(&sandbox, &client).await;
    let r = post_order(
        &sandbox,
        &client,
        &token,
        &json!({ "products": [{ "productId": 1001, "quantity": 3 }], "customer_reference": "ticket-42" }),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = header(&r, "location").unwrap().to_owned();
    assert_eq!(
        location,
        format!("{}/v1/orders/2000000026", sandbox.base_url())
    );
    assert_eq!(r.text().await.unwrap(), "");

    let order: Value = client
        .get(&location)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(order["order_number"], 2_000_000_026u64);
    assert_eq!(order["order_type"], "ADDITIONAL_ORDER");
    assert_eq!(order["order_status"], "IN_PROGRESS");
    assert_eq!(order["invoice_number"], "20000026");
    assert_eq!(order["invoice_amount"], "35.70");
    assert_eq!(order["currency"], "EUR");
    assert_eq!(
        order["products"],
        json!([{ "product_id": 1001, "quantity": 3 }])
    );
    assert_eq!(order["sims"], json!([]));
    assert_eq!(order["customer_reference"], "ticket-42");
    assert_eq!(
        order["shipping_address"],
        sandbox.orders()[0]["shipping_address"]
    );
    let date = chrono::DateTime::parse_from_rfc3339(order["order_date"].as_str().unwrap()).unwrap();
    assert!((chrono::Utc::now() - date.to_utc()).num_seconds().abs() < 60);

    let r = get(&sandbox, &client, &token, "/v1/orders?page=3").await;
    assert_eq!(header(&r, "x-total-count"), Some("26"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(order_numbers(&body).last(), Some(&2_000_000_026));

    // A given address is kept, and numbers keep counting.
    let address = json!({ "salutation": "2", "first_name": "Erika", "last_name": "Musterfrau",
        "company": "ACME", "street": "Hauptstraße", "house_number": "5", "zip": "80331",
        "city": "München", "country": "DE", "phone": "+49 89 1234" });
    let r = post_order(
        &sandbox,
        &client,
        &token,
        &json!({ "products": [{ "productId": 1003, "quantity": 10 }, { "productId": 1002, "quantity": 1 }],
                 "delivery_address": address }),
    )
    .await;
    assert_eq!(
        header(&r, "location").map(|l| l.ends_with("/2000000027")),
        Some(true)
    );
    let created = sandbox.orders().pop().unwrap();
    assert_eq!(created["shipping_address"], address);
    // (10 × 12.00 + 15.00) × 1.19
    assert_eq!(created["invoice_amount"], "160.65");
    assert!(created.get("customer_reference").is_none());
}

#[tokio::test]
async fn ok200_mode_returns_the_order() {
    let sandbox = Sandbox::start_with(SandboxOptions {
        create_response: CreateResponse::Ok200WithOrder,
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let client = client();
    let token = token(&sandbox, &client).await;
    let body = json!({ "products": [{ "productId": 1004, "quantity": 2 }] });
    let r = post_order(&sandbox, &client, &token, &body).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(header(&r, "location").is_none());
    let order: Value = r.json().await.unwrap();
    assert_eq!(order["order_number"], 2_000_000_026u64);
    assert_eq!(
        order["products"],
        json!([{ "product_id": 1004, "quantity": 2 }])
    );
    assert_eq!(order["invoice_amount"], "23.80");

    sandbox.set_create_response(CreateResponse::Created201);
    let r = post_order(&sandbox, &client, &token, &body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn order_validation_errors_name_the_problem() {
    let sandbox = Sandbox::start().await.unwrap();
    let client = client();
    let token = token(&sandbox, &client).await;
    let raw = client
        .post(format!("{}/v1/orders", sandbox.base_url()))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let message = expect_400(raw, "BadRequest").await;
    assert!(message.contains("JSON"), "{message}");

    let line = |id: Value, quantity: Value| json!({ "products": [{ "productId": id, "quantity": quantity }] });
    let address = |field: &str, value: &str| json!({ "products": [{ "productId": 1001, "quantity": 1 }], "delivery_address": { field: value } });
    for (body, hint) in [
        (json!([1, 2]), "products"),
        (json!({}), "products"),
        (json!({ "products": [] }), "products"),
        (line(json!(9999), json!(1)), "9999"),
        (line(json!("1001"), json!(1)), "productId"),
        (line(json!(1001), json!(0)), "between 1 and 1000"),
        (line(json!(1001), json!(1001)), "between 1 and 1000"),
        (line(json!(1001), json!(1.5)), "between 1 and 1000"),
        (line(json!(1001), json!("3")), "between 1 and 1000"),
        (line(json!(1003), json!(5)), "1NCE IoT Chip SIM - MFF2"),
        (line(json!(1003), json!(5)), "between 10 and 1000"),
        (address("salutation", "3"), "salutation"),
        (address("country", "DEU"), "country"),
        (address("country", "D1"), "country"),
        (
            json!({ "products": [{ "productId": 1001, "quantity": 1 }], "customer_reference": 7 }),
            "customer_reference",
        ),
    ] {
        let r = post_order(&sandbox, &client, &token, &body).await;
        let message = expect_400(r, "BadRequest").await;
        assert!(message.contains(hint), "{body}: {message}");
    }
    assert_eq!(sandbox.orders().len(), 25, "rejected orders are not stored");
}

#[tokio::test]
async fn delivery_address_is_required_without_exactly_one_default() {
    for defaults in [0, 2] {
        let sandbox = Sandbox::start_with(SandboxOptions {
            default_delivery_addresses: defaults,
            ..SandboxOptions::default()
        })
        .await
        .unwrap();
        let client = client();
        let token = token(&sandbox, &client).await;
        let bare = json!({ "products": [{ "productId": 1001, "quantity": 1 }] });
        let message = expect_400(
            post_order(&sandbox, &client, &token, &bare).await,
            "BadRequest",
        )
        .await;
        assert!(message.contains("delivery_address"), "{message}");
        let with_address = json!({ "products": [{ "productId": 1001, "quantity": 1 }],
            "delivery_address": { "street": "Weg", "city": "Köln", "country": "DE" } });
        let r = post_order(&sandbox, &client, &token, &with_address).await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
}

#[tokio::test]
async fn faults_are_consumed_in_order_before_auth() {
    let sandbox = Sandbox::start().await.unwrap();
    let client = client();
    let token = token(&sandbox, &client).await;
    sandbox.inject(Fault::status("GET", "/v1/orders", 503).times(2));
    sandbox.inject(
        Fault::status("get", "/v1/orders", 429)
            .with_header("Retry-After", "1")
            .with_json(&json!({ "message": "Too Many Requests" })),
    );
    sandbox.inject(Fault::status("POST", "/oauth/token", 500).times(0));

    // Products do not match the prefix and are unaffected.
    assert_eq!(
        get(&sandbox, &client, &token, "/v1/products")
            .await
            .status(),
        StatusCode::OK
    );
    // Faults answer even without a token.
    let r = client
        .get(format!("{}/v1/orders", sandbox.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let r = get(&sandbox, &client, &token, "/v1/orders/2000000001").await;
    expect_empty(r, StatusCode::SERVICE_UNAVAILABLE).await;
    let r = get(&sandbox, &client, &token, "/v1/orders").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&r, "retry-after"), Some("1"));
    assert_eq!(header(&r, "content-type"), Some("application/json"));
    assert_eq!(
        r.json::<Value>().await.unwrap()["message"],
        "Too Many Requests"
    );
    assert_eq!(
        get(&sandbox, &client, &token, "/v1/orders").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        request_token(&sandbox, &client).await.status(),
        StatusCode::OK
    );
    // Faulted requests are recorded like any other.
    assert_eq!(sandbox.count("GET", "/v1/orders"), 4);
}

#[tokio::test]
async fn requests_are_recorded_in_order() {
    let sandbox = Sandbox::start().await.unwrap();
    let client = client();
    let token = token(&sandbox, &client).await;
    get(&sandbox, &client, &token, "/v1/orders?page=2&pageSize=5").await;
    post_order(
        &sandbox,
        &client,
        &token,
        &json!({ "products": [{ "productId": 1001, "quantity": 1 }] }),
    )
    .await;
    client
        .get(format!("{}/nowhere", sandbox.base_url()))
        .send()
        .await
        .unwrap();

    let requests = sandbox.requests();
    let summary: Vec<(&str, &str)> = requests
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("POST", "/oauth/token"),
            ("GET", "/v1/orders"),
            ("POST", "/v1/orders"),
            ("GET", "/nowhere")
        ]
    );
    assert_eq!(
        requests[0].json().unwrap()["grant_type"],
        "client_credentials"
    );
    assert!(
        requests[0]
            .header("Authorization")
            .unwrap()
            .starts_with("Basic ")
    );
    assert_eq!(requests[1].query.as_deref(), Some("page=2&pageSize=5"));
    assert_eq!(
        requests[1].header("AUTHORIZATION"),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(
        requests[2].json().unwrap()["products"][0]["productId"],
        1001
    );
    assert_eq!(sandbox.count("post", "/v1/orders"), 1);
    assert_eq!(sandbox.count("POST", "/oauth/token"), 1);
    assert_eq!(sandbox.count("GET", "/v1"), 1);
    sandbox.clear_requests();
    assert!(sandbox.requests().is_empty());
    assert_eq!(sandbox.count("POST", "/"), 0);
}

#[tokio::test]
async fn products_have_the_documented_shape() {
    let sandbox = Sandbox::start().await.unwrap();
    let client = client();
    let token = token(&sandbox, &client).await;
    let r = get(&sandbox, &client, &token, "/v1/products").await;
    assert_eq!(r.status(), StatusCode::OK);
    let products: Value = r.json().await.unwrap();
    let products = products.as_array().unwrap();
    assert_eq!(products.len(), 4);
    let keys = [
        "id",
        "product",
        "material",
        "package_size",
        "minQuantity",
        "maxQuantity",
        "maxQuantityPerCustomer",
        "min_contract_duration",
        "one_time_charges",
        "recurring_charges",
    ];
    for product in products {
        let object = product.as_object().unwrap();
        assert_eq!(object.len(), keys.len(), "{product}");
        for key in keys {
            assert!(object.contains_key(key), "{key} in {product}");
        }
    }
    assert_eq!(
        products[0],
        json!({ "id": 1001, "product": "1NCE IoT FlexSIM - Standard", "material": "1NCE FlexSIM",
            "package_size": 1, "minQuantity": 1, "maxQuantity": 1000, "maxQuantityPerCustomer": 100000,
            "min_contract_duration": 120,
            "one_time_charges": [{ "name": "provisionCharge", "amount_net": 10.0, "currency": "EUR" }],
            "recurring_charges": [] })
    );
    assert_eq!(products[2]["package_size"], 10);
    assert_eq!(products[2]["minQuantity"], 10);
    assert!(
        !products[3]["recurring_charges"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn unknown_routes_methods_and_oversized_bodies() {
    let sandbox = Sandbox::start().await.unwrap();
    let client = client();
    let token = token(&sandbox, &client).await;
    let base = sandbox.base_url();
    expect_empty(
        get(&sandbox, &client, &token, "/v1/sims").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    expect_empty(
        client.get(format!("{base}/")).send().await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    let r = client
        .delete(format!("{base}/v1/orders/2000000001"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let r = client
        .get(format!("{base}/oauth/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);

    let huge = "x".repeat(MAX_BODY_BYTES + 1);
    let r = client
        .post(format!("{base}/v1/orders"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let last = sandbox.requests().pop().unwrap();
    assert_eq!((last.method.as_str(), last.body.as_str()), ("POST", ""));
}

#[tokio::test]
async fn shutdown_and_drop_release_the_port() {
    let sandbox = Sandbox::start().await.unwrap();
    let client = client();
    let addr = sandbox.local_addr();
    assert_eq!(
        sandbox.base_url(),
        format!("http://127.0.0.1:{}", addr.port())
    );
    assert_eq!(
        request_token(&sandbox, &client).await.status(),
        StatusCode::OK
    );
    sandbox.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());

    let dropped = Sandbox::start().await.unwrap();
    let addr = dropped.local_addr();
    assert_eq!(
        request_token(&dropped, &client).await.status(),
        StatusCode::OK
    );
    drop(dropped);
    // Dropping signals the server task, which closes the listener in the background; nothing
    // tells the test when, so it looks (a refused connection on loopback is immediate).
    eventually(
        "the listener to close after the sandbox was dropped",
        || std::net::TcpStream::connect(addr).is_err(),
    )
    .await;
}

#[tokio::test]
async fn a_fault_after_handling_creates_the_order_and_loses_the_answer() {
    let sandbox = Sandbox::start().await.unwrap();
    let client = client();
    let token = token(&sandbox, &client).await;
    let before = sandbox.orders().len();
    sandbox.inject(Fault::status("POST", "/v1/orders", 504).after_handling());
    let body = json!({ "products": [{ "productId": 1001, "quantity": 2 }] });
    let r = post_order(&sandbox, &client, &token, &body).await;
    expect_empty(r, StatusCode::GATEWAY_TIMEOUT).await;
    assert_eq!(sandbox.orders().len(), before + 1, "the order was created");
    // The fault is used up: the next POST is answered normally.
    let r = post_order(&sandbox, &client, &token, &body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

/// Sandboxes started with one orders file (as `--sandbox` processes sharing a state directory
/// are) share the orders placed in them: each finds the others', numbers go on from the
/// highest, concurrent POSTs never get one number twice, a status set in one shows in the
/// other, and an account of generated orders numbers its own after them.
#[tokio::test]
async fn sandboxes_sharing_an_orders_file_share_their_orders() {
    let dir = crate::common::temp_dir("sandbox-orders");
    let file = dir.join("orders.sqlite3");
    let with_file = |orders: Option<usize>| SandboxOptions {
        orders_file: Some(file.clone()),
        orders,
        ..SandboxOptions::default()
    };
    let one = Sandbox::start_with(with_file(None)).await.unwrap();
    let two = Sandbox::start_with(with_file(None)).await.unwrap();
    let client = client();
    let (t1, t2) = (token(&one, &client).await, token(&two, &client).await);
    let order = json!({ "products": [{ "productId": 1001, "quantity": 2 }], "customer_reference": "shared" });

    let r = post_order(&one, &client, &t1, &order).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(
        header(&r, "location")
            .unwrap()
            .ends_with("/v1/orders/2000000026")
    );
    let seen: Value = get(&two, &client, &t2, "/v1/orders/2000000026")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen["customer_reference"], "shared");
    assert_eq!(seen["invoice_number"], "20000026");
    let r = get(&two, &client, &t2, "/v1/orders?page=3").await;
    assert_eq!(header(&r, "x-total-count"), Some("26"));

    // Both at once, several times: every POST gets a number of its own, one after another.
    let mut numbers = Vec::new();
    for _ in 0..4 {
        let (a, b) = tokio::join!(
            post_order(&one, &client, &t1, &order),
            post_order(&two, &client, &t2, &order)
        );
        for r in [a, b] {
            assert_eq!(r.status(), StatusCode::CREATED);
            let location = header(&r, "location").unwrap();
            numbers.push(location.rsplit('/').next().unwrap().parse::<u64>().unwrap());
        }
    }
    numbers.sort();
    assert_eq!(numbers, (2_000_000_027..=2_000_000_034).collect::<Vec<_>>());
    // The same account in both (seeded SIMs link to each sandbox's own address).
    let placed = |s: &Sandbox| -> Vec<Value> { s.orders().split_off(25) };
    assert_eq!(one.orders().len(), 34);
    assert_eq!(placed(&one), placed(&two));

    assert!(one.set_order_status(2_000_000_030, "SHIPPED"));
    let shipped: Value = get(&two, &client, &t2, "/v1/orders/2000000030")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shipped["order_status"], "SHIPPED");

    // A later sandbox on the same file starts where they left off.
    drop((one, two));
    let three = Sandbox::start_with(with_file(None)).await.unwrap();
    let t3 = token(&three, &client).await;
    let r = post_order(&three, &client, &t3, &order).await;
    assert!(
        header(&r, "location")
            .unwrap()
            .ends_with("/v1/orders/2000000035")
    );

    // An account of 40 generated orders has orders of its own in the same file.
    let generated = Sandbox::start_with(with_file(Some(40))).await.unwrap();
    let tg = token(&generated, &client).await;
    let r = post_order(&generated, &client, &tg, &order).await;
    assert!(
        header(&r, "location")
            .unwrap()
            .ends_with("/v1/orders/2000000041")
    );
    assert_eq!(generated.orders().len(), 41);
    assert_eq!(three.orders().len(), 35);

    // Without a file each sandbox keeps its own, as before.
    let alone = Sandbox::start().await.unwrap();
    let ta = token(&alone, &client).await;
    let r = post_order(&alone, &client, &ta, &order).await;
    assert!(
        header(&r, "location")
            .unwrap()
            .ends_with("/v1/orders/2000000026")
    );
}
