//! The order mirror (issue 26), as a client sees it: searches and lookups answered from the
//! orders the server keeps, the sync that fills it within the rate limit, restarts, orders that
//! change, replicas sharing one mirror, and a store that fails. A sandbox account of a few
//! hundred generated orders stands for a real-sized one; its request log shows what was read.

use std::path::Path;
use std::time::Duration;

use onence_mcp::sandbox::{Sandbox, SandboxOptions};
use serde_json::{Value, json};

use crate::common::{self, PATIENCE, Server, run, sandbox_env, spawn_against, temp_dir, text};

/// A sandbox account of `n` generated orders.
async fn account(n: usize) -> Sandbox {
    Sandbox::start_with(SandboxOptions {
        orders: Some(n),
        ..Default::default()
    })
    .await
    .unwrap()
}

/// GET requests for order pages (`/v1/orders?…`) and single orders (`/v1/orders/N`) so far.
fn reads(sandbox: &Sandbox) -> (usize, usize) {
    let requests = sandbox.requests();
    let pages = requests
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/v1/orders")
        .count();
    let orders = requests
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/v1/orders/"))
        .count();
    (pages, orders)
}

/// The page numbers of the order-list requests so far.
fn pages_read(sandbox: &Sandbox) -> Vec<u64> {
    sandbox
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/v1/orders")
        .filter_map(|r| {
            r.query
                .as_deref()?
                .split('&')
                .find_map(|kv| kv.strip_prefix("page=").and_then(|n| n.parse().ok()))
        })
        .collect()
}

/// `1nce-mcp mirror status` on `state` against `sandbox`.
async fn status(sandbox: &Sandbox, state: &[&str]) -> String {
    let url = sandbox.base_url();
    let mut args = state.to_vec();
    args.extend(["--mirror", "on", "mirror", "status"]);
    let out = run(None, &args, &sandbox_env(&url)).await;
    assert_eq!(out.code, 0, "{out:?}");
    out.stdout
}

