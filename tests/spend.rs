//! Spend limits over time (issue 29), driven the way clients drive them: MCP clients on the
//! built binary, processes sharing a state directory, replicas sharing PostgreSQL, a lost answer
//! from 1NCE, and a process whose clock is a month off.
//!
//! Every order here is product 1001 (10.00 EUR net a unit in the sandbox) with a reference of
//! its own, so each is a different order with a token of its own.

use onence_mcp::sandbox::{Fault, Sandbox};
use serde_json::{Value, json};

use crate::common::{self, confirming, posts, run, sandbox_env, spawn_against, temp_dir, text};

fn order(units: u64, reference: &str) -> Value {
    json!({"products": [{"product_id": 1001, "quantity": units}], "customer_reference": reference})
}

/// The state directory's audit trail, one JSON value per record.
fn audit(state: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(state.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_confirmations_from_two_processes_place_exactly_what_fits() {
    let sandbox = Sandbox::start().await.unwrap();
    let state = temp_dir("spend");
    let dir = state.to_str().unwrap();
    let args = [
        "--state-dir",
        dir,
        "--spend-limit",
        "75EUR/month",
        "--rate-limit",
        "off",
    ];
    let processes = [
        spawn_against(&sandbox, &args).await,
        spawn_against(&sandbox, &args).await,
    ];
    // Twenty different orders of 10.00 EUR, each previewed (each fits alone) then confirmed all
    // at once, half through each process: 75.00 EUR holds seven.
    let mut confirmations = Vec::new();
    for i in 0..20 {
        let args = order(1, &format!("R-{i}"));
        let preview = processes[i % 2].ok("create_order", args.clone()).await;
        assert!(
            preview["next_step"].is_string()
                && preview["preview"]["spend_limits_after"][0]["left"] == "65.00 EUR",
            "{preview}"
        );
        confirmations.push(confirming(&args, &preview));
    }
    let results = futures::future::join_all(
        confirmations
            .iter()
            .enumerate()
            .map(|(i, args)| processes[i % 2].call("create_order", args.clone())),
    )
    .await;
    let placed = results
        .iter()
        .filter(|r| {
            r.structured_content
                .as_ref()
                .is_some_and(|s| s["status"] == "placed")
        })
        .count();
    assert_eq!(placed, 7, "exactly as many as fit");
    assert_eq!(posts(&sandbox), 7, "never one more");
    for refused in results.iter().filter(|r| r.is_error == Some(true)) {
        let said = text(refused);
        assert!(
            said.contains("would exceed the operator's spend limit of 75.00 EUR per month")
                && said.contains("this order: 10.00 EUR net")
                && said.contains("Nothing was ordered"),
            "{said}"
        );
    }

    // What is left, as both processes see it, and a preview that does not fit names both figures.
    for process in &processes {
        let products = process.ok("list_products", json!({})).await;
        let standing = &products["spend_limits"][0];
        assert_eq!(
            (&standing["spent"], &standing["left"], &standing["period"]),
            (&json!("70.00 EUR"), &json!("5.00 EUR"), &json!("month")),
            "{products}"
        );
    }
    let refused = processes[0].err("create_order", order(1, "one more")).await;
    assert!(
        refused.contains("this order: 10.00 EUR net; left this month: 5.00 EUR of 75.00 EUR")
            && refused.contains("Nothing was ordered"),
        "{refused}"
    );

    // The audit trail has the figure each confirmation's reservation used.
    let records = audit(&state);
    let mut before: Vec<String> = records
        .iter()
        .filter(|r| r["event"] == "post")
        .map(|r| r["spend"][0]["spent_before"].as_str().unwrap().to_owned())
        .collect();
    before.sort();
    assert_eq!(
        before,
        ["0.00", "10.00", "20.00", "30.00", "40.00", "50.00", "60.00"].map(|a| format!("{a} EUR")),
        "{records:#?}"
    );
    for process in processes {
        process.stop().await;
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_confirmations_over_two_replicas_on_postgresql_place_exactly_what_fits() {
    use crate::common::net::{HttpServer, stateless_call};
    use crate::common::pg::Postgres;
    let Some(pg) = Postgres::start() else {
        return;
    };
    let sandbox = Sandbox::start().await.unwrap();
    let url = pg.url();
    let args = [
        "--state-url",
        url.as_str(),
        "--spend-limit",
        "75EUR/month",
        "--rate-limit",
        "off",
    ];
    let replicas = [
        HttpServer::against(&sandbox.base_url(), &args, &[]).await,
        HttpServer::against(&sandbox.base_url(), &args, &[]).await,
    ];
    let mut confirmations = Vec::new();
    for i in 0..20 {
        let args = order(1, &format!("R-{i}"));
        let preview = stateless_call(&replicas[i % 2], "create_order", args.clone()).await;
        confirmations.push(confirming(&args, &preview["structuredContent"]));
    }
    let results = futures::future::join_all(
        confirmations
            .iter()
            .enumerate()
            .map(|(i, args)| stateless_call(&replicas[(i + 1) % 2], "create_order", args.clone())),
    )
    .await;
    let placed = results
        .iter()
        .filter(|r| r["structuredContent"]["status"] == "placed")
        .count();
    assert_eq!(placed, 7, "{results:#?}");
    assert_eq!(posts(&sandbox), 7);
    assert_eq!(
        pg.query("SELECT sum(cents) FROM spend_ledger WHERE state = 'placed'"),
        ["7000"]
    );
    for replica in replicas {
        replica.stop().await;
    }
}

#[tokio::test]
async fn an_unknown_outcome_counts_until_it_is_found_absent() {
    let sandbox = Sandbox::start().await.unwrap();
    let state = temp_dir("spend");
    let args = [
        "--state-dir",
        state.to_str().unwrap(),
        "--spend-limit",
        "25EUR/day",
    ];
    let server = spawn_against(&sandbox, &args).await;

    // The POST's connection drops before 1NCE handles it: nothing was ordered, but nobody can
    // know that yet, so its 20.00 EUR count.
    let lost = order(2, "lost");
    let preview = server.ok("create_order", lost.clone()).await;
    let confirm = confirming(&lost, &preview);
    sandbox.inject(Fault::drop_connection("POST", "/v1/orders"));
    let unknown = server.err("create_order", confirm.clone()).await;
    assert!(
        unknown.starts_with("OUTCOME UNKNOWN")
            && unknown.contains("counts against the operator's spend limits"),
        "{unknown}"
    );
    let refused = server.err("create_order", order(1, "next")).await;
    assert!(
        refused.contains("left today: 5.00 EUR of 25.00 EUR"),
        "{refused}"
    );

    // Looking again with the token before 1NCE has had time finds nothing, and keeps counting.
    let early = server.err("create_order", confirm.clone()).await;
    assert!(early.contains("counts against"), "{early}");

    // Five minutes later by the state's clock (the reservation backdated, as time passing would):
    // the same look finds no such order, and releases the amount. Nothing is ever posted again.
    let ledger = rusqlite::Connection::open(state.join("ledger.sqlite3")).unwrap();
    ledger
        .execute("UPDATE spend SET at_ms = at_ms - 360000", [])
        .unwrap();
    let looked = server.err("create_order", confirm).await;
    assert!(
        looked.contains("no longer counts against the operator's spend limits"),
        "{looked}"
    );
    let fits = server.ok("create_order", order(1, "next")).await;
    assert_eq!(
        fits["preview"]["spend_limits_after"][0]["left"], "15.00 EUR",
        "{fits}"
    );
    assert_eq!(posts(&sandbox), 1, "the lost order was never sent again");

    // An order that 1NCE did create before the answer was lost is found, and keeps counting.
    let found = order(1, "found");
    let preview = server.ok("create_order", found.clone()).await;
    sandbox.inject(Fault::drop_connection("POST", "/v1/orders").after_handling());
    let confirm = confirming(&found, &preview);
    let said = server.err("create_order", confirm.clone()).await;
    assert!(said.contains("Found it"), "{said}");
    ledger
        .execute("UPDATE spend SET at_ms = at_ms - 360000", [])
        .unwrap();
    let again = server.err("create_order", confirm).await;
    assert!(
        again.contains("Found it") && !again.contains("no longer counts"),
        "{again}"
    );
    let products = server.ok("list_products", json!({})).await;
    assert_eq!(
        products["spend_limits"][0]["spent"], "10.00 EUR",
        "{products}"
    );
    server.stop().await;
}

/// The budget is the state store's reckoning: a process whose clock says it is next month
/// neither sees a fresh budget nor gets to spend one.
#[tokio::test]
async fn a_clock_a_month_ahead_does_not_reopen_a_spent_budget() {
    if !common::faketime_installed() {
        return;
    }
    let sandbox = Sandbox::start().await.unwrap();
    let url = sandbox.base_url();
    let env = sandbox_env(&url);
    let state = temp_dir("spend");
    let dir = state.to_str().unwrap();
    let base = ["--state-dir", dir, "--spend-limit", "30EUR/month"];
    let call = |clock: Option<&'static str>, args: String| {
        let mut argv = base.to_vec();
        argv.extend(["call", "create_order", "--args"]);
        async move {
            let mut argv: Vec<String> = argv.into_iter().map(str::to_owned).collect();
            argv.push(args);
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            run(clock, &argv, &env).await
        }
    };
    let spend = order(3, "all of it").to_string();
    let preview = call(None, spend.clone()).await;
    let placed = call(None, preview.confirming(&spend)).await;
    assert_eq!(placed.code, 0, "{placed:?}");

    let ahead = call(Some("+35d"), order(1, "next month?").to_string()).await;
    assert_eq!(ahead.code, 1, "{ahead:?}");
    assert_eq!(posts(&sandbox), 1);
    let mut check = base.to_vec();
    check.push("check");
    let checked = run(Some("+35d"), &check, &env).await;
    assert!(
        checked
            .stdout
            .contains("spend limit 30.00 EUR per month: 30.00 EUR spent, 0.00 EUR left this month"),
        "{checked:?}"
    );
    let now = run(None, &check, &env).await;
    assert_eq!(now.code, 0, "{now:?}");
    assert!(now.stdout.contains("30.00 EUR spent"), "{now:?}");
}

#[tokio::test]
async fn malformed_limits_and_per_person_limits_without_oauth_are_refused_at_start() {
    for (args, says) in [
        (vec!["--spend-limit", "5000EUR"], "5000EUR/month"),
        (
            vec!["--spend-limit", "5000EUR/year"],
            "periods: day, week, month",
        ),
        (
            vec!["--sandbox", "--spend-limit-per-person", "500EUR/day"],
            "needs OAuth",
        ),
    ] {
        let mut argv = args.clone();
        argv.push("check");
        let refused = run(None, &argv, &[]).await;
        assert_eq!(refused.code, 2, "{args:?}: {refused:?}");
        assert!(
            refused.stderr.contains(says),
            "{args:?}: {}",
            refused.stderr
        );
    }
    let from_env = run(None, &["check"], &[("ONCE_SPEND_LIMIT", "100EUR/day,x")]).await;
    assert_eq!(from_env.code, 2, "{from_env:?}");
    assert!(
        from_env.stderr.contains("\"x\" is not a spend limit"),
        "{}",
        from_env.stderr
    );
}
