//! End to end over HTTP: the built binary serves `--http 127.0.0.1:0` against a sandbox the
//! test controls; rmcp's Streamable HTTP client and raw HTTP requests talk to it as clients do.

use std::collections::BTreeMap;

use onence_mcp::sandbox::Sandbox;
use serde_json::{Value, json};

use crate::common;
use crate::common::confirming;
use crate::common::net::{GatedProxy, HttpServer, TOKEN, stateless_call};
use crate::common::sse::{LegacySession, SseReader};

async fn sandbox() -> Sandbox {
    Sandbox::start().await.expect("start the sandbox")
}

fn order_args() -> Value {
    json!({
        "products": [{"product_id": 1001, "quantity": 5}, {"product_id": 1003, "quantity": 20}],
        "customer_reference": "fleet-http"
    })
}

#[tokio::test]
async fn streamable_http_serves_all_four_tools_and_the_confirmation_flow() {
    let sandbox = sandbox().await;
    let server = HttpServer::against(&sandbox.base_url(), &[], &[]).await;
    let session = server.client(None).await;

    let tools = session.client.list_all_tools().await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort();
    assert_eq!(names, common::ALL_TOOLS);

    let page = session
        .ok("list_orders", json!({"page_size": 4, "detail": "full"}))
        .await;
    assert_eq!(page["orders"].as_array().unwrap().len(), 4);
    assert_eq!(page["total_count"], sandbox.orders().len());
    let number = page["orders"][2]["order_number"].as_u64().unwrap();
    let order = session
        .ok("get_order", json!({"order_number": number}))
        .await;
    assert_eq!(order, page["orders"][2]);
    let missing = session.err("get_order", json!({"order_number": 77})).await;
    assert!(missing.contains("No order 77"), "{missing}");

    let before = sandbox.orders().len();
    let preview = session.ok("create_order", order_args()).await;
    assert_eq!(preview["status"], "confirmation_required");
    assert_eq!(common::posts(&sandbox), 0, "a preview posts nothing");
    let confirm = confirming(&order_args(), &preview);
    let placed = session.ok("create_order", confirm.clone()).await;
    assert_eq!(placed["status"], "placed");
    let number = placed["order_number"].as_u64().unwrap();
    assert_eq!(common::posts(&sandbox), 1);
    assert_eq!(sandbox.orders().len(), before + 1);
    let again = session.err("create_order", confirm).await;
    assert!(again.contains(&format!("placed order {number}")), "{again}");
    assert_eq!(common::posts(&sandbox), 1);
    session.client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_confirmation_token_from_one_session_is_refused_in_another() {
    let sandbox = sandbox().await;
    let server = HttpServer::against(&sandbox.base_url(), &[], &[]).await;
    let alice = server.client(None).await;
    let bob = server.client(None).await;
    let preview = alice.ok("create_order", order_args()).await;
    let confirm = confirming(&order_args(), &preview);
    let refused = bob.err("create_order", confirm.clone()).await;
    assert!(refused.contains("another MCP session"), "{refused}");
    assert_eq!(common::posts(&sandbox), 0);
    // The session it was issued to can still use it.
    let placed = alice.ok("create_order", confirm).await;
    assert_eq!(placed["status"], "placed");
    assert_eq!(common::posts(&sandbox), 1);
}

#[tokio::test]
async fn fifty_concurrent_sessions_share_one_upstream_token() {
    let sandbox = sandbox().await;
    // 200 reads at once: the client-side pacing would rightly spread them over minutes.
    let server = HttpServer::against(&sandbox.base_url(), &["--rate-limit", "off"], &[]).await;
    // The answers of one session calling one at a time are the reference.
    let numbers: Vec<u64> = sandbox
        .orders()
        .iter()
        .map(|o| o["order_number"].as_u64().unwrap())
        .collect();
    let reference = server.client(None).await;
    let mut expected = BTreeMap::new();
    for &number in &numbers {
        let order = reference
            .ok("get_order", json!({"order_number": number}))
            .await;
        assert_eq!(order["order_number"], number);
        expected.insert(number, order);
    }
    let server = &server;
    let sessions = (0..50).map(|i| {
        let expected = &expected;
        let numbers = &numbers;
        async move {
            let session = server.client(None).await;
            for round in 0..2 {
                let page = 1 + (i + round) % 3;
                let out = session
                    .ok("list_orders", json!({"page": page, "page_size": 10}))
                    .await;
                let listed: Vec<u64> = out["orders"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|o| o["order_number"].as_u64().unwrap())
                    .collect();
                let want: Vec<u64> = numbers
                    .iter()
                    .skip((page - 1) * 10)
                    .take(10)
                    .copied()
                    .collect();
                assert_eq!(listed, want, "session {i} page {page}");
                let number = numbers[(i * 7 + round) % numbers.len()];
                let order = session
                    .ok("get_order", json!({"order_number": number}))
                    .await;
                assert_eq!(order, expected[&number], "session {i} order {number}");
            }
            session.client.cancel().await.unwrap();
        }
    });
    futures::future::join_all(sessions).await;
    assert_eq!(
        sandbox.count("POST", "/oauth/token"),
        1,
        "one token for all sessions"
    );
    assert_eq!(
        sandbox.count("GET", "/v1/orders"),
        numbers.len() + 50 * 4,
        "every call reached 1NCE once"
    );
}

#[tokio::test]
async fn bearer_token_host_and_origin_are_enforced() {
    let sandbox = sandbox().await;
    let server = HttpServer::against(
        &sandbox.base_url(),
        &["--allowed-origin", "https://agent.example.com"],
        &[("ONCE_MCP_HTTP_TOKEN", TOKEN), ("RUST_LOG", "trace")],
    )
    .await;
    let http = reqwest::Client::new();
    let initialize = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}});
    let post = |auth: Option<&str>| {
        let mut request = http
            .post(server.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .json(&initialize);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request
    };

    let missing = post(None).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    assert!(
        missing.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let wrong = post(Some("Bearer not-the-token-at-all-0000"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let sse = http.get(server.url("/sse")).send().await.unwrap();
    assert_eq!(sse.status(), 401, "the legacy endpoints are guarded too");

    let bearer = format!("Bearer {TOKEN}");
    let foreign_origin = post(Some(&bearer))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign_origin.status(), 403);
    let foreign_host = post(Some(&bearer))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign_host.status(), 403);
    let allowed_origin = post(Some(&bearer))
        .header("origin", "https://agent.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed_origin.status(), 200);

    // Health needs no token and says nothing about the account.
    let health = http.get(server.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<Value>().await.unwrap(),
        json!({"status": "ok"})
    );

    // The right token works end to end.
    let session = server.client(Some(TOKEN)).await;
    let page = session.ok("list_orders", json!({"page_size": 1})).await;
    assert_eq!(page["orders"].as_array().unwrap().len(), 1);
    session.client.cancel().await.unwrap();

    // Everything the server wrote up to its exit, so a leak in the last lines counts too.
    let stderr = server.stop().await;
    assert!(stderr.contains("bearer token required"), "{stderr}");
    assert!(
        !stderr.contains(TOKEN),
        "the bearer token leaked into the log"
    );
    assert!(
        !stderr.contains(&TOKEN[..16]),
        "part of the bearer token leaked"
    );
}

/// What a browser does for a web client on a listed origin: a preflight without the token, then
/// the session's POSTs, each answer readable only with CORS headers naming that origin.
#[tokio::test]
async fn a_listed_origin_can_run_a_session_from_a_browser() {
    const WEB_APP: &str = "https://agent.example.com";
    let sandbox = sandbox().await;
    let server = HttpServer::against(
        &sandbox.base_url(),
        &["--allowed-origin", WEB_APP],
        &[("ONCE_MCP_HTTP_TOKEN", TOKEN)],
    )
    .await;
    let http = reqwest::Client::new();
    let preflight = |origin: &str| {
        http.request(reqwest::Method::OPTIONS, server.url("/mcp"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,mcp-protocol-version,mcp-session-id",
            )
            // A public site calling a loopback server: Chromium's Private Network Access.
            .header("access-control-request-private-network", "true")
            .send()
    };
    let allowed_origin = |r: &reqwest::Response| {
        r.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned())
    };

    let ok = preflight(WEB_APP).await.unwrap();
    assert!(ok.status().is_success(), "{}", ok.status());
    assert_eq!(allowed_origin(&ok).as_deref(), Some(WEB_APP));
    let headers = ok.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap();
    assert!(headers.contains("authorization") && headers.contains("mcp-session-id"));
    assert_eq!(ok.headers()["access-control-allow-private-network"], "true");
    let foreign = preflight("https://evil.example").await.unwrap();
    assert_eq!(allowed_origin(&foreign), None);
    assert!(
        foreign
            .headers()
            .get("access-control-allow-private-network")
            .is_none()
    );

    let post = |message: Value, session: Option<&str>| {
        let mut request = http
            .post(server.url("/mcp"))
            .header("origin", WEB_APP)
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .json(&message);
        if let Some(id) = session {
            request = request.header("mcp-session-id", id);
        }
        request.send()
    };
    let init = post(
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"web","version":"0"}}}),
        None,
    )
    .await
    .unwrap();
    assert_eq!(init.status(), 200);
    assert_eq!(allowed_origin(&init).as_deref(), Some(WEB_APP));
    let exposed = init.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(exposed.contains("mcp-session-id"), "{exposed}");
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = init.text().await.unwrap();
    let notified = post(
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        Some(&session),
    )
    .await
    .unwrap();
    assert_eq!(notified.status(), 202);

    let call = post(
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call",
               "params":{"name":"list_orders","arguments":{"page_size":2}}}),
        Some(&session),
    )
    .await
    .unwrap();
    assert_eq!(call.status(), 200);
    assert_eq!(allowed_origin(&call).as_deref(), Some(WEB_APP));
    let mut events = SseReader::new(call);
    let answer: Value = loop {
        let event = events.next().await.expect("the answer to the call");
        if let Ok(message) = serde_json::from_str::<Value>(&event.data)
            && message["id"] == 2
        {
            break message;
        }
    };
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    assert_eq!(
        answer["result"]["structuredContent"]["orders"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // The preflight is answered without the token; a real request without it is still refused.
    let no_token = http
        .post(server.url("/mcp"))
        .header("origin", WEB_APP)
        .json(&json!({"jsonrpc":"2.0","id":3,"method":"ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
}

/// A POST to `path` whose headers announce a JSON body of `length` bytes, none of which is sent;
/// all the server answers before it closes the connection.
async fn announce_body(server: &HttpServer, path: &str, length: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = server.base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(host).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json, text/event-stream\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(common::PATIENCE, tcp.read_to_end(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("{path}: the server waited for the body it was told of"))
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn status_codes_follow_the_transport_spec() {
    let sandbox = sandbox().await;
    let server = HttpServer::against(&sandbox.base_url(), &[], &[]).await;
    let http = reqwest::Client::new();
    let list = json!({"jsonrpc":"2.0","id":2,"method":"tools/list"});

    let unknown_session = http
        .post(server.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", "no-such-session")
        .json(&list)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_session.status(), 404);
    let unknown_sse = http
        .post(server.url("/message?sessionId=0123456789abcdef"))
        .json(&list)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_sse.status(), 404);
    let put = http.put(server.url("/mcp")).send().await.unwrap();
    assert_eq!(put.status(), 405);
    let post_sse = http.post(server.url("/sse")).send().await.unwrap();
    assert_eq!(post_sse.status(), 405);
    let not_acceptable = http
        .post(server.url("/mcp"))
        .header("accept", "text/html")
        .json(&list)
        .send()
        .await
        .unwrap();
    assert_eq!(not_acceptable.status(), 406);
    let sse_html = http
        .get(server.url("/sse"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(sse_html.status(), 406);
    // A body over the 1 MiB limit is refused from its Content-Length, before a byte of it is
    // read, and the connection closed. The request announces one and sends none of it: a client
    // still writing a whole body when the answer came broke off now and then with EPIPE.
    for path in ["/mcp", "/message?sessionId=0123456789abcdef"] {
        let answer = announce_body(&server, path, 1024 * 1024 + 1024).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
    }
    assert!(sandbox.requests().is_empty(), "nothing reached 1NCE");
}

#[tokio::test]
async fn a_non_loopback_address_without_a_token_is_refused() {
    let output = common::command(
        &["--sandbox", "--http", "0.0.0.0:0", "--allowed-host", "*"],
        &[],
    )
    .stdin(std::process::Stdio::null())
    .output()
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("without a bearer token") && stderr.contains("ONCE_MCP_HTTP_TOKEN"),
        "{stderr}"
    );
}

/// A static token served off loopback crosses the network in clear unless TLS is in front: the
/// server says so once at start-up, naming the fix, unless the operator says a TLS proxy is in
/// front (flag or variable); on loopback there is nothing to say.
#[tokio::test]
async fn a_static_token_off_loopback_is_warned_about_unless_tls_is_in_front() {
    const WARNING: &str = "with a static bearer token over plain HTTP";
    let token = ("ONCE_MCP_HTTP_TOKEN", TOKEN);
    let any_host: &[&str] = &["--sandbox", "--allowed-host", "localhost"];
    type Case<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>, bool);
    let cases: [Case; 4] = [
        ("0.0.0.0:0", any_host.to_vec(), vec![token], true),
        (
            "0.0.0.0:0",
            [any_host, &["--behind-tls-proxy"][..]].concat(),
            vec![token],
            false,
        ),
        (
            "0.0.0.0:0",
            any_host.to_vec(),
            vec![token, ("ONCE_BEHIND_TLS_PROXY", "true")],
            false,
        ),
        ("127.0.0.1:0", vec!["--sandbox"], vec![token], false),
    ];
    for (addr, args, env, warned) in cases {
        let server = HttpServer::spawn_at(addr, &args, &env).await;
        let stderr = server.stop().await;
        let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(WARNING)).collect();
        assert_eq!(
            lines.len(),
            usize::from(warned),
            "{addr} {args:?} {env:?}: {stderr}"
        );
        if let Some(line) = lines.first() {
            assert!(line.contains("WARN"), "{line}");
            for fix in [
                "in clear",
                "TLS",
                "docs/operations.md",
                "--behind-tls-proxy",
            ] {
                assert!(line.contains(fix), "{fix}: {line}");
            }
        }
        assert!(!stderr.contains(TOKEN), "{stderr}");
    }
}

#[tokio::test]
async fn shutdown_lets_calls_in_flight_finish_then_exits_zero() {
    let sandbox = sandbox().await;
    let proxy = GatedProxy::start(&sandbox.base_url()).await;
    let mut server = HttpServer::against(&proxy.url, &[], &[("RUST_LOG", "info")]).await;
    let alice = server.client(None).await;
    let bob = server.client(None).await;
    // The preview reads the product catalogue (cached afterwards): let it through, then hold
    // everything again.
    proxy.open();
    let preview = alice.ok("create_order", order_args()).await;
    proxy.close();
    let confirm = confirming(&order_args(), &preview);
    let before = sandbox.orders().len();
    let seen = proxy.arrived();

    let calls = async {
        tokio::join!(
            alice.ok("list_orders", json!({"page": 2, "page_size": 10})),
            bob.ok("get_order", json!({"order_number": 2000000002u64})),
            alice.ok("create_order", confirm),
        )
    };
    let interrupt = async {
        proxy.wait_arrived(seen + 3).await;
        server.terminate();
        server.wait_for_stderr("SIGTERM: shutting down").await;
        proxy.open();
    };
    let ((page, order, placed), ()) = tokio::join!(calls, interrupt);
    assert_eq!(page["page"], 2);
    assert_eq!(page["orders"].as_array().unwrap().len(), 10);
    assert_eq!(order["order_number"], 2000000002u64);
    assert_eq!(placed["status"], "placed");
    assert_eq!(sandbox.orders().len(), before + 1, "the order reached 1NCE");
    assert_eq!(server.exit_code().await, Some(0), "{}", server.stderr());
}

#[tokio::test]
async fn a_cancelled_call_stops_its_upstream_request_and_the_session_goes_on() {
    let sandbox = sandbox().await;
    let proxy = GatedProxy::start(&sandbox.base_url()).await;
    let server = HttpServer::against(&proxy.url, &[], &[]).await;
    let session = server.client(None).await;
    // rmcp's client sends notifications/cancelled when a call's future is dropped.
    tokio::select! {
        result = session.call("get_order", json!({"order_number": 2000000003u64})) => {
            panic!("answered while 1NCE was held: {result:?}")
        }
        () = proxy.wait_arrived(1) => {}
    }
    proxy.wait_abandoned(1).await;
    proxy.open();
    let order = session
        .ok("get_order", json!({"order_number": 2000000003u64}))
        .await;
    assert_eq!(order["order_number"], 2000000003u64);
}

#[tokio::test]
async fn stateless_requests_can_confirm_but_sessions_cannot_use_their_tokens() {
    let sandbox = sandbox().await;
    let server = HttpServer::against(&sandbox.base_url(), &[], &[]).await;
    let args = json!({"products": [{"product_id": 1001, "quantity": 2}]});
    let preview = stateless_call(&server, "create_order", args.clone()).await;
    let confirm = confirming(&args, &preview["structuredContent"]);

    // A session cannot redeem a token previewed outside it.
    let session = server.client(None).await;
    let refused = session.err("create_order", confirm.clone()).await;
    assert!(refused.contains("another MCP session"), "{refused}");
    assert_eq!(common::posts(&sandbox), 0);

    // A later stateless request can: there is no session to bind it to.
    let placed = stateless_call(&server, "create_order", confirm).await;
    assert_eq!(placed["structuredContent"]["status"], "placed", "{placed}");
    assert_eq!(common::posts(&sandbox), 1);
}

/// `{"quantity":1,"quantity":900}` is 1 to one JSON parser and 900 to the next: over Streamable
/// HTTP and legacy SSE alike it is refused as stdio refuses it (400 with JSON-RPC -32600 and the
/// request's id), at any depth, and nothing is previewed; the same call with the key once is
/// served.
#[tokio::test]
async fn a_key_twice_is_refused_over_both_http_transports_as_on_stdio() {
    let sandbox = sandbox().await;
    let server = HttpServer::against(&sandbox.base_url(), &[], &[]).await;
    let http = reqwest::Client::new();
    // `meta`: what a 2026-07-28 stateless request carries (as `stateless_call` sends it).
    let call = |id: &str, meta: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":"{id}","method":"tools/call","params":{{{meta}"name":"create_order","arguments":{{"products":[{{"product_id":1001,"quantity":1,"quantity":900}}]}}}}}}"#
        )
    };
    let stateless = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"stateless","version":"0"}},"#;
    let refused =
        |status: reqwest::StatusCode, content_type: Option<&str>, body: &str, id: &str| {
            assert_eq!(status, 400, "{body}");
            assert_eq!(content_type, Some("application/json"), "{body}");
            let answer: Value = serde_json::from_str(body).expect("a JSON-RPC error");
            assert_eq!(answer["jsonrpc"], "2.0", "{answer}");
            assert_eq!(answer["id"], id, "{answer}");
            assert_eq!(answer["error"]["code"], -32600, "{answer}");
            let message = answer["error"]["message"].as_str().unwrap();
            assert!(
                message.contains(r#""quantity""#) && message.contains("send each key once"),
                "{message}"
            );
        };

    // Streamable HTTP, stateless (as `stateless_call` sends it) and within a session.
    let response = http
        .post(server.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "create_order")
        .body(call("streamable", stateless))
        .send()
        .await
        .unwrap();
    let (status, content_type) = (
        response.status(),
        response.headers().get("content-type").cloned(),
    );
    let body = response.text().await.unwrap();
    refused(
        status,
        content_type.as_ref().and_then(|v| v.to_str().ok()),
        &body,
        "streamable",
    );
    let initialize = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}});
    let opened = http
        .post(server.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&initialize)
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 200);
    let session_id = opened.headers()["mcp-session-id"].clone();
    drop(opened);
    let response = http
        .post(server.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-session-id", session_id)
        .header("mcp-protocol-version", "2025-06-18")
        .body(call("in-session", ""))
        .send()
        .await
        .unwrap();
    let (status, content_type) = (
        response.status(),
        response.headers().get("content-type").cloned(),
    );
    let body = response.text().await.unwrap();
    refused(
        status,
        content_type.as_ref().and_then(|v| v.to_str().ok()),
        &body,
        "in-session",
    );

    // Legacy SSE: refused on the POST, and nothing comes on the stream for it.
    let mut legacy = LegacySession::open(&server, None).await;
    legacy.initialize().await;
    let response = legacy
        .http
        .post(&legacy.post_url)
        .header("content-type", "application/json")
        .body(call("legacy", ""))
        .send()
        .await
        .unwrap();
    let (status, content_type) = (
        response.status(),
        response.headers().get("content-type").cloned(),
    );
    let body = response.text().await.unwrap();
    refused(
        status,
        content_type.as_ref().and_then(|v| v.to_str().ok()),
        &body,
        "legacy",
    );
    let pong = legacy.request(9, "ping", json!({})).await;
    assert_eq!(pong["result"], json!({}), "{pong}");

    // Deeper still, and in a notification or a batch: refused too.
    for body in [
        r#"{"jsonrpc":"2.0","id":"deep","method":"ping","params":{"_meta":{"a":[{"b":{"c":1,"c":2}}]}}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized","method":"x"}"#,
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping","id":2}]"#,
    ] {
        let response = http
            .post(server.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"]["code"], -32600, "{body}: {answer}");
    }

    // Nothing was previewed, let alone ordered; the key once is served.
    assert_eq!(common::posts(&sandbox), 0);
    let preview = stateless_call(
        &server,
        "create_order",
        json!({"products": [{"product_id": 1001, "quantity": 1}]}),
    )
    .await;
    assert!(
        preview["structuredContent"]["confirmation_token"].is_string(),
        "{preview}"
    );
    let stderr = server.stop().await;
    assert!(stderr.contains("a key twice in one object"), "{stderr}");
}

/// Settings that would open a hole or read without end are refused at start-up with exit
/// status 2 and a message naming the fix, and nothing secret is echoed.
#[tokio::test]
async fn dangerous_settings_are_refused_at_start_up() {
    let dir = common::temp_dir("settings");
    let token_file = dir.join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let token_path = token_file.to_str().unwrap();
    /// Arguments, environment, and what the refusal must say.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 7] = [
        (&["--allowed-origin", "null"], &[], "\"null\""),
        (
            &["--allowed-origin", "https://*.example.com"],
            &[],
            "wildcard",
        ),
        (&["--allowed-host", "a b"], &[], "is not a host name"),
        (
            &["--http-token-file", "/dev/zero"],
            &[],
            "not a regular file",
        ),
        // Readable by others.
        (&["--http-token-file", token_path], &[], "chmod 600"),
        (
            &["--api-url", "http://user:s3cret-pw@127.0.0.1:9"],
            &[("ONCE_CLIENT_ID", "id"), ("ONCE_CLIENT_SECRET", "secret")],
            "user info",
        ),
        (
            &["--session-idle-timeout", "0"],
            &[],
            "--session-idle-timeout",
        ),
    ];
    for (args, env, needle) in cases {
        let mut all = vec!["--http", "127.0.0.1:0"];
        if env.is_empty() {
            all.push("--sandbox");
        }
        all.extend_from_slice(args);
        let output = common::command(&all, env)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("s3cret-pw"), "{stderr}");
        assert!(!stderr.contains(TOKEN), "{stderr}");
    }
}