/// Waits until the mirror on `state` holds the whole account.
async fn backfilled(sandbox: &Sandbox, state: &[&str]) {
    let deadline = tokio::time::Instant::now() + PATIENCE * 2;
    loop {
        let said = status(sandbox, state).await;
        if said.contains("the whole account") {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the backfill did not finish: {said}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn iccid_of(order: &Value) -> Option<String> {
    order["sims"][0]["iccid"].as_str().map(str::to_owned)
}

/// A server on `state` against `sandbox`, with the mirror on (the tests' default is off) and the
/// given extra flags.
async fn server(sandbox: &Sandbox, state: &[&str], extra: &[&str]) -> Server {
    let mut args = state.to_vec();
    args.extend_from_slice(&["--mirror", "on"]);
    args.extend_from_slice(extra);
    spawn_against(sandbox, &args).await
}

#[tokio::test]
async fn searches_and_lookups_answer_from_the_mirror_and_a_restart_reads_nothing_again() {
    let sandbox = account(230).await;
    let dir = temp_dir("state");
    let state = ["--state-dir", dir.to_str().unwrap()];
    let fast = ["--rate-limit", "off", "--mirror-max-age", "1h"];
    let s = server(&sandbox, &state, &fast).await;
    // The first call wakes the sync; nothing is kept yet, so it reads 1NCE itself.
    let first = s.ok("find_orders", json!({"limit": 1})).await;
    assert_eq!(first["source"], "live", "{first}");
    backfilled(&sandbox, &state).await;
    let pages = pages_read(&sandbox);
    // 23 pages, each read once by the backfill (and page 23 once more by the first search).
    for page in 1..=23 {
        assert!(pages.contains(&page), "page {page} not read: {pages:?}");
    }
    sandbox.clear_requests();

    // An old order's SIM, a reference, a date range: answered with no request.
    let orders = sandbox.orders();
    let old = orders
        .iter()
        .find(|o| iccid_of(o).is_some() && o["order_status"] == "COMPLETED")
        .unwrap()
        .clone();
    let iccid = iccid_of(&old).unwrap();
    let found = s
        .ok("find_orders", json!({"iccid": iccid, "detail": "full"}))
        .await;
    assert_eq!(found["source"], "mirror");
    assert_eq!(found["complete"], true);
    // The card order that shipped the SIM, and the top-ups on it since.
    let numbers: Vec<&Value> = found["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["order_number"])
        .collect();
    assert!(numbers.contains(&&old["order_number"]), "{numbers:?}");
    let by_reference = s.ok("find_orders", json!({"reference": "PO-2021"})).await;
    assert!(!by_reference["orders"].as_array().unwrap().is_empty());
    let in_2022 = s
        .ok(
            "find_orders",
            json!({"placed_from": "2022-01-01", "placed_until": "2022-12-31", "limit": 50}),
        )
        .await;
    for o in in_2022["orders"].as_array().unwrap() {
        assert!(o["order_date"].as_str().unwrap().starts_with("2022"), "{o}");
    }
    let text = text(&s.call("find_orders", json!({"iccid": iccid})).await);
    assert!(
        text.contains("230 of 230 orders") && text.contains("no request to 1NCE"),
        "{text}"
    );
    // A final order comes from the mirror.
    let got = s
        .ok("get_order", json!({"order_number": old["order_number"]}))
        .await;
    assert_eq!(got["order_number"], old["order_number"]);
    assert_eq!(reads(&sandbox), (0, 0), "nothing was asked of 1NCE");
    s.stop().await;

    // A new process (a new host session) reads nothing it kept, and syncs nothing again.
    let again = server(&sandbox, &state, &fast).await;
    let found = again.ok("find_orders", json!({"iccid": iccid})).await;
    assert_eq!(found["source"], "mirror");
    again
        .ok("get_order", json!({"order_number": old["order_number"]}))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reads(&sandbox), (0, 0), "{:?}", pages_read(&sandbox));
    again.stop().await;
}

#[tokio::test]
async fn a_backfill_killed_half_way_resumes_where_it_stopped() {
    let sandbox = account(400).await;
    let dir = temp_dir("state");
    let state = ["--state-dir", dir.to_str().unwrap()];
    // 40 pages; half of 20 requests a second: the backfill takes about 4 s.
    let paced = ["--rate-limit", "20/1s", "--rate-burst", "1"];
    let s = server(&sandbox, &state, &paced).await;
    s.ok("list_orders", json!({"page_size": 1})).await;
    common::eventually("a quarter of the backfill", || {
        pages_read(&sandbox).len() >= 10
    })
    .await;
    // Killed, not stopped: no chance to tidy up.
    if let Some(pid) = s.pid {
        // SAFETY: a signal to the server process this test spawned.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    drop(s);
    let before = pages_read(&sandbox);
    assert!(before.len() < 40, "{before:?}");
    let resumed = server(&sandbox, &state, &["--rate-limit", "off"]).await;
    resumed.ok("list_orders", json!({"page_size": 1})).await;
    backfilled(&sandbox, &state).await;
    let all = pages_read(&sandbox);
    // Every page once, but for the one read as the process died and the list calls' own page.
    let mut counts = std::collections::BTreeMap::new();
    for page in &all {
        *counts.entry(*page).or_insert(0) += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice
            .iter()
            .all(|(page, n)| **page == 1 && **n <= 4 || **n == 2)
            && twice.len() <= 2,
        "pages read again after the restart: {twice:?} (all: {all:?})"
    );
    assert_eq!(counts.len(), 40);
    resumed.stop().await;
}

#[tokio::test]
async fn an_order_that_changes_is_seen_within_the_window_and_a_final_one_is_never_read_again() {
    let sandbox = account(40).await;
    let dir = temp_dir("state");
    let state = ["--state-dir", dir.to_str().unwrap()];
    let s = server(
        &sandbox,
        &state,
        &["--rate-limit", "off", "--mirror-max-age", "1s"],
    )
    .await;
    s.ok("list_orders", json!({"page_size": 1})).await;
    backfilled(&sandbox, &state).await;
    let orders = sandbox.orders();
    let moving = orders
        .iter()
        .find(|o| o["order_status"] == "IN_PROGRESS")
        .unwrap()["order_number"]
        .as_u64()
        .unwrap();
    sandbox.set_order_status(moving, "COMPLETED");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    sandbox.clear_requests();
    let got = s.ok("get_order", json!({"order_number": moving})).await;
    assert_eq!(got["order_status"], "COMPLETED");
    assert_eq!(reads(&sandbox).1, 1, "read again, being past the window");
    // Now final: never read again, however old.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    sandbox.clear_requests();
    s.ok("get_order", json!({"order_number": moving})).await;
    assert_eq!(reads(&sandbox).1, 0);
    s.stop().await;
}

#[tokio::test]
async fn a_mirror_that_cannot_be_read_falls_back_to_1nce_and_says_so() {
    let sandbox = account(30).await;
    let dir = temp_dir("state");
    // A directory where the mirror's file should be: it cannot be opened.
    std::fs::create_dir_all(dir.join("mirror.sqlite3")).unwrap();
    let state = ["--state-dir", dir.to_str().unwrap()];
    let s = server(&sandbox, &state, &["--rate-limit", "off"]).await;
    let orders = sandbox.orders();
    let wanted = orders.iter().find_map(iccid_of).unwrap();
    let result = s.call("find_orders", json!({"iccid": wanted})).await;
    assert_ne!(result.is_error, Some(true), "{}", text(&result));
    let said = text(&result);
    assert!(
        said.contains("could not be read") && said.contains("read 1NCE directly"),
        "{said}"
    );
    assert_eq!(result.structured_content.unwrap()["source"], "live");
    // Lookups still work, live.
    s.ok(
        "get_order",
        json!({"order_number": orders[0]["order_number"]}),
    )
    .await;
    s.stop().await;
}

#[tokio::test]
async fn with_the_mirror_off_nothing_is_kept_and_drop_forgets_everything() {
    let sandbox = account(30).await;
    let dir = temp_dir("state");
    let state = ["--state-dir", dir.to_str().unwrap()];
    let mut args = state.to_vec();
    args.extend(["--mirror", "off"]);
    let s = spawn_against(&sandbox, &args).await;
    let found = s.ok("find_orders", json!({"limit": 1})).await;
    assert_eq!(found["source"], "live");
    s.stop().await;
    assert!(!mirror_file(&dir).exists());

    let s = server(&sandbox, &state, &["--rate-limit", "off"]).await;
    s.ok("list_orders", json!({"page_size": 1})).await;
    backfilled(&sandbox, &state).await;
    s.stop().await;
    assert!(mirror_file(&dir).exists());
    let url = sandbox.base_url();
    let dropped = run(
        None,
        &[
            "--state-dir",
            dir.to_str().unwrap(),
            "--mirror",
            "on",
            "mirror",
            "drop",
        ],
        &sandbox_env(&url),
    )
    .await;
    assert_eq!(dropped.code, 0, "{dropped:?}");
    assert!(!mirror_file(&dir).exists());
    let off = run(
        None,
        &[
            "--state-dir",
            dir.to_str().unwrap(),
            "--mirror",
            "off",
            "mirror",
            "status",
        ],
        &sandbox_env(&url),
    )
    .await;
    assert_eq!(off.code, 2, "{off:?}");
    assert!(off.stderr.contains("mirror is off"), "{}", off.stderr);
}

fn mirror_file(state: &Path) -> std::path::PathBuf {
    state.join("mirror.sqlite3")
}

#[cfg(unix)]
#[tokio::test]
async fn two_replicas_share_one_mirror_and_one_backfill() {
    use crate::common::pg::Postgres;
    let Some(pg) = Postgres::start() else {
        return;
    };
    let sandbox = account(200).await;
    let url = pg.url();
    let state = ["--state-url", url.as_str()];
    let a = server(&sandbox, &state, &["--rate-limit", "off"]).await;
    let b = server(&sandbox, &state, &["--rate-limit", "off"]).await;
    let _ = &common::PATIENCE;
    a.ok("list_orders", json!({"page_size": 1})).await;
    b.ok("list_orders", json!({"page_size": 1})).await;
    backfilled(&sandbox, &state).await;
    // 20 pages, each read by one replica only (page 1 also by the two list calls).
    let mut counts = std::collections::BTreeMap::new();
    for page in pages_read(&sandbox) {
        *counts.entry(page).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 20, "{counts:?}");
    assert!(
        counts.iter().all(|(page, n)| *n == 1 || *page == 1),
        "read twice: {counts:?}"
    );
    sandbox.clear_requests();
    let wanted = sandbox.orders().iter().find_map(iccid_of).unwrap();
    let result = b.call("find_orders", json!({"iccid": wanted})).await;
    let found = result.structured_content.clone().unwrap();
    if found["source"] != "mirror" {
        let said = text(&result);
        let stderr = b.stop().await;
        panic!("{said}\n{stderr}\n{}", status(&sandbox, &state).await);
    }
    assert_eq!(reads(&sandbox), (0, 0));
    assert_eq!(pg.query("SELECT count(*) FROM order_mirror"), ["200"]);
    a.stop().await;
    b.stop().await;
}
