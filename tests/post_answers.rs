//! Every answer 1NCE (or anything between it and us) may give to the order POST, against the
//! built binary: what the agent is told, whether the token is spent, and that confirming again
//! never sends a second POST where the first may have created an order. Exactly one POST per
//! confirming call, counted at the sandbox.

use std::collections::BTreeSet;
use std::time::Duration;

use onence_mcp::sandbox::{CreateResponse, Fault, Sandbox};
use serde_json::{Value, json};

use crate::common::{Server, confirming, eventually, posts, spawn_against, text};

/// What an answer must mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Means {
    /// The order exists; the token is spent.
    Created,
    /// 1NCE processed nothing; the token stays usable.
    NotProcessed,
    /// The order may exist; the token is spent, the agent is told to look, never to reorder.
    Unknown,
}

struct Case {
    name: String,
    fault: Option<Fault>,
    /// Whether the sandbox creates the order behind the answer.
    creates: bool,
    means: Means,
    create_response: CreateResponse,
}

fn post(status: u16) -> Fault {
    Fault::status("POST", "/v1/orders", status)
}

fn case(name: impl Into<String>, fault: Fault, means: Means) -> Case {
    let creates = fault.after_handling;
    Case {
        name: name.into(),
        fault: Some(fault),
        creates,
        means,
        create_response: CreateResponse::Created201,
    }
}

fn cases() -> Vec<Case> {
    let onece_error = json!({"statusCode": 400, "errorCode": "BodyValidationError", "message": "quantity is invalid"});
    let mut cases = vec![
        Case {
            name: "201 Created".into(),
            fault: None,
            creates: true,
            means: Means::Created,
            create_response: CreateResponse::Created201,
        },
        Case {
            name: "200 OK with the order".into(),
            fault: None,
            creates: true,
            means: Means::Created,
            create_response: CreateResponse::Ok200WithOrder,
        },
        case(
            "400 with 1NCE's validation error",
            post(400).with_json(&onece_error),
            Means::NotProcessed,
        ),
        case("400 without a body", post(400), Means::Unknown),
        case(
            "400 from a proxy, after creating",
            post(400)
                .with_body("<html>Bad Request</html>")
                .after_handling(),
            Means::Unknown,
        ),
        case("401", post(401), Means::NotProcessed),
        case("403", post(403), Means::NotProcessed),
        case(
            "429",
            post(429).with_header("Retry-After", "1"),
            Means::NotProcessed,
        ),
        case(
            "dropped before handling",
            Fault::drop_connection("POST", "/v1/orders"),
            Means::Unknown,
        ),
        case(
            "dropped after creating",
            Fault::drop_connection("POST", "/v1/orders").after_handling(),
            Means::Unknown,
        ),
        case(
            "no answer in time, created later",
            Fault::delay("POST", "/v1/orders", Duration::from_millis(2500)),
            Means::Unknown,
        ),
    ];
    for status in [
        202, 204, 301, 302, 303, 304, 307, 308, 404, 405, 409, 410, 422, 500, 502, 503, 504,
    ] {
        let fault = || {
            let f = post(status);
            if (300..400).contains(&status) {
                f.with_header("Location", "/v1/orders/2000000999")
            } else {
                f
            }
        };
        cases.push(case(format!("{status}"), fault(), Means::Unknown));
        cases.push(case(
            format!("created, then {status}"),
            fault().after_handling(),
            Means::Unknown,
        ));
    }
    cases
}

fn order_numbers(sandbox: &Sandbox) -> BTreeSet<u64> {
    sandbox
        .orders()
        .iter()
        .filter_map(|o| o["order_number"].as_u64())
        .collect()
}

/// Confirms with `confirm` (the arguments that confirm a preview): whether it was a tool error,
/// what the agent is told, and the structured answer.
async fn confirm(server: &Server, confirm: &Value) -> (bool, String, Option<Value>) {
    let result = server.call("create_order", confirm.clone()).await;
    (
        result.is_error == Some(true),
        text(&result),
        result.structured_content,
    )
}

