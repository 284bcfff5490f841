//! The 1NCE client against the sandbox over real HTTP: tokens, renewal and error mapping.

use std::time::Duration;

use onence_mcp::api::model::{ListOrdersQuery, NewOrder, ProductLine};
use onence_mcp::api::{ApiError, Client, ClientConfig, Credentials, PostFailure};
use onence_mcp::orders::post_answer::{PostAnswer, classify};
use onence_mcp::sandbox::{CreateResponse, Fault, SANDBOX_CLIENT_ID, Sandbox};

use crate::common::api_client;

fn first_page() -> ListOrdersQuery {
    ListOrdersQuery::new(None, None, None).unwrap()
}

fn tokens_requested(sandbox: &Sandbox) -> usize {
    sandbox.count("POST", "/oauth/token")
}

#[tokio::test]
async fn one_token_serves_many_calls_and_the_exchange_is_as_documented() {
    let sandbox = Sandbox::start().await.unwrap();
    let client = api_client(&sandbox);
    for n in 1..=3 {
        let page = client
            .list_orders(&ListOrdersQuery::new(Some(n), None, None).unwrap())
            .await
            .unwrap();
        assert_eq!(page.total_pages, Some(3));
        assert_eq!(page.total_count, Some(25));
        for order in page.orders.iter().take(2) {
            client.get_order(order.order_number.unwrap()).await.unwrap();
        }
    }
    assert_eq!(tokens_requested(&sandbox), 1);
    let token_request = &sandbox.requests()[0];
    assert_eq!(token_request.path, "/oauth/token");
    assert!(
        token_request
            .header("authorization")
            .unwrap()
            .starts_with("Basic ")
    );
    assert!(
        token_request
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&token_request.body).unwrap(),
        serde_json::json!({"grant_type": "client_credentials"})
    );
}

#[tokio::test]
async fn concurrent_calls_share_one_token_request() {
    let sandbox = Sandbox::start().await.unwrap();
    let client = api_client(&sandbox);
    let calls = (0..20).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { client.list_orders(&first_page()).await })
    });
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(tokens_requested(&sandbox), 1);
}

#[tokio::test]
async fn renews_ahead_of_expiry_and_after_a_401() {
    let sandbox = Sandbox::start().await.unwrap();
    sandbox.set_token_lifetime(Duration::from_secs(2));
    let client = api_client(&sandbox);
    client.list_orders(&first_page()).await.unwrap();
    client.list_orders(&first_page()).await.unwrap();
    assert_eq!(tokens_requested(&sandbox), 1);
    // Renewed before expiry (lifetime minus a tenth), so no call ever meets a 401. Not waiting
    // for a signal: reaching the renewal window of the 2 s token is the behaviour under test.
    tokio::time::sleep(Duration::from_millis(1900)).await;
    client.list_orders(&first_page()).await.unwrap();
    assert_eq!(tokens_requested(&sandbox), 2);
    let unauthorized = sandbox
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/v1/"))
        .count();
    assert_eq!(unauthorized, 3, "no request was refused and repeated");

    // 1NCE refuses a token early: one 401, one renewal, the same call succeeds.
    sandbox.expire_tokens();
    client.list_orders(&first_page()).await.unwrap();
    assert_eq!(tokens_requested(&sandbox), 3, "one renewal after the 401");
    let requests = sandbox.requests();
    let last: Vec<&str> = requests[requests.len() - 3..]
        .iter()
        .map(|r| r.path.as_str())
        .collect();
    assert_eq!(last, ["/v1/orders", "/oauth/token", "/v1/orders"]);
}

#[tokio::test]
async fn persistent_401_and_bad_credentials_are_reported() {
    let sandbox = Sandbox::start().await.unwrap();
    let client = api_client(&sandbox);
    sandbox.inject(Fault::status("GET", "/v1/orders", 401).times(2));
    assert_eq!(
        client.list_orders(&first_page()).await.unwrap_err(),
        ApiError::Unauthorized
    );
    let wrong = Client::new(ClientConfig::new(
        sandbox.base_url().parse().unwrap(),
        Credentials::new(SANDBOX_CLIENT_ID, "not-the-secret"),
    ))
    .unwrap();
    let err = wrong.list_orders(&first_page()).await.unwrap_err();
    assert!(matches!(err, ApiError::Authentication { .. }), "{err:?}");
    assert!(!err.to_string().contains("not-the-secret"));
}

/// Calls waiting for a token when 1NCE refuses the credentials all get that one refusal: one
/// token request (and one log line), not one per call. A call after it asks again.
#[tokio::test]
async fn a_refusal_of_the_credentials_answers_every_call_waiting_for_it() {
    let sandbox = Sandbox::start().await.unwrap();
    // The refusal is slow to come, so every call is waiting by then.
    sandbox.inject(Fault::delay(
        "POST",
        "/oauth/token",
        Duration::from_millis(300),
    ));
    let wrong = Client::new(ClientConfig::new(
        sandbox.base_url().parse().unwrap(),
        Credentials::new(SANDBOX_CLIENT_ID, "not-the-secret"),
    ))
    .unwrap();
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let client = wrong.clone();
            tokio::spawn(async move { client.list_orders(&first_page()).await })
        })
        .collect();
    for call in calls {
        let err = call.await.unwrap().unwrap_err();
        assert!(matches!(err, ApiError::Authentication { .. }), "{err:?}");
    }
    assert_eq!(tokens_requested(&sandbox), 1);
    let err = wrong.get_order(2000000001).await.unwrap_err();
    assert!(matches!(err, ApiError::Authentication { .. }), "{err:?}");
    assert_eq!(tokens_requested(&sandbox), 2, "a later call asks again");
}

