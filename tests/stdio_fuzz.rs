//! A fuzz harness for the stdio transport, as a property test over raw lines (cargo-fuzz needs a
//! nightly toolchain; this runs on stable, in `cargo test`).
//!
//! Each case starts the built binary and writes malformed frames to its stdin: random bytes
//! (invalid UTF-8 included), truncated and deeply nested JSON, JSON that is not JSON-RPC,
//! JSON-RPC with wrong types, batches, requests before `initialize`, and huge lines; before and
//! after a proper `initialize`. The server must write nothing but JSON-RPC messages to stdout,
//! stay alive, answer a final valid request, and exit cleanly when stdin closes, all within a
//! bounded time (a hang fails the case instead of blocking the suite).

use std::process::Stdio;
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::common;

/// Generous: a case normally takes a fraction of a second; this only turns a hang into a failure.
const PATIENCE: Duration = Duration::from_secs(60);
const FINAL_ID: u64 = 999_999;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

fn initialize() -> Vec<u8> {
    json!({"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"fuzz","version":"0"}}})
        .to_string()
        .into_bytes()
}

fn valid_requests() -> Vec<Value> {
    vec![
        json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_orders","arguments":{"page_size":1}}}),
        json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_order","arguments":{"order_number":2000000001}}}),
        json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"create_order","arguments":{"products":[{"product_id":1001,"quantity":1}]}}}),
        json!({"jsonrpc":"2.0","id":5,"method":"ping"}),
    ]
}

