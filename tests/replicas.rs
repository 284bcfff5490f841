//! Several replicas (`--http`) sharing one PostgreSQL (`--state-url`) in front of one simulated
//! 1NCE: single use of tokens, declines, the audit trail and the rate limit hold across them,
//! and a database that goes away refuses orders until it is back.

use std::time::Duration;

use onence_mcp::sandbox::Sandbox;
use serde_json::{Value, json};

use crate::common::net::{HttpServer, stateless_call, stateless_request, stateless_request_with};
use crate::common::pg::Postgres;
use crate::common::{self, PATIENCE, confirming, posts};

fn order() -> Value {
    json!({"products": [{"product_id": 1001, "quantity": 3}]})
}

/// `n` replicas against `sandbox`, sharing `pg`, with `args` besides `--state-url`.
async fn replicas(n: usize, sandbox: &Sandbox, pg: &Postgres, args: &[&str]) -> Vec<HttpServer> {
    let url = pg.url();
    let mut all = vec!["--state-url", url.as_str()];
    all.extend_from_slice(args);
    let mut started = Vec::new();
    for _ in 0..n {
        started.push(HttpServer::against(&sandbox.base_url(), &all, &[]).await);
    }
    started
}

/// A PostgreSQL, a sandbox and `n` replicas sharing them; `None` when PostgreSQL is absent.
async fn cluster(n: usize, args: &[&str]) -> Option<(Postgres, Sandbox, Vec<HttpServer>)> {
    let pg = Postgres::start()?;
    let sandbox = Sandbox::start().await.unwrap();
    let servers = replicas(n, &sandbox, &pg, args).await;
    Some((pg, sandbox, servers))
}

/// A stateless preview on `server`: the arguments that confirm it.
async fn approved(server: &HttpServer) -> Value {
    let preview = stateless_call(server, "create_order", order()).await;
    confirming(&order(), &preview["structuredContent"])
}