#[tokio::test]
async fn each_error_status_maps_to_its_variant() {
    let sandbox = Sandbox::start().await.unwrap();
    let client = api_client(&sandbox);
    let cases: Vec<(Fault, ApiError)> = vec![
        (Fault::status("GET", "/v1/orders", 403), ApiError::Forbidden),
        (Fault::status("GET", "/v1/orders", 404), ApiError::NotFound),
        (
            Fault::status("GET", "/v1/orders", 429).with_header("Retry-After", "12"),
            ApiError::RateLimited {
                retry_after: Some(Duration::from_secs(12)),
            },
        ),
        (
            Fault::status("GET", "/v1/orders", 429),
            ApiError::RateLimited { retry_after: None },
        ),
        (
            Fault::status("GET", "/v1/orders", 400).with_body(
                r#"{"statusCode":400,"errorCode":"BadRequest","message":"pageSize too big"}"#,
            ),
            ApiError::Rejected {
                status: 400,
                code: Some("BadRequest".into()),
                message: "pageSize too big".into(),
            },
        ),
        (
            Fault::status("GET", "/v1/orders", 500),
            ApiError::Upstream { status: 500 },
        ),
        (
            Fault::status("GET", "/v1/orders", 503),
            ApiError::Upstream { status: 503 },
        ),
    ];
    for (fault, expected) in cases {
        sandbox.inject(fault);
        assert_eq!(
            client.list_orders(&first_page()).await.unwrap_err(),
            expected
        );
    }
    assert_eq!(
        client.get_order(1).await.unwrap_err(),
        ApiError::NotFound,
        "the sandbox's own 404"
    );
    sandbox.inject(Fault::status("GET", "/v1/orders", 200).with_body("{not json"));
    assert!(matches!(
        client.list_orders(&first_page()).await.unwrap_err(),
        ApiError::BadResponse { .. }
    ));
}

#[tokio::test]
async fn unreachable_and_silent_servers_time_out() {
    // A port with nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let client = Client::new(ClientConfig::new(
        url.parse().unwrap(),
        Credentials::new("a", "b"),
    ))
    .unwrap();
    assert!(matches!(
        client.list_orders(&first_page()).await.unwrap_err(),
        ApiError::Unreachable { .. }
    ));

    // A server that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let mut config = ClientConfig::new(url.parse().unwrap(), Credentials::new("a", "b"));
    config.request_timeout = Duration::from_millis(300);
    let err = Client::new(config)
        .unwrap()
        .list_orders(&first_page())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ApiError::Unreachable { reason } if reason.contains("no answer within")),
        "{err:?}"
    );
    hold.abort();
}

fn new_order() -> NewOrder {
    NewOrder::new(
        &[ProductLine {
            product_id: 1001,
            quantity: 3,
        }],
        None,
        Some("ref-1"),
    )
    .unwrap()
}

#[tokio::test]
async fn create_reads_the_number_from_location_or_body_and_never_retries() {
    let sandbox = Sandbox::start().await.unwrap();
    let client = api_client(&sandbox);
    let created = client.create_order(&new_order()).await.unwrap();
    let number = created.order_number.expect("number from Location");
    assert_eq!(
        client.get_order(number).await.unwrap().order_number,
        Some(number)
    );

    sandbox.set_create_response(CreateResponse::Ok200WithOrder);
    let created = client.create_order(&new_order()).await.unwrap();
    assert_eq!(created.order_number, Some(number + 1));
    assert_eq!(
        created.order.unwrap().customer_reference.as_deref(),
        Some("ref-1")
    );

    for status in [500, 502, 504] {
        sandbox.inject(Fault::status("POST", "/v1/orders", status));
        let err = client.create_order(&new_order()).await.unwrap_err();
        assert!(
            matches!(err, PostFailure::Answered { status: s, .. } if s == status),
            "{err:?}"
        );
        assert!(matches!(classify(Err(err)), PostAnswer::Unknown(_)));
    }
    sandbox.inject(Fault::status("POST", "/v1/orders", 429));
    let err = client.create_order(&new_order()).await.unwrap_err();
    assert!(matches!(classify(Err(err)), PostAnswer::NotProcessed(_)));
    assert_eq!(sandbox.count("POST", "/v1/orders"), 6, "one POST per call");

    // A 401 proves nothing was created, but the POST is never sent again within the call: one
    // approval, one POST. The rejected access token is dropped, so the next call gets a new one.
    sandbox.expire_tokens();
    let err = client.create_order(&new_order()).await.unwrap_err();
    assert!(
        matches!(err, PostFailure::Answered { status: 401, .. }),
        "{err:?}"
    );
    assert!(matches!(classify(Err(err)), PostAnswer::NotProcessed(_)));
    assert_eq!(sandbox.count("POST", "/v1/orders"), 7);
    client.create_order(&new_order()).await.unwrap();
    assert_eq!(sandbox.count("POST", "/v1/orders"), 8);
}
