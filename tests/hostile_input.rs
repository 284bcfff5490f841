//! Property tests over every tool's arguments, through an MCP client talking to the built binary.
//!
//! Invalid input (out-of-range and huge numbers, huge strings, wrong types, nulls where a value
//! is required, unicode and control characters, unknown fields) must always come back as a tool
//! error, never a protocol failure or a crash, and must never reach 1NCE: the sandbox behind the
//! server records every request, and for invalid input it must record none. Arbitrary argument
//! objects, valid or not, must never stop the server from serving.
//!
//! Free text is held to one rule: a character a person cannot see on the approval form (Unicode
//! categories Cc, Cf, Zl, Zp) is refused in every free-text field, and any other text reaches
//! 1NCE exactly as given.
//!
//! Case counts are modest so CI stays fast; set PROPTEST_CASES to run more.

use std::sync::atomic::{AtomicUsize, Ordering};

use onence_mcp::sandbox::Sandbox;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rmcp::model::CallToolRequestParams;
use serde_json::{Map, Value, json};
use unicode_general_category::{GeneralCategory, get_general_category};

use crate::common;
use crate::common::{Server, confirming, spawn_against, text};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// Strings meant to break things: control characters, bidi overrides, huge repeats, markup,
/// escapes, and random unicode.
fn hostile_string() -> BoxedStrategy<String> {
    prop_oneof![
        vec(any::<char>(), 0..40).prop_map(String::from_iter),
        (any::<char>(), 1_000usize..120_000).prop_map(|(c, n)| std::iter::repeat_n(c, n).collect()),
        prop::sample::select(vec![
            "\u{0}",
            "\u{1b}[2J\u{1b}[H",
            "line\nbreak",
            "\r\n\r\n",
            "\u{202e}evil",
            "\u{feff}",
            "🦀🦀🦀",
            "' OR 1=1 --",
            "../../etc/passwd",
            "{{7*7}}",
            "%00%0a",
            "\"}]}",
            "\\u0000",
            "    ",
        ])
        .prop_map(str::to_owned),
    ]
    .boxed()
}

/// Any JSON value, nested a few levels, with hostile strings and extreme numbers.
fn any_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        hostile_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::from),
            btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// A value that is not an integer: floats, non-numeric strings, booleans, arrays, objects.
fn not_an_integer() -> BoxedStrategy<Value> {
    prop_oneof![
        // Integral floats such as 5.0 are integers in JSON Schema's sense and are accepted.
        any::<f64>()
            .prop_filter("finite, not integral", |f| f.is_finite()
                && f.fract() != 0.0)
            .prop_map(Value::from),
        Just(json!(1.5)),
        Just(json!(-0.25)),
        Just(json!("5.5")),
        Just(json!("five")),
        // Not numeric strings: an integer written as a string may be accepted.
        hostile_string()
            .prop_filter("not an integer", |s| s.trim().parse::<i128>().is_err())
            .prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        vec(any::<i64>(), 0..3).prop_map(Value::from),
        Just(json!({"value": 1})),
    ]
    .boxed()
}

/// An integer outside `lo..=hi`, or something that is not an integer at all.
fn bad_integer(lo: i64, hi: i64) -> BoxedStrategy<Value> {
    let mut options = vec![
        (i64::MIN..lo).prop_map(Value::from).boxed(),
        ((i64::MAX as u64 + 1)..=u64::MAX)
            .prop_map(Value::from)
            .boxed(),
        Just(json!(i64::MIN)).boxed(),
        Just(json!(u64::MAX)).boxed(),
        not_an_integer(),
    ];
    if hi < i64::MAX {
        options.push((hi + 1..=i64::MAX).prop_map(Value::from).boxed());
    }
    proptest::strategy::Union::new(options).boxed()
}

/// A key that no tool accepts.
fn unknown_key() -> impl Strategy<Value = String> {
    "[a-zA-Z_]{1,20}".prop_filter("not a real argument", |k| {
        ![
            "page",
            "page_size",
            "sort",
            "order_number",
            "products",
            "delivery_address",
            "customer_reference",
            "confirmation_token",
        ]
        .contains(&k.as_str())
    })
}