fn status(result: &Value) -> String {
    result["structuredContent"]["status"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn text(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_confirmations_over_three_replicas_place_one_order_and_all_is_audited() {
    let Some((pg, sandbox, servers)) = cluster(3, &["--rate-limit", "off"]).await else {
        return;
    };
    let confirm = approved(&servers[0]).await;
    let confirmations = (0..40).map(|i| {
        let server = &servers[i % servers.len()];
        let args = confirm.clone();
        async move { stateless_call(server, "create_order", args).await }
    });
    let results = futures::future::join_all(confirmations).await;
    let placed: Vec<&Value> = results.iter().filter(|r| status(r) == "placed").collect();
    assert_eq!(placed.len(), 1, "{results:?}");
    assert_eq!(posts(&sandbox), 1);
    for refused in results.iter().filter(|r| status(r) != "placed") {
        assert_eq!(refused["isError"], true, "{refused}");
        let said = text(refused);
        assert!(said.contains("nothing more was ordered"), "{said}");
    }

    // A token previewed on one replica is confirmed on another.
    let confirm = approved(&servers[1]).await;
    let placed = stateless_call(&servers[2], "create_order", confirm).await;
    assert_eq!(status(&placed), "placed", "{placed}");
    assert_eq!(posts(&sandbox), 2);

    // Every step of every replica is in the one trail, in order.
    let rows = pg.query(
        "SELECT event, coalesce(record->>'outcome', ''), replica FROM audit_trail WHERE event IN ('preview', 'post', 'outcome') ORDER BY seq",
    );
    let steps: Vec<String> = rows
        .iter()
        .map(|r| r.rsplit_once('|').unwrap().0.to_owned())
        .collect();
    assert_eq!(
        steps,
        [
            "preview|",
            "post|",
            "outcome|placed",
            "preview|",
            "post|",
            "outcome|placed"
        ],
        "{rows:?}"
    );
    let writers: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r.rsplit('|').next().unwrap()).collect();
    assert!(writers.len() >= 2, "{rows:?}");
    // The 39 refusals are audited too, none of them with a POST.
    let refused = pg.query("SELECT count(*) FROM audit_trail WHERE event = 'refused'");
    assert_eq!(refused, ["39"]);
    let used = pg.query("SELECT state, count(*) FROM used_tokens GROUP BY state");
    assert_eq!(used, ["placed|2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_on_one_replica_hold_on_another_and_every_step_is_audited() {
    let Some((pg, sandbox, servers)) = cluster(2, &[]).await else {
        return;
    };
    let asks = json!({"elicitation": {}});
    let preview = stateless_request(
        &servers[0],
        json!({"name": "create_order", "arguments": order()}),
        asks.clone(),
    )
    .await;
    let confirm = json!({"name": "create_order",
        "arguments": confirming(&order(), &preview["structuredContent"])});
    let question = stateless_request(&servers[0], confirm.clone(), asks.clone()).await;
    let state = question["requestState"].clone();
    assert!(state.is_string(), "{question}");
    let mut answer = confirm.clone();
    answer["requestState"] = state;
    answer["inputResponses"] = json!({"approve_order": {"action": "decline"}});
    // The question asked by one replica is answered on the other: they share the seal's key.
    let declined = stateless_request(&servers[1], answer, asks.clone()).await;
    assert_eq!(declined["isError"], true, "{declined}");
    assert!(text(&declined).contains("declined"), "{declined}");

    let elsewhere = stateless_request(&servers[0], confirm, asks.clone()).await;
    assert_eq!(elsewhere["isError"], true, "{elsewhere}");
    let said = text(&elsewhere);
    assert!(said.contains("declined this order"), "{said}");
    assert_eq!(posts(&sandbox), 0);
    assert_eq!(
        pg.query("SELECT state FROM used_tokens"),
        ["declined"],
        "the decline is recorded once, in the shared table"
    );
    let events = pg.query("SELECT event || '/' || replica FROM audit_trail ORDER BY seq");
    let events: Vec<&str> = events
        .iter()
        .map(|e| e.split('/').next().unwrap())
        .collect();
    assert_eq!(events, ["preview", "declined", "refused"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replicas_share_one_rate_limit() {
    // Bursts of 3, then one request a minute: a few seconds of calls get 3 through, all told.
    let limit = [
        "--rate-limit",
        "1/60s",
        "--rate-burst",
        "3",
        "--retry-budget",
        "1s",
    ];
    let Some((_pg, sandbox, servers)) = cluster(2, &limit).await else {
        return;
    };
    let calls = (0..10).map(|i| {
        let server = &servers[i % servers.len()];
        async move { stateless_call(server, "list_orders", json!({"page_size": 1})).await }
    });
    let results = futures::future::join_all(calls).await;
    let throttled = results
        .iter()
        .filter(|r| text(r).contains("too many 1NCE requests"))
        .count();
    assert_eq!(common::api_requests(&sandbox), 3, "{results:?}");
    assert_eq!(throttled, 7, "{results:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_refused_while_the_database_is_down_and_work_again_after() {
    let Some((pg, sandbox, servers)) = cluster(2, &[]).await else {
        return;
    };
    let confirm = approved(&servers[0]).await;

    pg.stop();
    let refused = stateless_call(&servers[1], "create_order", confirm.clone()).await;
    assert_eq!(refused["isError"], true, "{refused}");
    assert!(text(&refused).contains("othing was ordered"), "{refused}");
    let again = stateless_call(&servers[0], "create_order", order()).await;
    assert_eq!(again["isError"], true, "{again}");
    assert!(text(&again).contains("othing was ordered"), "{again}");
    // Reads cannot consult the shared rate limit: they fail saying so, and send nothing.
    let before = common::api_requests(&sandbox);
    let read = stateless_call(&servers[1], "list_orders", json!({})).await;
    assert_eq!(read["isError"], true, "{read}");
    assert!(text(&read).contains("could not be consulted"), "{read}");
    assert_eq!(common::api_requests(&sandbox), before);
    assert_eq!(posts(&sandbox), 0);

    pg.start_again();
    // Each replica recovers by itself: the token was never claimed, so it still confirms.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let placed = loop {
        let result = stateless_call(&servers[1], "create_order", confirm.clone()).await;
        if status(&result) == "placed" || tokio::time::Instant::now() > deadline {
            break result;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status(&placed), "placed", "{placed}");
    assert_eq!(posts(&sandbox), 1);
    let read = stateless_call(&servers[0], "list_orders", json!({})).await;
    assert_ne!(read["isError"], true, "{read}");
    let steps = pg.query(
        "SELECT event || coalesce('/' || (record->>'outcome'), '') FROM audit_trail WHERE event <> 'refused' ORDER BY seq",
    );
    assert_eq!(steps, ["preview", "post", "outcome/placed"], "{steps:?}");
}

#[tokio::test]
async fn migrations_run_twice_at_once_and_check_reports_the_database() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let url = pg.url();
    let run = || {
        common::command(&["check", "--sandbox", "--state-url", &url], &[])
            .stdin(std::process::Stdio::null())
            .output()
    };
    let (a, b) = tokio::join!(run(), run());
    for out in [a.unwrap(), b.unwrap()] {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("state database postgres://postgres@127.0.0.1"),
            "{stdout}"
        );
        assert!(stdout.contains("ready (PostgreSQL"), "{stdout}");
    }
    assert_eq!(
        pg.query("SELECT version FROM schema_migrations ORDER BY version"),
        ["1", "2", "3", "4", "5"]
    );
    assert_eq!(pg.query("SELECT count(*) FROM signing_keys"), ["1"]);
    assert_eq!(
        pg.query("SELECT kind, api_url IS NULL, client_id IS NULL FROM store_account"),
        ["built_in_sandbox|t|t"]
    );

    // The serving role of docs/operations.md's "Setting up the database" (no CREATE) starts on the migrated schema.
    for grant in [
        "CREATE ROLE once_mcp LOGIN",
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON used_tokens, rate_buckets, order_mirror, order_mirror_sims, order_mirror_sync TO once_mcp",
        "GRANT SELECT, INSERT, UPDATE ON sweep_mark, spend_ledger TO once_mcp",
        "GRANT SELECT, INSERT ON signing_keys, schema_migrations TO once_mcp",
        "GRANT SELECT ON store_account TO once_mcp",
        "GRANT INSERT ON audit_trail TO once_mcp",
        "GRANT USAGE ON SEQUENCE audit_trail_seq_seq TO once_mcp",
    ] {
        pg.query(grant);
    }
    let serving = url.replace("postgres://postgres@", "postgres://once_mcp@");
    let out = common::command(&["check", "--sandbox", "--state-url", &serving], &[])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And orders within a spend limit with those grants: preview, then confirmation.
    let state = [
        "--sandbox",
        "--state-url",
        &serving,
        "--spend-limit",
        "100EUR/day",
    ];
    let order = r#"{"products": [{"product_id": 1001, "quantity": 1}]}"#;
    let mut argv = state.to_vec();
    argv.extend(["call", "create_order", "--args", order]);
    let preview = common::run(None, &argv, &[]).await;
    let confirm = preview.confirming(order);
    let mut argv = state.to_vec();
    argv.extend(["call", "create_order", "--args", &confirm]);
    let placed = common::run(None, &argv, &[]).await;
    assert_eq!(placed.code, 0, "{placed:?}");
    assert_eq!(
        pg.query("SELECT cents, state FROM spend_ledger"),
        ["1000|placed"]
    );

    // TLS: `prefer` (no sslmode) falls back to plain with a server without TLS; `require` refuses.
    let prefer = url.replace("?sslmode=disable", "");
    let require = url.replace("sslmode=disable", "sslmode=require");
    for (url, code) in [(&prefer, 0), (&require, 3)] {
        let out = common::command(&["check", "--sandbox", "--state-url", url], &[])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{url}: {stderr}");
        if code == 3 {
            assert!(stderr.contains("TLS"), "{stderr}");
        }
    }

    // Unreachable at start-up: a clear exit, naming the database without a password.
    pg.stop();
    let out = common::command(
        &["check", "--sandbox", "--state-url", &url],
        &[("PGPASSWORD", "hunter2-secret")],
    )
    .stdin(std::process::Stdio::null())
    .output()
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("the state database postgres://postgres@127.0.0.1"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// Every table of the state database, each as a digest of its rows, for "nothing was changed".
fn tables(pg: &Postgres) -> Vec<String> {
    [
        "schema_migrations",
        "store_account",
        "used_tokens",
        "sweep_mark",
        "audit_trail",
        "signing_keys",
        "rate_buckets",
        "spend_ledger",
        "order_mirror",
        "order_mirror_sims",
        "order_mirror_sync",
    ]
    .iter()
    .map(|table| {
        let rows = pg.query(&format!(
            "SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') FROM {table} t"
        ));
        format!("{table}: {}", rows.join(""))
    })
    .collect()
}

#[tokio::test]
async fn a_database_is_one_accounts_and_the_built_in_sandbox_is_refused_untouched() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let sandbox = Sandbox::start().await.unwrap();
    let url = pg.url();
    let base = sandbox.base_url();
    let api = base.trim_end_matches('/').to_owned();
    let live_env = common::sandbox_env(&base);
    // A live-style deployment (1NCE at `sandbox`, its client id) orders within a spend limit,
    // with the order mirror on.
    let live = [
        "--state-url",
        url.as_str(),
        "--spend-limit",
        "100EUR/day",
        "--mirror",
        "on",
    ];
    let order = r#"{"products": [{"product_id": 1001, "quantity": 1}]}"#;
    let preview = common::run(
        None,
        &[&live[..], &["call", "create_order", "--args", order]].concat(),
        &live_env,
    )
    .await;
    let confirm = preview.confirming(order);
    let placed = common::run(
        None,
        &[&live[..], &["call", "create_order", "--args", &confirm]].concat(),
        &live_env,
    )
    .await;
    assert_eq!(placed.code, 0, "{placed:?}");
    assert_eq!(
        pg.query("SELECT kind, api_url, client_id FROM store_account"),
        [format!(
            "api|{api}|{}",
            onence_mcp::sandbox::SANDBOX_CLIENT_ID
        )]
    );
    let before = tables(&pg);

    // `--sandbox` on the same database: refused at start-up and by `check`, nothing changed.
    let expected = format!(
        "belongs to the 1NCE account of client id \"{}\" at {api}; this process is the built-in sandbox (--sandbox).",
        onence_mcp::sandbox::SANDBOX_CLIENT_ID
    );
    for args in [
        &[
            "--sandbox",
            "--state-url",
            &url,
            "--mirror",
            "on",
            "call",
            "find_orders",
        ][..],
        &[
            "--sandbox",
            "--state-url",
            &url,
            "--spend-limit",
            "100EUR/day",
            "call",
            "create_order",
            "--args",
            order,
        ],
        &["check", "--sandbox", "--state-url", &url],
    ] {
        let refused = common::run(None, args, &[]).await;
        assert_eq!(refused.code, 2, "{args:?}: {refused:?}");
        assert!(refused.stdout.is_empty(), "{refused:?}");
        assert!(
            refused
                .stderr
                .contains("the state database postgres://postgres@127.0.0.1"),
            "{refused:?}"
        );
        assert!(refused.stderr.contains(&expected), "{refused:?}");
        assert!(
            refused.stderr.contains("nothing was changed"),
            "{refused:?}"
        );
    }
    assert_eq!(tables(&pg), before, "nothing was changed");
    let again = common::run(
        None,
        &[&live[..], &["call", "list_orders"]].concat(),
        &live_env,
    )
    .await;
    assert_eq!(again.code, 0, "{again:?}");

    // A database of the earlier version (migrations 1 to 4, no record) is adopted by the first
    // account to open it, here the live one again (the owner's `check` after the upgrade, which
    // says so), and then refuses the sandbox as before.
    pg.query("DROP TABLE store_account");
    pg.query("DELETE FROM schema_migrations WHERE version = 5");
    let adopted = common::run(None, &["check", "--state-url", &url], &live_env).await;
    assert_eq!(adopted.code, 0, "{adopted:?}");
    assert!(
        adopted.stdout.contains(&format!(
            "state store: the state database postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable recorded no 1NCE account (an earlier version of 1nce-mcp made it, or its record was deleted): it now belongs to the 1NCE account of client id \"{}\" at {api}",
            pg.port(),
            onence_mcp::sandbox::SANDBOX_CLIENT_ID
        )),
        "{adopted:?}"
    );
    assert_eq!(
        pg.query("SELECT version FROM schema_migrations ORDER BY version"),
        ["1", "2", "3", "4", "5"]
    );
    let refused = common::run(None, &["check", "--sandbox", "--state-url", &url], &[]).await;
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains(&expected), "{refused:?}");
}

/// The single-use id of `token`: the hex of bytes 1..17 of its payload (see `orders::tokens`).
fn token_id(token: &Value) -> String {
    use base64::Engine as _;
    let payload = token.as_str().unwrap().strip_prefix("ct_").unwrap();
    let payload = payload.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    bytes[1..17].iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_post_leaves_a_token_of_unknown_outcome_never_a_free_one() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let sandbox = Sandbox::start().await.unwrap();
    // At the most verbose logging, with a password given: neither it nor the key is logged.
    let url = pg.url();
    let server = HttpServer::against(
        &sandbox.base_url(),
        &["--state-url", &url],
        &[("RUST_LOG", "trace"), ("PGPASSWORD", "pw-4c1d0e9a")],
    )
    .await;
    let servers = [server];
    let confirm = approved(&servers[0]).await;
    // What a replica leaves when it dies after its claim: a `posting` row, here a fresh one.
    let id = token_id(&confirm["confirmation_token"]);
    pg.query(&format!(
        "INSERT INTO used_tokens (id, state, record, content, at_ms) VALUES ('{id}', 'posting', \
         jsonb_build_object('state', 'posting', 'at', (extract(epoch FROM now()) * 1000)::bigint, 'content', ''), \
         '', (extract(epoch FROM now()) * 1000)::bigint)"
    ));
    let busy = stateless_call(&servers[0], "create_order", confirm.clone()).await;
    assert!(text(&busy).contains("being used by another call"), "{busy}");
    // Older than the posting grace (the request timeout and a minute): outcome unknown.
    pg.query(&format!(
        "UPDATE used_tokens SET at_ms = at_ms - 3600000, record = jsonb_set(record, '{{at}}', to_jsonb(at_ms - 3600000)) WHERE id = '{id}'"
    ));
    let unknown = stateless_call(&servers[0], "create_order", confirm).await;
    assert_eq!(unknown["isError"], true, "{unknown}");
    assert!(text(&unknown).contains("OUTCOME UNKNOWN"), "{unknown}");
    assert_eq!(posts(&sandbox), 0);
    let key = pg.query("SELECT encode(key, 'hex'), get_byte(key, 0), get_byte(key, 1), get_byte(key, 2) FROM signing_keys");
    let fields: Vec<&str> = key[0].split('|').collect();
    let as_debug = format!("[{}, {}, {}", fields[1], fields[2], fields[3]);
    let logged = servers[0].stderr();
    assert!(
        logged.contains("TRACE") || logged.contains("DEBUG"),
        "trace logging is on"
    );
    for secret in [fields[0], &as_debug, "pw-4c1d0e9a"] {
        assert!(!logged.contains(secret), "{secret} in the log");
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// For BENCHMARKS.md, not a check: the latency a confirmation gains from PostgreSQL and from a
/// spend limit, and the calls per second of one and two replicas. `BENCH_BINARY=target/profiling/
/// 1nce-mcp cargo test --test integration replicas::measure -- --ignored --nocapture`, with
/// `BENCH_PG_DURABLE=1` for a PostgreSQL that syncs its commits to disk as the state directory
/// does, and `BENCH_SPEND=off` for a binary older than `--spend-limit`.
///
/// Every store's server runs from the start, and each round previews and confirms one order on
/// each of them in turn (the first of them changing from round to round), so a busy moment of
/// this shared machine falls on all of them alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand for BENCHMARKS.md"]
async fn measure_confirmation_latency_and_replica_throughput() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let sandbox = Sandbox::start().await.unwrap();
    let url = pg.url();
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    // A limit far above what the rounds order (30 EUR each): it never binds, but every preview
    // reads the ledger and every confirmation checks it and reserves in its claim's transaction.
    let spend = ["--spend-limit", "100000000EUR/month"];
    let postgres = ["--state-url", url.as_str()];
    let mut stores: Vec<(&str, Vec<&str>)> = vec![
        ("state directory", vec![]),
        ("PostgreSQL", postgres.to_vec()),
    ];
    if std::env::var("BENCH_SPEND").as_deref() != Ok("off") {
        stores.push(("state directory, spend limit", spend.to_vec()));
        stores.push(("PostgreSQL, spend limit", [&postgres[..], &spend].concat()));
    }
    let mut servers = Vec::new();
    for (_, args) in &stores {
        let args = [&["--rate-limit", "off"][..], args].concat();
        servers.push(HttpServer::against(&sandbox.base_url(), &args, &[]).await);
    }
    let http = reqwest::Client::new();
    let (mut previews, mut confirms) = (
        vec![Vec::new(); stores.len()],
        vec![Vec::new(); stores.len()],
    );
    for i in 0..rounds + 10 {
        for k in 0..stores.len() {
            let k = (i + k) % stores.len();
            let call = |arguments: Value| {
                let params = json!({"name": "create_order", "arguments": arguments});
                stateless_request_with(&http, &servers[k], params, json!({}))
            };
            let started = tokio::time::Instant::now();
            let preview = call(order()).await;
            let previewed = started.elapsed();
            let started = tokio::time::Instant::now();
            let placed = call(confirming(&order(), &preview["structuredContent"])).await;
            let confirmed = started.elapsed();
            assert_eq!(status(&placed), "placed", "{}: {placed}", stores[k].0);
            if i >= 10 {
                previews[k].push(previewed);
                confirms[k].push(confirmed);
            }
        }
    }
    for (k, (label, _)) in stores.iter().enumerate() {
        previews[k].sort();
        confirms[k].sort();
        println!(
            "{label}: preview p50 {:?} p90 {:?}; confirmation p50 {:?} p90 {:?} ({rounds} each)",
            percentile(&previews[k], 0.5),
            percentile(&previews[k], 0.9),
            percentile(&confirms[k], 0.5),
            percentile(&confirms[k], 0.9)
        );
    }
    for server in servers {
        server.stop().await;
    }
    // Throughput of reads through the shared rate limit (a limit too high to bind, so every call
    // consults the database and none waits), one replica and two, 32 clients.
    let limit = ["--rate-limit", "1000000/1s", "--rate-burst", "1000"];
    for (n, shared) in [(1, false), (1, true), (2, true)] {
        let servers = if shared {
            replicas(n, &sandbox, &pg, &limit).await
        } else {
            vec![HttpServer::against(&sandbox.base_url(), &limit, &[]).await]
        };
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let until = tokio::time::Instant::now() + Duration::from_secs(10);
        let workers = (0..32).map(|w| {
            let server = &servers[w % n];
            let calls = &calls;
            async move {
                let http = reqwest::Client::new();
                let params = json!({"name": "list_orders", "arguments": {"page_size": 1}});
                while tokio::time::Instant::now() < until {
                    let read =
                        stateless_request_with(&http, server, params.clone(), json!({})).await;
                    assert_ne!(read["isError"], true, "{read}");
                    calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        futures::future::join_all(workers).await;
        let total = calls.into_inner();
        println!(
            "{n} replica(s), rate limit {}, 32 clients, 10 s: {total} list_orders calls, {:.0} calls/s",
            if shared {
                "shared in PostgreSQL"
            } else {
                "in memory"
            },
            total as f64 / 10.0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_used_tokens_table_keeps_the_single_use_contract() {
    use onence_mcp::state::ledger::check_contract;
    use onence_mcp::state::{DbTarget, Location, Store};
    let Some(pg) = Postgres::start() else {
        return;
    };
    let target = DbTarget {
        config: pg.url().parse().unwrap(),
        shown: "test".to_owned(),
    };
    let store = Store::open(
        &Location::Postgres(Box::new(target)),
        &onence_mcp::state::Account::BuiltInSandbox,
    )
    .await
    .unwrap();
    check_contract(&store).await;
    onence_mcp::state::mirror::check_mirror_contract(&store).await;
    onence_mcp::state::spend::check_spend_contract(&store).await;
}
