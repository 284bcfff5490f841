//! `1nce-mcp check`: a verdict on credentials and reachability, with an exit status per kind of
//! problem, against the built-in sandbox and against a sandbox the test breaks on purpose.

use onence_mcp::sandbox::{Fault, SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, Sandbox};

use crate::common::command;

async fn check(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut all = vec!["check", "--max-retries", "0"];
    all.extend_from_slice(args);
    let out = command(&all, env).output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn ready_against_the_built_in_sandbox() {
    let (code, report) = check(&["--sandbox"], &[]).await;
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("ok    access token"), "{report}");
    assert!(report.contains("25 order(s)"), "{report}");
    assert!(report.contains("4 orderable product(s)"), "{report}");
    assert!(report.contains("verdict: ready"), "{report}");
}

#[tokio::test]
async fn each_kind_of_failure_has_its_exit_status() {
    let sandbox = Sandbox::start().await.unwrap();
    let url = sandbox.base_url();
    let env = |secret: &'static str| {
        [
            ("ONCE_API_URL", url.clone()),
            ("ONCE_CLIENT_ID", SANDBOX_CLIENT_ID.to_owned()),
            ("ONCE_CLIENT_SECRET", secret.to_owned()),
        ]
    };
    let wrong = env("wrong-secret");
    let wrong = wrong.each_ref().map(|(k, v)| (*k, v.as_str()));
    let (code, report) = check(&[], &wrong).await;
    assert_eq!(code, 4, "{report}");
    assert!(report.contains("credentials refused"), "{report}");
    assert!(report.contains("skip  orders"), "{report}");
    assert!(
        !report.contains("wrong-secret"),
        "the secret is never shown"
    );

    let right = env(SANDBOX_CLIENT_SECRET);
    let right = right.each_ref().map(|(k, v)| (*k, v.as_str()));
    sandbox.inject(Fault::status("GET", "/v1/orders", 200).with_body("{not json"));
    let (code, report) = check(&[], &right).await;
    assert_eq!(code, 6, "{report}");
    assert!(report.contains("FAIL  orders"), "{report}");

    sandbox.inject(Fault::status("GET", "/v1/products", 503));
    let (code, report) = check(&[], &right).await;
    assert_eq!(code, 5, "{report}");
    assert!(report.contains("FAIL  products"), "{report}");

    let (code, report) = check(&[], &right).await;
    assert_eq!(code, 0, "{report}");
}

/// 1NCE that keeps answering 429 or 503, or keeps dropping the connection, is unreachable (5),
/// as `--help` and README say, also once the retries ran out.
#[tokio::test]
async fn retries_that_run_out_are_unreachable_not_unexpected() {
    let sandbox = Sandbox::start().await.unwrap();
    let url = sandbox.base_url();
    let env = [
        ("ONCE_API_URL", url.as_str()),
        ("ONCE_CLIENT_ID", SANDBOX_CLIENT_ID),
        ("ONCE_CLIENT_SECRET", SANDBOX_CLIENT_SECRET),
    ];
    let retrying = ["--max-retries", "1", "--retry-backoff", "1ms"];
    for (what, fault) in [
        ("429", Fault::status("GET", "/v1/orders", 429).times(2)),
        ("503", Fault::status("GET", "/v1/orders", 503).times(2)),
        (
            "dropped",
            Fault::drop_connection("GET", "/v1/orders").times(2),
        ),
    ] {
        sandbox.inject(fault);
        let mut args = vec!["check"];
        args.extend_from_slice(&retrying);
        let out = command(&args, &env).output().await.unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(5), "{what}: {report}");
        assert!(report.contains("1NCE unreachable"), "{what}: {report}");
    }
}

/// With OAuth configured, `check` reads the authorization server's metadata as the server does
/// at start-up: a dead issuer is a failure (3, as the server would exit) with the fix, not
/// "ready"; the 1NCE lines are still there.
#[cfg(feature = "oauth")]
#[tokio::test]
async fn a_dead_oauth_issuer_fails_the_check_with_the_fix() {
    let issuer = "http://127.0.0.1:9/realms/acme";
    let (code, report) = check(
        &[
            "--sandbox",
            "--http",
            "127.0.0.1:0",
            "--oauth-issuer",
            issuer,
            "--public-url",
            "http://127.0.0.1:8080/mcp",
        ],
        &[],
    )
    .await;
    assert_eq!(code, 3, "{report}");
    assert!(report.contains("ok    products"), "{report}");
    let line = report
        .lines()
        .find(|l| l.starts_with("  FAIL  oauth issuer"))
        .unwrap_or_else(|| panic!("no FAIL line for the issuer: {report}"));
    assert!(
        line.contains(&format!(
            "could not read the authorization server's metadata for --oauth-issuer {issuer}"
        )) && line.contains("nothing answers at http://127.0.0.1:9 (")
            && line.contains("Check the issuer URL"),
        "{line}"
    );
    assert!(!report.contains("oauth keys"), "{report}");
    assert!(report.contains("verdict: OAuth not usable"), "{report}");
    assert!(!report.contains("verdict: ready"), "{report}");
}