/// Sets `key` in `args` to `value`.
fn with(mut args: Value, key: &str, value: Value) -> Value {
    args[key] = value;
    args
}

/// list_orders arguments with exactly one thing wrong.
fn invalid_list_orders() -> BoxedStrategy<Value> {
    let valid = (
        proptest::option::of(1i64..=1_000_000),
        proptest::option::of(1i64..=10),
    )
        .prop_map(|(page, size)| {
            let mut args = json!({});
            if let Some(p) = page {
                args["page"] = json!(p);
            }
            if let Some(s) = size {
                args["page_size"] = json!(s);
            }
            args
        });
    let bad_sort = prop_oneof![
        hostile_string().prop_map(|s| Value::from(format!("x{s}"))),
        Just(json!("order_number,")),
        Just(json!("ORDER_NUMBER")),
        Just(json!("order_date, price")),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        vec(hostile_string(), 0..3).prop_map(Value::from),
        Just(json!({"by": "order_date"})),
    ];
    prop_oneof![
        (valid.clone(), bad_integer(1, 1_000_000)).prop_map(|(a, v)| with(a, "page", v)),
        (valid.clone(), bad_integer(1, 10)).prop_map(|(a, v)| with(a, "page_size", v)),
        (valid.clone(), bad_sort).prop_map(|(a, v)| with(a, "sort", v)),
        (valid, unknown_key(), any_json()).prop_map(|(a, k, v)| with(a, &k, v)),
    ]
    .boxed()
}

/// get_order arguments that name no valid order number.
fn invalid_get_order() -> BoxedStrategy<Value> {
    prop_oneof![
        bad_integer(1, i64::MAX).prop_map(|v| json!({"order_number": v})),
        Just(json!({"order_number": null})),
        Just(json!({})),
        (unknown_key(), any_json()).prop_map(|(k, v)| json!({"order_number": 2000000001, k: v})),
        (unknown_key(), any_json()).prop_map(|(k, v)| json!({k: v})),
    ]
    .boxed()
}

fn valid_order() -> BoxedStrategy<Value> {
    (1i64..=5000, 1i64..=1_000_000)
        .prop_map(|(id, qty)| json!({"products": [{"product_id": id, "quantity": qty}]}))
        .boxed()
}

