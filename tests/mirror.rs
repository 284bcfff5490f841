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

/// A setting of the measurement from the environment, or `default`.
fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator, so every run asks the same questions.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len())]
    }
}

/// "p50 1.23 ms, p99 4.56 ms, max 7.89 ms (n 200)" of `times`.
fn spread(times: &mut [Duration]) -> String {
    if times.is_empty() {
        return "no calls".to_owned();
    }
    times.sort();
    let at = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n {})",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(times[times.len() - 1]),
        times.len()
    )
}

/// The server's resident memory and its peak, in MiB, from `/proc/<pid>/status`.
fn memory(server: &Server) -> String {
    let Some(pid) = server.pid else {
        return "unknown".to_owned();
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or("?".to_owned(), |kb| format!("{:.1} MiB", kb / 1024.0))
    };
    format!("VmRSS {}, VmHWM {}", field("VmRSS:"), field("VmHWM:"))
}

/// The upstream requests in `sandbox`'s log: order pages (`GET /v1/orders?…`), single orders,
/// the catalogue, tokens.
fn upstream(sandbox: &Sandbox) -> String {
    let (pages, orders) = reads(sandbox);
    format!(
        "{} to /v1 ({pages} order pages, {orders} single orders, {} catalogue), {} token",
        common::api_requests(sandbox),
        sandbox.count("GET", "/v1/products"),
        sandbox.count("POST", "/oauth/token")
    )
}

/// What the measurement asks of an account: ICCIDs, references, in-progress and final orders.
struct Questions {
    iccids: Vec<String>,
    references: Vec<String>,
    finals: Vec<u64>,
    pending: Vec<u64>,
}

impl Questions {
    fn of(sandbox: &Sandbox) -> Questions {
        let orders = sandbox.orders();
        let number = |o: &Value| o["order_number"].as_u64().unwrap();
        let is_final =
            |o: &Value| matches!(o["order_status"].as_str(), Some("COMPLETED" | "CANCELLED"));
        Questions {
            iccids: orders
                .iter()
                .filter(|o| is_final(o))
                .filter_map(iccid_of)
                .collect(),
            references: orders
                .iter()
                .filter_map(|o| o["customer_reference"].as_str().map(str::to_owned))
                .collect(),
            finals: orders.iter().filter(|o| is_final(o)).map(number).collect(),
            pending: orders.iter().filter(|o| !is_final(o)).map(number).collect(),
        }
    }

    /// A date range of about `days` days within the generated account's years.
    fn range(rng: &mut Lcg, days: i64) -> Value {
        let first = chrono::NaiveDate::from_ymd_opt(2020, 2, 1).unwrap();
        let from = first + chrono::Duration::days(rng.below(2400) as i64);
        let until = from + chrono::Duration::days(days - 1);
        json!({"placed_from": from.to_string(), "placed_until": until.to_string()})
    }

