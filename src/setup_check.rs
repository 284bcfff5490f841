//! `1nce-mcp check`: can this configuration reach 1NCE and do its work? For a person setting
//! the server up, and for scripts (the exit status names the kind of problem).
//!
//! It gets an access token, reads one page of orders and the product list, exactly as the tools
//! would; with OAuth (`--http` with `--oauth-issuer`) it reads the authorization server's
//! metadata and keys and tries its introspection endpoint, as the server does at start-up. It
//! prints one line per step and a verdict.

use std::time::Instant;

use crate::api::model::ListOrdersQuery;
use crate::api::{ApiError, Client};
use crate::config::HttpSettings;
use crate::exit_status::ExitStatus;

/// What the check concluded, with its exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every step worked.
    Ready,
    /// 1NCE refused the credentials or their permissions.
    Refused,
    /// 1NCE could not be reached or failed (network, timeout, 5xx, rate limit).
    Unreachable,
    /// 1NCE answered, but not as documented.
    Unexpected,
    /// The OAuth authorization server cannot be used: the server would not start.
    OAuth,
}

impl Verdict {
    /// The process exit status for this verdict.
    pub fn exit_status(self) -> ExitStatus {
        match self {
            Verdict::Ready => ExitStatus::Success,
            Verdict::Refused => ExitStatus::CredentialsRefused,
            Verdict::Unreachable => ExitStatus::Unreachable,
            Verdict::Unexpected => ExitStatus::UnexpectedAnswer,
            Verdict::OAuth => ExitStatus::Failure,
        }
    }

    fn of(error: &ApiError) -> Verdict {
        match error {
            ApiError::Authentication { .. } | ApiError::Unauthorized | ApiError::Forbidden => {
                Verdict::Refused
            }
            ApiError::Unreachable { .. }
            | ApiError::Upstream { .. }
            | ApiError::RateLimited { .. }
            | ApiError::Throttled { .. } => Verdict::Unreachable,
            // Retries ran out: what the last attempt met is what 1NCE kept doing (429, 503, a
            // dropped connection: unreachable, as `--help` and README say).
            ApiError::GaveUp { last, .. } => Verdict::of(last),
            _ => Verdict::Unexpected,
        }
    }

    fn says(self) -> &'static str {
        match self {
            Verdict::Ready => "ready: agents can list, search and order",
            Verdict::Refused => {
                "credentials refused: check ONCE_CLIENT_ID and ONCE_CLIENT_SECRET (1NCE portal → Organisation → API access)"
            }
            Verdict::Unreachable => {
                "1NCE unreachable: check the network, a proxy, ONCE_API_URL, or try again later"
            }
            Verdict::Unexpected => {
                "1NCE answered unexpectedly: check ONCE_API_URL points at the Management API"
            }
            Verdict::OAuth => {
                "OAuth not usable: the server would exit 3 at start-up; fix the oauth FAIL line above (--oauth-issuer, the network to it, --oauth-client-id and ONCE_OAUTH_CLIENT_SECRET)"
            }
        }
    }
}

/// Runs the checks against `client`, and of the OAuth authorization server when `http`
/// configures one, writing one line per step to `out`.
pub async fn run(
    client: &Client,
    http: Option<&HttpSettings>,
    out: &mut impl std::io::Write,
) -> std::io::Result<Verdict> {
    writeln!(out, "1nce-mcp check against {}", client.base_url())?;
    let mut verdict = Verdict::Ready;
    let started = Instant::now();
    let token = client.authenticate().await;
    let took = started.elapsed().as_millis();
    step(
        out,
        &mut verdict,
        "access token",
        token.map(|()| format!("obtained ({took} ms)")),
    )?;

    let query = ListOrdersQuery::new(Some(1), Some(1), None).expect("a valid query");
    let started = Instant::now();
    let orders = if verdict == Verdict::Ready {
        Some(client.list_orders(&query).await.map(|page| {
            let took = started.elapsed().as_millis();
            match page.total_count {
                Some(n) => format!("{n} order(s) in the account ({took} ms)"),
                None => format!("readable ({took} ms)"),
            }
        }))
    } else {
        None
    };
    skip_or_step(out, &mut verdict, "orders", orders)?;

    let started = Instant::now();
    let products = if verdict == Verdict::Ready {
        Some(client.list_products().await.map(|products| {
            let took = started.elapsed().as_millis();
            let ids: Vec<String> = products.iter().map(|p| p.id.to_string()).collect();
            format!(
                "{} orderable product(s): {} ({took} ms)",
                products.len(),
                ids.join(", ")
            )
        }))
    } else {
        None
    };
    skip_or_step(out, &mut verdict, "products", products)?;
    #[cfg(not(feature = "oauth"))]
    let _ = http;
    #[cfg(feature = "oauth")]
    if let Some(oauth) = http.and_then(|h| h.oauth.as_ref()) {
        let steps = crate::oauth::probe(
            &oauth.issuer,
            &oauth.public_url,
            &oauth.audiences,
            oauth.introspection.as_ref(),
        )
        .await;
        for step in steps {
            match step.outcome {
                Ok(detail) => writeln!(out, "  ok    {:<13} {detail}", step.name)?,
                Err(why) => {
                    if verdict == Verdict::Ready {
                        verdict = Verdict::OAuth;
                    }
                    writeln!(out, "  FAIL  {:<13} {why}", step.name)?;
                }
            }
            for note in step.notes {
                writeln!(out, "  note  {:<13} {note}", step.name)?;
            }
        }
    }
    writeln!(out, "verdict: {}", verdict.says())?;
    Ok(verdict)
}

fn skip_or_step(
    out: &mut impl std::io::Write,
    verdict: &mut Verdict,
    name: &str,
    result: Option<Result<String, ApiError>>,
) -> std::io::Result<()> {
    match result {
        Some(result) => step(out, verdict, name, result),
        None => writeln!(out, "  skip  {name:<13} (an earlier step failed)"),
    }
}

fn step(
    out: &mut impl std::io::Write,
    verdict: &mut Verdict,
    name: &str,
    result: Result<String, ApiError>,
) -> std::io::Result<()> {
    match result {
        Ok(detail) => writeln!(out, "  ok    {name:<13} {detail}"),
        Err(error) => {
            *verdict = Verdict::of(&error);
            writeln!(out, "  FAIL  {name:<13} {error}")
        }
    }
}