/// create_order arguments with exactly one thing wrong, or a bogus confirmation token.
fn invalid_create_order() -> BoxedStrategy<Value> {
    let bad_line = prop_oneof![
        bad_integer(1, i64::MAX).prop_map(|v| json!({"product_id": v, "quantity": 1})),
        bad_integer(1, 1_000_000).prop_map(|v| json!({"product_id": 1001, "quantity": v})),
        Just(json!({"product_id": 1001})),
        Just(json!({"quantity": 1})),
        Just(json!({"product_id": null, "quantity": 1})),
        (unknown_key(), any_json())
            .prop_map(|(k, v)| json!({"product_id": 1001, "quantity": 1, k: v})),
        any_json().prop_filter("not an object", |v| !v.is_object()),
    ];
    let bad_products = prop_oneof![
        Just(json!([])),
        Just(Value::Null),
        (51usize..200).prop_map(|n| Value::from(
            (1..=n as i64)
                .map(|id| json!({"product_id": id, "quantity": 1}))
                .collect::<Vec<_>>()
        )),
        Just(json!([{"product_id": 7, "quantity": 1}, {"product_id": 7, "quantity": 2}])),
        bad_line.prop_map(|l| json!([{"product_id": 1001, "quantity": 1}, l])),
        any_json().prop_filter("not an array", |v| !v.is_array()),
    ];
    // Every free-text field but the last, the customer reference.
    let address_field = prop::sample::select(FREE_TEXT_FIELDS[..9].to_vec());
    let bad_address = prop_oneof![
        hostile_string()
            .prop_filter("not a salutation", |s| s != "1" && s != "2")
            .prop_map(|s| json!({"salutation": s})),
        hostile_string()
            .prop_filter("not two ASCII letters", |s| {
                s.len() != 2 || !s.bytes().all(|b| b.is_ascii_alphabetic())
            })
            .prop_map(|s| json!({"country": s})),
        (address_field.clone(), 201usize..5000).prop_map(|(f, n)| json!({f: "a".repeat(n)})),
        (address_field.clone(), "[\u{0}-\u{1f}\u{7f}]")
            .prop_map(|(f, c)| json!({f: format!("Haupt{c}straße")})),
        (
            address_field,
            not_an_integer().prop_filter("not a string", |v| !v.is_string())
        )
            .prop_map(|(f, v)| json!({f: v})),
        (unknown_key(), any_json()).prop_map(|(k, v)| json!({k: v})),
        any_json().prop_filter("not an object or null", |v| !v.is_object() && !v.is_null()),
    ];
    let bad_reference = prop_oneof![
        (101usize..100_000).prop_map(|n| Value::from("r".repeat(n))),
        "[\u{0}-\u{1f}\u{7f}\u{80}-\u{9f}]".prop_map(|c| Value::from(format!("ref{c}no"))),
        any_json().prop_filter("not a string or null", |v| !v.is_string() && !v.is_null()),
    ];
    let bogus_token = prop_oneof![
        hostile_string().prop_filter("not blank", |s| !s.trim().is_empty()),
        Just("ct_00000000000000000000000000000000".to_owned()),
    ];
    prop_oneof![
        bad_products.prop_map(|p| json!({"products": p})),
        (valid_order(), bad_address).prop_map(|(o, a)| with(o, "delivery_address", a)),
        (valid_order(), bad_reference).prop_map(|(o, r)| with(o, "customer_reference", r)),
        (valid_order(), bogus_token).prop_map(|(o, t)| with(o, "confirmation_token", t.into())),
        (
            valid_order(),
            not_an_integer().prop_filter("not a string", |v| !v.is_string())
        )
            .prop_map(|(o, t)| with(o, "confirmation_token", t)),
        (valid_order(), unknown_key(), any_json()).prop_map(|(o, k, v)| with(o, &k, v)),
        Just(json!({})),
    ]
    .boxed()
}

/// A runtime for a property test's synchronous runner, a sandbox, and the server against it
/// (unpaced, so hundreds of cases do not wait on the rate limiter).
fn start() -> (tokio::runtime::Runtime, Sandbox, Server) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (sandbox, server) = runtime.block_on(async {
        let sandbox = Sandbox::start().await.unwrap();
        let server = spawn_against(&sandbox, &["--rate-limit", "off"]).await;
        (sandbox, server)
    });
    (runtime, sandbox, server)
}