#[tokio::test]
async fn every_answer_to_the_order_post_is_judged_and_never_ordered_twice() {
    let sandbox = Sandbox::start().await.unwrap();
    let server = spawn_against(
        &sandbox,
        &["--rate-limit", "off", "--request-timeout", "1s"],
    )
    .await;
    for (i, case) in cases().into_iter().enumerate() {
        let name = &case.name;
        // A quantity of its own, so the search for a lost answer finds only this case's order.
        let args = json!({"products": [{"product_id": 1001, "quantity": 100 + i}]});
        let preview = server.ok("create_order", args.clone()).await;
        let approved = confirming(&args, &preview);
        sandbox.set_create_response(case.create_response);
        if let Some(fault) = case.fault.clone() {
            sandbox.inject(fault);
        }
        let before_posts = posts(&sandbox);
        let before = order_numbers(&sandbox);

        let (is_error, said, structured) = confirm(&server, &approved).await;
        assert_eq!(
            posts(&sandbox),
            before_posts + 1,
            "{name}: one POST per confirmation"
        );
        // A slow 1NCE creates the order after the client gave up waiting: the first answer
        // cannot know it, so it must not say "not placed", and the order must appear later.
        let slow = case.fault.as_ref().is_some_and(|f| !f.delay.is_zero());
        if slow {
            assert!(said.contains("look again after"), "{name}: {said}");
            eventually("the slow 1NCE's order", || {
                order_numbers(&sandbox).len() > before.len()
            })
            .await;
        }
        let created: Vec<u64> = order_numbers(&sandbox)
            .difference(&before)
            .copied()
            .collect();
        match case.means {
            Means::Created => {
                assert!(!is_error, "{name}: {said}");
                assert_eq!(structured.unwrap()["status"], "placed", "{name}");
                assert_eq!(created.len(), 1, "{name}");
                assert!(said.contains(&created[0].to_string()), "{name}: {said}");
            }
            Means::NotProcessed => {
                assert!(is_error, "{name}: {said}");
                assert!(
                    said.contains("1NCE did not place the order"),
                    "{name}: {said}"
                );
                assert!(said.contains("stays valid"), "{name}: {said}");
                assert!(created.is_empty(), "{name}");
            }
            Means::Unknown => {
                assert!(is_error, "{name}: {said}");
                assert!(
                    said.starts_with("OUTCOME UNKNOWN: do not order again"),
                    "{name}: {said}"
                );
                assert!(!said.contains("Nothing was ordered"), "{name}: {said}");
                assert!(!said.contains("most likely not placed"), "{name}: {said}");
                assert!(!said.contains(".."), "{name}: {said}");
                if case.creates || slow {
                    assert_eq!(created.len(), 1, "{name}");
                }
                if case.creates {
                    assert!(
                        said.contains(&format!("Found it: order {}", created[0])),
                        "{name}: {said}"
                    );
                } else if case.fault.as_ref().is_some_and(|f| f.delay.is_zero()) {
                    assert!(said.contains("look again after"), "{name}: {said}");
                }
            }
        }

        // Confirming again: only a token that provably ordered nothing may post again.
        let before_posts = posts(&sandbox);
        let (again_error, again, _) = confirm(&server, &approved).await;
        match case.means {
            Means::Created => {
                assert!(again_error, "{name}: {again}");
                assert!(
                    again.contains("already used and placed order"),
                    "{name}: {again}"
                );
                assert_eq!(posts(&sandbox), before_posts, "{name}: no second POST");
            }
            Means::NotProcessed => {
                assert!(
                    !again_error,
                    "{name}: the same approved order goes through: {again}"
                );
                assert_eq!(posts(&sandbox), before_posts + 1, "{name}");
            }
            Means::Unknown => {
                assert!(again_error, "{name}: {again}");
                assert!(
                    again.starts_with("OUTCOME UNKNOWN: nothing was sent now"),
                    "{name}: {again}"
                );
                if slow {
                    // Looking again finds the order that appeared late.
                    assert!(again.contains("Found it: order"), "{name}: {again}");
                }
                assert_eq!(posts(&sandbox), before_posts, "{name}: no second POST");
            }
        }
        sandbox.set_create_response(CreateResponse::Created201);
    }
    server.stop().await;
}

#[tokio::test]
async fn an_order_whose_access_token_cannot_be_had_is_never_sent_and_its_token_stays_usable() {
    let sandbox = Sandbox::start().await.unwrap();
    let server = spawn_against(&sandbox, &["--rate-limit", "off", "--max-retries", "0"]).await;
    // Access tokens that live 20 s: less than the request timeout plus a margin, so the order
    // POST must renew first. The current one is revoked so the preview gets a short-lived one.
    sandbox.set_token_lifetime(Duration::from_secs(20));
    sandbox.expire_tokens();
    let args = json!({"products": [{"product_id": 1001, "quantity": 7}]});
    let preview = server.ok("create_order", args.clone()).await;
    let approved = confirming(&args, &preview);
    sandbox.inject(Fault::status("POST", "/oauth/token", 503));
    let (is_error, said, _) = confirm(&server, &approved).await;
    assert!(is_error, "{said}");
    assert!(said.contains("1NCE did not place the order"), "{said}");
    assert!(said.contains("stays valid"), "{said}");
    assert_eq!(posts(&sandbox), 0, "nothing left this machine");
    let (is_error, said, _) = confirm(&server, &approved).await;
    assert!(
        !is_error,
        "the same approval goes through once a token can be had: {said}"
    );
    assert_eq!(posts(&sandbox), 1);
    server.stop().await;
}