    /// A session of 50 questions an agent typically asks, in a fixed shuffled order.
    fn session(&self) -> Vec<(&'static str, Value)> {
        let mut rng = Lcg(26);
        let mut asked: Vec<(&'static str, Value)> = Vec::new();
        for _ in 0..10 {
            let iccid = rng.pick(&self.iccids).clone();
            asked.push(("find_orders", json!({"iccid": iccid})));
        }
        for _ in 0..4 {
            let reference = rng.pick(&self.references).clone();
            asked.push(("find_orders", json!({"reference": reference})));
        }
        for year in ["2021", "2025"] {
            asked.push(("find_orders", json!({"reference": format!("PO-{year}")})));
        }
        for (status, limit) in [
            ("IN_PROGRESS", 20),
            ("SHIPPED", 20),
            ("CANCELLED", 10),
            ("CANCELLED", 50),
            ("COMPLETED", 10),
            ("IN_PROGRESS", 5),
        ] {
            asked.push(("find_orders", json!({"status": status, "limit": limit})));
        }
        for days in [31, 7, 92, 31, 14, 365] {
            asked.push(("find_orders", Questions::range(&mut rng, days)));
        }
        let mut combined = Questions::range(&mut rng, 365);
        combined["product_id"] = json!(1004);
        asked.push(("find_orders", combined));
        let mut combined = Questions::range(&mut rng, 180);
        combined["order_type"] = json!("ADDITIONAL_ORDER");
        asked.push(("find_orders", combined));
        for _ in 0..10 {
            let number = *rng.pick(&self.finals);
            asked.push(("get_order", json!({"order_number": number})));
        }
        for _ in 0..6 {
            let number = *rng.pick(&self.pending);
            asked.push(("get_order", json!({"order_number": number})));
        }
        for args in [
            json!({}),
            json!({"page": 2}),
            json!({"sort": "order_date", "page_size": 5}),
            json!({"page": 3, "page_size": 10}),
        ] {
            asked.push(("list_orders", args));
        }
        assert_eq!(asked.len(), 50);
        for i in (1..asked.len()).rev() {
            asked.swap(i, rng.below(i + 1));
        }
        asked
    }
}

/// Asks `questions` of `s` one after another: per question the time, the requests `sandbox`
/// saw meanwhile, and whether the answer says it is whole (`find_orders`' `complete`; a lookup
/// or a page that did not fail is whole).
async fn ask(
    s: &Server,
    sandbox: &Sandbox,
    questions: &[(&'static str, Value)],
) -> (Vec<Duration>, usize, usize) {
    let (mut times, mut whole) = (Vec::new(), 0);
    let before = common::api_requests(sandbox);
    for (tool, args) in questions {
        let started = tokio::time::Instant::now();
        let result = s.call(tool, args.clone()).await;
        times.push(started.elapsed());
        let answer = result.structured_content.clone().unwrap_or_default();
        if result.is_error != Some(true) && (*tool != "find_orders" || answer["complete"] == true) {
            whole += 1;
        }
    }
    (times, common::api_requests(sandbox) - before, whole)
}

/// Waits until `s`'s mirror holds the whole account; how long that took from `since`.
async fn until_backfilled(s: &Server, since: tokio::time::Instant) -> Duration {
    loop {
        let found = s.ok("find_orders", json!({"limit": 1})).await;
        if found["source"] == "mirror" && found["complete"] == true {
            return since.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `find_orders` by ICCID, by reference and by date range, `n` of each: the time of each kind,
/// and the upstream requests per answer.
async fn searches(s: &Server, sandbox: &Sandbox, q: &Questions, n: usize) {
    let mut rng = Lcg(2000);
    type Ask = fn(&Questions, &mut Lcg) -> Value;
    let kinds: [(&str, Ask); 3] = [
        ("ICCID", |q, rng| json!({"iccid": rng.pick(&q.iccids)})),
        (
            "reference",
            |q, rng| json!({"reference": rng.pick(&q.references)}),
        ),
        ("date range (31 days)", |_, rng| Questions::range(rng, 31)),
    ];
    for (kind, question) in kinds {
        let (mut times, mut found, mut whole, mut mirrored) = (Vec::new(), 0, 0, 0);
        let before = common::api_requests(sandbox);
        let pages_before = reads(sandbox).0;
        for _ in 0..n {
            let args = question(q, &mut rng);
            let started = tokio::time::Instant::now();
            let answer = s.ok("find_orders", args).await;
            times.push(started.elapsed());
            found += answer["orders"].as_array().map_or(0, Vec::len);
            whole += usize::from(answer["complete"] == true);
            mirrored += usize::from(answer["source"] == "mirror");
        }
        let requests = common::api_requests(sandbox) - before;
        println!(
            "  find_orders by {kind}: {}; {:.2} upstream requests per answer ({requests} in all, \
             {} of them order pages); {mirrored} of {n} from the mirror, {whole} complete, {:.1} \
             orders per answer",
            spread(&mut times),
            requests as f64 / n as f64,
            reads(sandbox).0 - pages_before,
            found as f64 / n as f64
        );
    }
}

/// For BENCHMARKS.md, not a check: the order mirror on a simulated account (issue 26). The
/// server is `BENCH_BINARY` (a release build), driven over stdio by rmcp's client, against a
/// sandbox of `BENCH_ORDERS` (2,000) generated orders in this process, whose request log counts
/// what was asked of 1NCE:
///
/// 1. the backfill at the default rate limit (`BENCH_PACED=off`: unpaced), while an agent
///    calls `get_order` in bursts of 5 every `BENCH_AGENT_EVERY` seconds (40) on it and on a
///    server without the mirror, at the same time, call for call;
/// 2. `find_orders` by ICCID, by reference and by date range, `BENCH_QUERIES` (200) of each,
///    from the mirror, and `BENCH_LIVE_QUERIES` (20) of each without it (unpaced);
/// 3. a session of 50 typical questions, without the mirror, with a full one, and on a new
///    state directory whose backfill runs meanwhile;
/// 4. the backfill of `BENCH_RSS_ORDERS` (10,000) orders, unpaced, and the server's memory.
///
/// `cargo build --release --bin 1nce-mcp && BENCH_BINARY=$PWD/target/release/1nce-mcp cargo
/// test --test integration mirror::measure -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand for BENCHMARKS.md"]
async fn measure() {
    let n: usize = setting("BENCH_ORDERS", 2000);
    let paced = std::env::var("BENCH_PACED").as_deref() != Ok("off");
    let agent_every = Duration::from_secs(setting("BENCH_AGENT_EVERY", 40));
    let queries: usize = setting("BENCH_QUERIES", 200);
    let live_queries: usize = setting("BENCH_LIVE_QUERIES", 20);
    let rss_orders: usize = setting("BENCH_RSS_ORDERS", 10_000);
    let unpaced = ["--rate-limit", "off"];
    let limit: &[&str] = if paced { &[] } else { &unpaced };

    // 1. The backfill, and an agent's get_order meanwhile, against the same agent without it.
    let (with, without) = (account(n).await, account(n).await);
    let q = Questions::of(&with);
    let dir = temp_dir("state");
    let state = ["--state-dir", dir.to_str().unwrap()];
    let mirrored = server(&with, &state, limit).await;
    let plain = spawn_against(&without, &[&["--mirror", "off"], limit].concat()).await;
    println!(
        "{n} orders, {}; server memory at start: {}",
        if paced {
            "the default rate limit (90/5m, bursts of 10)"
        } else {
            "--rate-limit off"
        },
        memory(&mirrored)
    );
    // The catalogue (which get_order's answer names products from) is read once, before.
    mirrored.ok("list_products", json!({})).await;
    plain.ok("list_products", json!({})).await;
    with.clear_requests();
    without.clear_requests();
    let mut rng = Lcg(24);
    let (mut during, mut during_upstream, mut alone) = (Vec::new(), Vec::new(), Vec::new());
    let started = tokio::time::Instant::now();
    let mut next_burst = started;
    let took = loop {
        if tokio::time::Instant::now() >= next_burst {
            next_burst += agent_every;
            for k in 0..5 {
                let number = FIRST + rng.below(n) as u64;
                let args = json!({"order_number": number});
                // Which of the two goes first alternates.
                for on_mirror in [k % 2 == 0, k % 2 == 1] {
                    let (s, sandbox) = if on_mirror {
                        (&mirrored, &with)
                    } else {
                        (&plain, &without)
                    };
                    let asked = reads(sandbox).1;
                    let t = tokio::time::Instant::now();
                    s.ok("get_order", args.clone()).await;
                    let elapsed = t.elapsed();
                    if on_mirror {
                        during.push(elapsed);
                        if reads(sandbox).1 > asked {
                            during_upstream.push(elapsed);
                        }
                    } else {
                        alone.push(elapsed);
                    }
                }
            }
        }
        let found = mirrored.ok("find_orders", json!({"limit": 1})).await;
        if found["source"] == "mirror" && found["complete"] == true {
            break started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!(
        "backfill of {n} orders: {:.1} s; requests meanwhile: {}",
        took.as_secs_f64(),
        upstream(&with)
    );
    println!("  get_order during the backfill: {}", spread(&mut during));
    println!(
        "  get_order during the backfill, those that asked 1NCE: {}",
        spread(&mut during_upstream)
    );
    println!(
        "  get_order at the same moments, server without the mirror: {}",
        spread(&mut alone)
    );
    println!("  server memory after the backfill: {}", memory(&mirrored));
    plain.stop().await;

    // 2. Searches, from the mirror and (unpaced) without it.
    println!("searches of {n} orders, from the mirror ({queries} of each):");
    with.clear_requests();
    searches(&mirrored, &with, &q, queries).await;
    println!("  requests during the searches: {}", upstream(&with));
    let live = spawn_against(&without, &[&["--mirror", "off"], &unpaced[..]].concat()).await;
    live.ok("list_products", json!({})).await;
    println!(
        "searches of {n} orders, without the mirror, --rate-limit off ({live_queries} of each):"
    );
    without.clear_requests();
    searches(&live, &without, &q, live_queries).await;

    // 3. A session of 50 questions.
    let questions = q.session();
    without.clear_requests();
    let (mut times, requests, whole) = ask(&live, &without, &questions).await;
    println!(
        "session of 50, without the mirror, --rate-limit off: {requests} requests ({:.2} per \
         question), {whole} of 50 whole answers; {}",
        requests as f64 / 50.0,
        spread(&mut times)
    );
    live.stop().await;
    with.clear_requests();
    let (mut times, requests, whole) = ask(&mirrored, &with, &questions).await;
    println!(
        "session of 50, full mirror, same server: {requests} requests ({:.2} per question), \
         {whole} of 50 whole answers; {}; {}",
        requests as f64 / 50.0,
        spread(&mut times),
        upstream(&with)
    );
    mirrored.stop().await;
    // A new host session on the same state directory, as the next day's.
    with.clear_requests();
    let again = server(&with, &state, limit).await;
    let (mut times, requests, whole) = ask(&again, &with, &questions).await;
    println!(
        "session of 50, full mirror, a new process: {requests} requests ({:.2} per question), \
         {whole} of 50 whole answers; {}; {}",
        requests as f64 / 50.0,
        spread(&mut times),
        upstream(&with)
    );
    again.stop().await;
    // A first session on a new state directory: the backfill (unpaced) runs meanwhile.
    let cold_dir = temp_dir("state");
    let cold_state = ["--state-dir", cold_dir.to_str().unwrap()];
    with.clear_requests();
    let cold = server(&with, &cold_state, &unpaced).await;
    let (mut times, requests, whole) = ask(&cold, &with, &questions).await;
    println!(
        "session of 50, new state directory, --rate-limit off: {requests} requests while \
         answering ({:.2} per question), {whole} of 50 whole answers; {}",
        requests as f64 / 50.0,
        spread(&mut times)
    );
    let since = tokio::time::Instant::now();
    until_backfilled(&cold, since).await;
    println!("  after its backfill: {}", upstream(&with));
    cold.stop().await;
    drop((with, without));

    // 4. Memory with many orders kept, the backfill unpaced.
    let big = account(rss_orders).await;
    let big_q = Questions::of(&big);
    let big_dir = temp_dir("state");
    let big_state = ["--state-dir", big_dir.to_str().unwrap()];
    let s = server(&big, &big_state, &unpaced).await;
    println!(
        "{rss_orders} orders, --rate-limit off; server memory at start: {}",
        memory(&s)
    );
    let started = tokio::time::Instant::now();
    s.ok("list_orders", json!({"page_size": 1})).await;
    let took = until_backfilled(&s, started).await;
    println!(
        "  backfill: {:.1} s, {}; server memory then: {}",
        took.as_secs_f64(),
        upstream(&big),
        memory(&s)
    );
    let size = std::fs::metadata(mirror_file(&big_dir)).map_or(0, |m| m.len());
    println!("  mirror.sqlite3: {:.1} MiB", size as f64 / 1_048_576.0);
    big.clear_requests();
    searches(&s, &big, &big_q, queries).await;
    println!("  server memory after the searches: {}", memory(&s));
    s.stop().await;
}

/// The number of the sandbox's first order (`--sandbox-orders` counts up from it).
const FIRST: u64 = 2_000_000_001;
