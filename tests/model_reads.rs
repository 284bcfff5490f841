//! What the model reads, in both forms: Claude Code and VS Code hand it `structuredContent` and
//! drop the text; Claude Desktop, claude.ai and ChatGPT hand it the text. For each tool, a fixed
//! table of questions a person asks, each answered from the sandbox's own data, must be
//! answerable from the text alone and from `structuredContent` alone. And the default answers
//! stay within their byte budgets (sizes are data, not timing: the sandbox's orders are fixed).

use onence_mcp::sandbox::Sandbox;
use rmcp::model::CallToolResult;
use serde_json::{Value, json};

use crate::common::{self, spawn_against};

/// Most bytes of the default `list_orders` page (10 orders) as compact JSON.
const LIST_STRUCTURED_BUDGET: usize = 4_000;
/// Most bytes of the default `list_orders` page as text.
const LIST_TEXT_BUDGET: usize = 2_000;

/// A question about one order, and the words that answer it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Question {
    Status,
    Date,
    Amount,
    ProductLines,
    ShipToCity,
    SimCount,
    Iccids,
    FullAddress,
}

/// The words that answer `question` about `order` (as the sandbox holds it), in the text and in
/// compact JSON.
fn answers(question: Question, order: &Value) -> Vec<(String, String)> {
    let s = |v: &Value| v.as_str().unwrap().to_owned();
    let quoted = |v: &Value| serde_json::to_string(v).unwrap();
    match question {
        Question::Status => vec![(s(&order["order_status"]), quoted(&order["order_status"]))],
        Question::Date => vec![(s(&order["order_date"]), quoted(&order["order_date"]))],
        Question::Amount => vec![
            (
                format!("{} {}", s(&order["invoice_amount"]), s(&order["currency"])),
                quoted(&order["invoice_amount"]),
            ),
            (s(&order["currency"]), quoted(&order["currency"])),
        ],
        Question::ProductLines => order["products"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    format!("{} × product {}", p["quantity"], p["product_id"]),
                    format!(
                        r#"{{"product_id":{},"quantity":{}}}"#,
                        p["product_id"], p["quantity"]
                    ),
                )
            })
            .collect(),
        Question::ShipToCity => {
            let city = &order["shipping_address"]["city"];
            vec![(s(city), format!(r#""city":{}"#, quoted(city)))]
        }
        Question::SimCount => {
            let n = order["sims"].as_array().unwrap().len();
            if n == 0 {
                return Vec::new();
            }
            vec![(format!("{n} SIM(s)"), format!(r#""sim_count":{n}"#))]
        }
        Question::Iccids => order["sims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|sim| (s(&sim["iccid"]), quoted(&sim["iccid"])))
            .collect(),
        Question::FullAddress => {
            let a = &order["shipping_address"];
            ["street", "house_number", "zip", "company"]
                .iter()
                .map(|k| (s(&a[k]), quoted(&a[k])))
                .collect()
        }
    }
}

const LIST_SUMMARY: &[Question] = &[
    Question::Status,
    Question::Date,
    Question::Amount,
    Question::ProductLines,
    Question::ShipToCity,
    Question::SimCount,
];
const WHOLE_ORDER: &[Question] = &[
    Question::Status,
    Question::Date,
    Question::Amount,
    Question::ProductLines,
    Question::ShipToCity,
    Question::Iccids,
    Question::FullAddress,
];

/// The text of one order in an answer: from its "order N" to the next order's line.
fn text_of_order(text: &str, number: u64) -> String {
    let start = text
        .find(&format!("order {number}"))
        .unwrap_or_else(|| panic!("order {number} is in the text:\n{text}"));
    let rest = &text[start..];
    let end = rest.find("\n- ").unwrap_or(rest.len());
    rest[..end].to_owned()
}

/// One order of a structured answer, as compact JSON.
fn json_of_order(structured: &Value, number: u64) -> String {
    let order = structured["orders"]
        .as_array()
        .map(|orders| {
            orders
                .iter()
                .find(|o| o["order_number"] == number)
                .unwrap_or_else(|| panic!("order {number} is in {structured}"))
        })
        .unwrap_or(structured);
    serde_json::to_string(order).unwrap()
}

/// Asserts that every question about every order in `numbers` is answered in both forms.
fn assert_answered(
    what: &str,
    result: &CallToolResult,
    numbers: &[u64],
    questions: &[Question],
    sandbox_orders: &[Value],
) {
    let text = common::text(result);
    let structured = result.structured_content.clone().unwrap();
    assert!(!numbers.is_empty(), "{what}: orders to ask about");
    for &number in numbers {
        let order = sandbox_orders
            .iter()
            .find(|o| o["order_number"] == number)
            .unwrap();
        let in_text = text_of_order(&text, number);
        let in_json = json_of_order(&structured, number);
        for &question in questions {
            for (words, json) in answers(question, order) {
                assert!(
                    in_text.contains(&words),
                    "{what}, order {number}, {question:?}: the text says {words:?}:\n{in_text}"
                );
                assert!(
                    in_json.contains(&json),
                    "{what}, order {number}, {question:?}: structuredContent says {json}:\n{in_json}"
                );
            }
        }
    }
}

fn numbers(structured: &Value) -> Vec<u64> {
    structured["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_number"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn both_forms_answer_the_same_questions() {
    let sandbox = Sandbox::start().await.unwrap();
    let all = sandbox.orders();
    // Many calls in a row: no pacing, so no "waited for the rate limit" note in the texts.
    let server = spawn_against(&sandbox, &["--rate-limit", "off"]).await;

    // list_orders, default: a summary of each order, and the page's totals.
    let page = server.call("list_orders", json!({})).await;
    let structured = page.structured_content.clone().unwrap();
    let listed = numbers(&structured);
    assert_eq!(listed.len(), 10);
    assert_answered("list_orders", &page, &listed, LIST_SUMMARY, &all);
    let text = common::text(&page);
    let total = all.len();
    assert!(
        text.contains(&format!("({total} orders in total)")),
        "{text}"
    );
    assert_eq!(structured["total_count"], total);
    assert!(text.contains("More orders follow"), "{text}");
    assert_eq!(structured["has_more"], true);
    assert_eq!(structured["detail"], "summary");
    // ICCIDs are not in a summary: both forms say where they are.
    assert!(text.contains("get_order"), "{text}");
    assert!(
        structured["orders"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o.get("sims").is_none() && o.get("sim_count").is_some())
    );

    // The last page says there is none after it.
    let last = server.call("list_orders", json!({"page": 3})).await;
    assert!(common::text(&last).contains("No further pages."));
    assert_eq!(last.structured_content.as_ref().unwrap()["has_more"], false);

    // list_orders, full: every order whole.
    let full = server
        .call("list_orders", json!({"page_size": 4, "detail": "full"}))
        .await;
    let listed = numbers(full.structured_content.as_ref().unwrap());
    assert_answered("list_orders full", &full, &listed, WHOLE_ORDER, &all);

    // find_orders, default and full.
    let found = server
        .call("find_orders", json!({"status": "completed", "limit": 5}))
        .await;
    let matched = numbers(found.structured_content.as_ref().unwrap());
    assert_answered("find_orders", &found, &matched, LIST_SUMMARY, &all);
    let found = server
        .call(
            "find_orders",
            json!({"order_type": "first_order", "detail": "full"}),
        )
        .await;
    let matched = numbers(found.structured_content.as_ref().unwrap());
    assert_answered("find_orders full", &found, &matched, WHOLE_ORDER, &all);

    // get_order: one order, whole, in both forms; the text names the products too.
    for number in [2000000001u64, 2000000022] {
        let one = server
            .call("get_order", json!({"order_number": number}))
            .await;
        assert_answered("get_order", &one, &[number], WHOLE_ORDER, &all);
        let text = common::text(&one);
        assert!(text.contains("(1NCE "), "product names in {text}");
    }

    // The placed answer of create_order: the new order whole, as get_order has it.
    let args =
        json!({"products": [{"product_id": 1001, "quantity": 2}], "customer_reference": "fleet-7"});
    let placed = server.preview_and_confirm(&args).await;
    let text = common::text(&placed);
    let number = placed.structured_content.as_ref().unwrap()["order_number"]
        .as_u64()
        .unwrap();
    let looked_up = server
        .call("get_order", json!({"order_number": number}))
        .await;
    assert!(text.starts_with("ORDER PLACED: "), "{text}");
    assert!(
        text.contains(&common::text(&looked_up)),
        "the placed answer holds the order's lines:\n{text}"
    );
    assert!(
        text.contains("ref \"fleet-7\"") && text.contains("ship to: "),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_default_list_stays_within_its_budget() {
    let sandbox = Sandbox::start().await.unwrap();
    let server = spawn_against(&sandbox, &[]).await;
    let page = server.call("list_orders", json!({})).await;
    let structured = serde_json::to_string(page.structured_content.as_ref().unwrap()).unwrap();
    let text = common::text(&page);
    assert!(
        structured.len() <= LIST_STRUCTURED_BUDGET,
        "structuredContent of the first page is {} bytes, over {LIST_STRUCTURED_BUDGET}",
        structured.len()
    );
    assert!(
        text.len() <= LIST_TEXT_BUDGET,
        "the text of the first page is {} bytes, over {LIST_TEXT_BUDGET}",
        text.len()
    );
    // "full" is everything, and so larger: the budget is the default's.
    let full = server.call("list_orders", json!({"detail": "full"})).await;
    let full_size = serde_json::to_string(full.structured_content.as_ref().unwrap())
        .unwrap()
        .len();
    assert!(full_size > 2 * structured.len(), "{full_size}");
    server.stop().await;
}

/// Product names are a courtesy: a catalogue that 1NCE cannot send holds `get_order` up for a
/// bounded moment at most, and the order is answered with product ids.
#[tokio::test]
async fn a_stuck_catalogue_costs_only_the_names() {
    let sandbox = Sandbox::start().await.unwrap();
    let server = spawn_against(&sandbox, &["--rate-limit", "off"]).await;
    sandbox.inject(onence_mcp::sandbox::Fault::delay(
        "GET",
        "/v1/products",
        std::time::Duration::from_secs(60),
    ));
    let started = std::time::Instant::now();
    let one = server
        .call("get_order", json!({"order_number": 2000000001u64}))
        .await;
    let text = common::text(&one);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_ne!(one.is_error, Some(true), "{text}");
    assert!(text.contains("products: 10 × product 1001\n"), "{text}");
    assert!(text.contains("SIMs (5): "), "{text}");
    server.stop().await;
}