/// Runs `strategy`'s cases against one server: each call must be a tool error and 1NCE must
/// see nothing at all.
fn refuse_all(tool: &'static str, strategy: BoxedStrategy<Value>) {
    let (runtime, sandbox, server) = start();
    let calls = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = runner.run(&strategy, |args| {
        calls.fetch_add(1, Ordering::Relaxed);
        let result = runtime.block_on(call(&server, tool, &args))?;
        let shown = text(&result);
        prop_assert_eq!(
            result.is_error,
            Some(true),
            "{} {} was accepted: {}",
            tool,
            args,
            shown
        );
        prop_assert!(!shown.is_empty(), "an error without a message");
        prop_assert!(
            sandbox.requests().is_empty(),
            "{} {} reached 1NCE: {:?}",
            tool,
            args,
            sandbox
                .requests()
                .iter()
                .map(|r| &r.path)
                .collect::<Vec<_>>()
        );
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{tool}: {e}");
    }
    assert!(calls.load(Ordering::Relaxed) >= cases() as usize);
    // Still serving, and that call does reach 1NCE.
    runtime.block_on(async {
        server.ok("list_orders", json!({"page_size": 1})).await;
        server.stop().await;
    });
    assert_eq!(sandbox.count("GET", "/v1/orders"), 1);
}

/// One tools/call; a protocol-level failure (the server died, or answered with a JSON-RPC error
/// instead of a tool result) fails the case.
async fn call(
    server: &Server,
    tool: &str,
    args: &Value,
) -> Result<rmcp::model::CallToolResult, TestCaseError> {
    let Value::Object(map) = args else {
        return Err(TestCaseError::fail("arguments must be an object"));
    };
    let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(map.clone());
    server
        .client
        .call_tool(params)
        .await
        .map_err(|e| TestCaseError::fail(format!("{tool} {args}: protocol-level failure: {e}")))
}

#[test]
fn list_orders_refuses_invalid_arguments_without_calling_1nce() {
    refuse_all("list_orders", invalid_list_orders());
}

#[test]
fn get_order_refuses_invalid_arguments_without_calling_1nce() {
    refuse_all("get_order", invalid_get_order());
}

#[test]
fn create_order_refuses_invalid_arguments_and_bogus_tokens_without_calling_1nce() {
    refuse_all("create_order", invalid_create_order());
}

/// Any argument object at all, for any tool name (including unknown ones): the server answers
/// every call (a result or a JSON-RPC error for an unknown tool) and keeps serving.
#[test]
fn arbitrary_arguments_never_stop_the_server() {
    let (runtime, sandbox, server) = start();
    let strategy = (
        prop::sample::select(vec![
            "list_orders",
            "get_order",
            "create_order",
            "no_such_tool",
        ]),
        btree_map(
            prop_oneof![
                prop::sample::select(vec![
                    "page",
                    "page_size",
                    "sort",
                    "order_number",
                    "products",
                    "delivery_address",
                    "customer_reference",
                    "confirmation_token",
                ])
                .prop_map(str::to_owned),
                "[a-z_]{1,10}",
            ],
            any_json(),
            0..5,
        ),
    );
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |(tool, args)| {
            let params = CallToolRequestParams::new(tool.to_owned())
                .with_arguments(args.into_iter().collect::<Map<String, Value>>());
            match runtime.block_on(server.client.call_tool(params)) {
                Ok(result) => prop_assert!(tool != "no_such_tool" && !result.content.is_empty()),
                Err(e) => prop_assert!(
                    tool == "no_such_tool",
                    "{} failed at the protocol level: {}",
                    tool,
                    e
                ),
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(async {
        server.ok("list_orders", json!({"page_size": 1})).await;
        server.stop().await;
    });
    // No order could have been placed without a token from a preview.
    assert_eq!(sandbox.count("POST", "/v1/orders"), 0);
}

/// create_order's free-text fields: every delivery address field without a fixed format, and
/// the customer reference.
const FREE_TEXT_FIELDS: [&str; 10] = [
    "first_name",
    "last_name",
    "company",
    "street",
    "address_line2",
    "house_number",
    "zip",
    "city",
    "phone",
    "customer_reference",
];

/// Control (Cc), format (Cf), line separator (Zl) and paragraph separator (Zp) characters.
fn is_invisible(c: char) -> bool {
    matches!(
        get_general_category(c),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

/// Any one of the few hundred invisible characters, each as likely as another.
fn invisible_char() -> BoxedStrategy<char> {
    let all: Vec<char> = (0..=0x10_FFFF)
        .filter_map(char::from_u32)
        .filter(|&c| is_invisible(c))
        .collect();
    prop::sample::select(all).boxed()
}

/// Any other character: letters and marks of every script, symbols, emoji, spaces, private use
/// and unassigned code points.
fn visible_char() -> BoxedStrategy<char> {
    any::<char>()
        .prop_filter("not Cc, Cf, Zl or Zp", |&c| !is_invisible(c))
        .boxed()
}

/// A small order to 1001 with `value` in the free-text `field`, shipped within Germany.
fn order_with(field: &str, value: &str) -> Value {
    let mut args = json!({
        "products": [{"product_id": 1001, "quantity": 1}],
        "delivery_address": {"first_name": "Erika", "last_name": "Muster", "street": "Ring",
                             "zip": "50667", "city": "Köln", "country": "DE"},
    });
    if field == "customer_reference" {
        args[field] = json!(value);
    } else {
        args["delivery_address"][field] = json!(value);
    }
    args
}

/// The name an agent gives the field in create_order's arguments.
fn argument_name(field: &str) -> String {
    if field == "customer_reference" {
        field.to_owned()
    } else {
        format!("delivery_address.{field}")
    }
}

/// `snake_case` as `camelCase`.
fn camel(name: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in name.chars() {
        match c {
            '_' => upper = true,
            c if upper => {
                out.extend(c.to_uppercase());
                upper = false;
            }
            c => out.push(c),
        }
    }
    out
}

/// The value of the free-text `field` in a `POST /v1/orders` body. The test is about values,
/// not spelling: a key is found in 1NCE's snake_case or camelCase.
fn posted<'a>(body: &'a Value, field: &str) -> Option<&'a str> {
    let get = |object: &'a Value, name: &str| object.get(name).or_else(|| object.get(camel(name)));
    let holder = if field == "customer_reference" {
        body
    } else {
        get(body, "delivery_address")?
    };
    get(holder, field)?.as_str()
}

/// Text with an invisible character inside it, between visible ends (values are trimmed, so a
/// trailing line break, say, never reaches 1NCE anyway), in any free-text field: the preview is
/// a tool error that names the field and the character, and 1NCE sees nothing.
#[test]
fn invisible_characters_in_free_text_are_refused_naming_field_and_character() {
    let (runtime, sandbox, server) = start();
    let strategy = (
        prop::sample::select(FREE_TEXT_FIELDS.to_vec()),
        vec(visible_char(), 0..8).prop_map(String::from_iter),
        invisible_char(),
        vec(prop_oneof![visible_char(), invisible_char()], 0..8).prop_map(String::from_iter),
    );
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |(field, before, invisible, after)| {
            let value = format!("x{before}{invisible}{after}x");
            let args = order_with(field, &value);
            let result = runtime.block_on(call(&server, "create_order", &args))?;
            let shown = text(&result);
            prop_assert_eq!(
                result.is_error,
                Some(true),
                "{} was accepted: {}",
                args,
                shown
            );
            let expected = format!(
                "{} contains U+{:04X} (",
                argument_name(field),
                u32::from(invisible)
            );
            prop_assert!(shown.contains(&expected), "{} not in {}", expected, shown);
            prop_assert!(
                shown.contains("could disguise what the person approves"),
                "{}",
                shown
            );
            prop_assert!(sandbox.requests().is_empty(), "{} reached 1NCE", args);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(server.stop());
}

/// Any text without those characters (and without surrounding whitespace, which is trimmed) in
/// any free-text field is previewed, confirmed, and posted to 1NCE byte for byte.
#[test]
fn visible_free_text_reaches_1nce_byte_for_byte() {
    let (runtime, sandbox, server) = start();
    let strategy = (
        prop::sample::select(FREE_TEXT_FIELDS.to_vec()),
        vec(visible_char(), 1..40)
            .prop_map(String::from_iter)
            .prop_filter("no surrounding whitespace", |s| s.trim() == s),
    );
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |(field, value)| {
            let mut args = order_with(field, &value);
            let preview = runtime.block_on(call(&server, "create_order", &args))?;
            prop_assert_ne!(
                preview.is_error,
                Some(true),
                "{} refused: {}",
                args,
                text(&preview)
            );
            let preview = preview.structured_content.unwrap_or_default();
            args = confirming(&args, &preview);
            let placed = runtime.block_on(call(&server, "create_order", &args))?;
            let placed_text = text(&placed);
            let placed = placed.structured_content.unwrap_or_default();
            prop_assert_eq!(&placed["status"], "placed", "{}: {}", args, placed_text);
            let post = sandbox
                .requests()
                .into_iter()
                .rfind(|r| r.method == "POST" && r.path == "/v1/orders")
                .expect("the order was posted");
            let body = post.json().expect("the order body is JSON");
            prop_assert_eq!(posted(&body, field), Some(value.as_str()), "{}", body);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(server.stop());
    assert!(common::posts(&sandbox) >= cases() as usize);
}