/// One malformed frame, without its newline.
fn frame() -> BoxedStrategy<Vec<u8>> {
    let json_rpc_shaped = prop_oneof![
        Just(json!({"jsonrpc":"2.0","id":{"a":1},"method":"tools/list"})),
        Just(json!({"jsonrpc":"2.0","id":1.5,"method":"tools/list"})),
        Just(json!({"jsonrpc":"2.0","id":null,"method":"tools/call"})),
        Just(json!({"jsonrpc":"1.0","id":1,"method":"tools/list"})),
        Just(json!({"jsonrpc":"2.0","id":1,"method":42})),
        Just(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":"list_orders"})),
        Just(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_orders","arguments":[1,2]}})),
        Just(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_order","arguments":{"order_number":"1e999"}}})),
        Just(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":{"x":1}}})),
        Just(json!({"jsonrpc":"2.0","id":1,"result":{}})),
        Just(json!({"jsonrpc":"2.0","id":1,"error":{"code":"x"}})),
        Just(json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"nope"}})),
        Just(json!({"jsonrpc":"2.0","method":"notifications/initialized"})),
        Just(json!({"jsonrpc":"2.0","method":"textDocument/didOpen","params":{}})),
        Just(json!({"jsonrpc":"2.0","id":7,"method":"no/such/method"})),
        Just(json!([{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/list"}])),
        Just(json!([])),
        (any::<i64>(), "[a-z/]{0,20}")
            .prop_map(|(id, m)| json!({"jsonrpc":"2.0","id":id,"method":m})),
    ]
    .prop_map(|v| v.to_string().into_bytes());
    prop_oneof![
        // Random bytes, invalid UTF-8 included.
        vec(any::<u8>(), 0..300).prop_map(|b| b.into_iter().filter(|c| *c != b'\n').collect()),
        // Random text.
        "\\PC{0,200}".prop_map(String::into_bytes),
        // A valid message cut short.
        (prop::sample::select(valid_requests()), 0.0f64..1.0).prop_map(|(v, cut)| {
            let bytes = v.to_string().into_bytes();
            let at = (bytes.len() as f64 * cut) as usize;
            bytes[..at].to_vec()
        }),
        // Deep nesting, far past serde_json's recursion limit.
        (100usize..100_000).prop_map(|n| [b"[".repeat(n), b"]".repeat(n)].concat()),
        (100usize..10_000).prop_map(|n| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n)).into_bytes()),
        // Huge lines: a long string inside a request, and junk.
        (100_000usize..2_000_000).prop_map(|n| {
            format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"params\":{{\"name\":\"list_orders\",\"arguments\":{{\"sort\":\"{}\"}}}}}}",
                "x".repeat(n)
            )
            .into_bytes()
        }),
        (100_000usize..2_000_000).prop_map(|n| vec![b'#'; n]),
        // JSON that is not JSON-RPC.
        prop_oneof![
            Just("null"),
            Just("true"),
            Just("123456789012345678901234567890"),
            Just("\"just a string\""),
            Just("{}"),
            Just("{\"jsonrpc\":\"2.0\"}"),
            Just("\u{feff}{\"jsonrpc\":\"2.0\",\"id\":1}"),
        ]
        .prop_map(|s| s.as_bytes().to_vec()),
        json_rpc_shaped,
        // Whitespace and carriage returns.
        prop::sample::select(vec!["", " ", "\r", "\t\t", "\r\r\r"]).prop_map(|s| s.as_bytes().to_vec()),
    ]
    .boxed()
}

/// The binary against its built-in sandbox, stdin and stdout piped.
fn spawn_server() -> std::io::Result<tokio::process::Child> {
    common::command(&["--sandbox", "--rate-limit", "off"], &[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
}

/// Runs one case: junk before `initialize`, junk after it, then a final valid call.
async fn run_case(before: Vec<Vec<u8>>, after: Vec<Vec<u8>>) -> Result<(), TestCaseError> {
    let mut child = spawn_server().map_err(|e| TestCaseError::fail(format!("spawn: {e}")))?;
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();

    // Writes everything in the background so that a full stdout pipe cannot deadlock the test.
    let writer = tokio::spawn(async move {
        let mut frames = before;
        frames.push(initialize());
        frames.push(
            json!({"jsonrpc":"2.0","method":"notifications/initialized"})
                .to_string()
                .into_bytes(),
        );
        frames.extend(after);
        frames.push(json!({"jsonrpc":"2.0","id":FINAL_ID,"method":"tools/call","params":{"name":"list_orders","arguments":{"page_size":1}}}).to_string().into_bytes());
        for mut frame in frames {
            frame.push(b'\n');
            if stdin.write_all(&frame).await.is_err() {
                return None;
            }
        }
        let _ = stdin.flush().await;
        Some(stdin)
    });

    let mut lines = BufReader::new(stdout).lines();
    let answered = tokio::time::timeout(PATIENCE, async {
        loop {
            let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? else {
                return Err("stdout closed: the server exited".to_owned());
            };
            let message: Value = serde_json::from_str(&line)
                .map_err(|e| format!("non-JSON on stdout ({e}): {line:.200}"))?;
            if message.get("jsonrpc") != Some(&json!("2.0")) {
                return Err(format!("not JSON-RPC 2.0: {line:.200}"));
            }
            if message.get("id") == Some(&json!(FINAL_ID)) {
                return Ok(message);
            }
        }
    })
    .await
    .map_err(|_| TestCaseError::fail("no answer to the final request: the server hangs"))?
    .map_err(TestCaseError::fail)?;
    prop_assert_eq!(
        answered["result"]["structuredContent"]["orders"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{}",
        answered
    );

    // Anything written after the answer must be JSON-RPC too. Keep reading while the process
    // winds down, so that a full stdout pipe cannot hold it up.
    let rest = tokio::spawn(async move {
        let mut bad = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            let is_json_rpc = serde_json::from_str::<Value>(&line)
                .is_ok_and(|m| m.get("jsonrpc") == Some(&json!("2.0")));
            if !is_json_rpc {
                bad.push(line.chars().take(200).collect::<String>());
            }
        }
        bad
    });

    // Closing stdin ends the session; the process exits on its own, successfully.
    let stdin = writer.await.unwrap();
    prop_assert!(stdin.is_some(), "the server stopped reading its stdin");
    drop(stdin);
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .map_err(|_| TestCaseError::fail("the server did not exit after stdin closed"))?
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(status.success(), "exit status {}", status);
    let bad = rest.await.unwrap();
    prop_assert!(bad.is_empty(), "not JSON-RPC on stdout: {:?}", bad);
    Ok(())
}

#[test]
fn malformed_frames_never_crash_hang_or_pollute_stdout() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(vec(frame(), 0..6), vec(frame(), 0..6)),
            |(before, after)| runtime.block_on(run_case(before, after)),
        )
        .unwrap_or_else(|e| panic!("{e}"));
}

/// A line past rmcp's 16 MiB frame limit is dropped without buffering it whole, and the session
/// goes on.
#[test]
fn a_line_beyond_the_frame_limit_is_dropped_and_the_session_goes_on() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(run_case(
            vec![vec![b'x'; 20 * 1024 * 1024]],
            vec![
                [
                    b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"ping\",\"params\":\"".as_slice(),
                    &vec![b'y'; 18 * 1024 * 1024],
                ]
                .concat(),
            ],
        ))
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Every message the server writes until it answers [`FINAL_ID`], after `initialize` and `lines`.
async fn messages_until_final(lines: Vec<Vec<u8>>) -> Vec<Value> {
    messages_and_memory(lines).await.0
}

/// [`messages_until_final`], and the server's peak and current resident memory (`VmHWM`,
/// `VmRSS`, KiB) once it answered.
async fn messages_and_memory(lines: Vec<Vec<u8>>) -> (Vec<Value>, (u64, u64)) {
    let mut child = spawn_server().expect("spawn the binary");
    let pid = child.id().expect("the server runs");
    let mut stdin = child.stdin.take().unwrap();
    let mut frames = vec![
        initialize(),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"})
            .to_string()
            .into_bytes(),
    ];
    frames.extend(lines);
    frames.push(
        json!({"jsonrpc":"2.0","id":FINAL_ID,"method":"ping"})
            .to_string()
            .into_bytes(),
    );
    let writer = tokio::spawn(async move {
        for mut frame in frames {
            frame.push(b'\n');
            stdin.write_all(&frame).await.unwrap();
        }
        stdin
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let message: Value = serde_json::from_str(&line).expect("JSON on stdout");
            let done = message["id"] == json!(FINAL_ID);
            seen.push(message);
            if done {
                return;
            }
        }
        panic!("the server exited before answering the final request: {seen:?}");
    })
    .await
    .expect("the final request is answered");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    drop(writer.await.unwrap());
    (seen, (kib("VmHWM:"), kib("VmRSS:")))
}

/// One line holding a batch of 350,000 requests (15 MiB, under the line limit): the first
/// [`BATCH_IDS`] are refused each with its id, the rest with one answer without an id that
/// says how many, and the session goes on. The answers in flight for one line are bounded, and
/// so is the memory: the batch is never held as one value (it took 417 MiB for 400,000
/// requests). The bound on memory is loose, for a debug build; `BENCHMARKS.md` has the
/// measurement (`BENCH_ONLY=flood`).
#[test]
fn a_flood_of_requests_in_one_batch_gets_bounded_answers_and_memory() {
    const BATCH_IDS: usize = 100;
    const REQUESTS: usize = 350_000;
    let mut line = Vec::with_capacity(REQUESTS * 44);
    line.push(b'[');
    for id in 0..REQUESTS {
        if id > 0 {
            line.push(b',');
        }
        line.extend_from_slice(
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#).as_bytes(),
        );
    }
    line.push(b']');
    assert!(line.len() < 16 * 1024 * 1024, "{} bytes", line.len());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (seen, (peak_kib, _)) = runtime.block_on(messages_and_memory(vec![line]));
    // initialize's answer, the batch's, the final ping's.
    let batch: Vec<&Value> = seen.iter().filter(|m| m.get("error").is_some()).collect();
    assert_eq!(
        batch.len(),
        BATCH_IDS + 1,
        "{:?}",
        &seen[..seen.len().min(5)]
    );
    for (n, answer) in batch[..BATCH_IDS].iter().enumerate() {
        assert_eq!(answer["id"], n, "{answer}");
        assert_eq!(answer["error"]["code"], -32600, "{answer}");
    }
    let rest = batch[BATCH_IDS];
    assert!(rest.get("id").is_none(), "{rest}");
    assert_eq!(rest["error"]["code"], -32600, "{rest}");
    let message = rest["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("held {REQUESTS} requests"))
            && message.contains(&format!("other {}", REQUESTS - BATCH_IDS))
            && message.contains("send each request on its own line"),
        "{message}"
    );
    assert_eq!(seen.last().unwrap()["result"], json!({}));
    assert!(
        peak_kib > 0 && peak_kib < 160 * 1024,
        "peak resident memory {peak_kib} KiB for one 15 MiB line"
    );
}

/// Each line that used to get no answer at all: every request whose id can be read gets an
/// error with that id (-32700 when the line is not JSON, -32600 when it is not a valid request),
/// and the session goes on.
#[test]
fn every_request_with_a_readable_id_is_answered_with_it() {
    const PARSE_ERROR: i64 = -32700;
    const INVALID_REQUEST: i64 = -32600;
    let request =
        |id: &str, rest: &str| format!(r#"{{"jsonrpc":"2.0","id":"{id}","method":"ping"{rest}}}"#);
    let mut cases: Vec<(Vec<u8>, Vec<&str>, i64)> = vec![
        (
            br#"[{"jsonrpc":"2.0","id":"batch-1","method":"ping"},{"jsonrpc":"2.0","id":"batch-2","method":"tools/list"}]"#.to_vec(),
            vec!["batch-1", "batch-2"],
            INVALID_REQUEST,
        ),
        (br#"{"id":"no-version","method":"ping"}"#.to_vec(), vec!["no-version"], INVALID_REQUEST),
        (
            br#"{"jsonrpc":"1.0","id":"version-1.0","method":"ping"}"#.to_vec(),
            vec!["version-1.0"],
            INVALID_REQUEST,
        ),
        (request("params-string", r#","params":"x""#).into_bytes(), vec!["params-string"], INVALID_REQUEST),
        (request("params-array", r#","params":[1]"#).into_bytes(), vec!["params-array"], INVALID_REQUEST),
        (request("huge-number", r#","params":{"a":1e400}"#).into_bytes(), vec!["huge-number"], PARSE_ERROR),
        (request("lone-surrogate", r#","params":{"a":"\ud800"}"#).into_bytes(), vec!["lone-surrogate"], PARSE_ERROR),
        (
            format!("{}{}", request("two-objects", ""), request("second", "")).into_bytes(),
            vec!["two-objects"],
            PARSE_ERROR,
        ),
        (
            request("duplicate-key", r#","method":"tools/list""#).into_bytes(),
            vec!["duplicate-key"],
            INVALID_REQUEST,
        ),
        ([request("trailing-nul", "").as_bytes(), b"\0"].concat(), vec!["trailing-nul"], PARSE_ERROR),
        (
            [&br#"{"jsonrpc":"2.0","id":"invalid-utf8","method":"ping","params":{"a":""#[..], b"\xff\xfe\"}}"].concat(),
            vec!["invalid-utf8"],
            PARSE_ERROR,
        ),
    ];
    // Past the 16 MiB line limit: skipped as it streams in, answered from its head.
    cases.push((
        [
            br#"{"jsonrpc":"2.0","id":"too-long","method":"ping","params":{"a":""#.as_slice(),
            &vec![b'y'; 17 * 1024 * 1024],
            b"\"}}",
        ]
        .concat(),
        vec!["too-long"],
        INVALID_REQUEST,
    ));
    let expected: Vec<(&str, i64)> = cases
        .iter()
        .flat_map(|(_, ids, code)| ids.iter().map(move |id| (*id, *code)))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let seen = runtime.block_on(messages_until_final(
        cases.into_iter().map(|(line, _, _)| line).collect(),
    ));
    for (id, code) in expected {
        let answer = seen
            .iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("no answer for {id}: {seen:?}"));
        assert_eq!(answer["jsonrpc"], "2.0", "{answer}");
        assert_eq!(answer["error"]["code"], code, "{id}: {answer}");
    }
    assert!(
        !seen.iter().any(|m| m["id"] == "second"),
        "the second object of a line was served: {seen:?}"
    );
    assert_eq!(seen.last().unwrap()["result"], json!({}), "{seen:?}");
}
