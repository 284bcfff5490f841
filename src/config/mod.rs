//! Everything a user can set, from flags and environment, validated once at start-up.
//!
//! Each flag has an environment twin. The credentials are environment-only: a flag's value is
//! visible to every user of the machine through `ps`.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::api::{self, Credentials, RateLimit, RetryPolicy};
use crate::mcp::ToolSet;
use crate::orders::OrderLimits;
use crate::orders::spend::SpendLimit;
#[cfg(feature = "postgres")]
use crate::state::DbTarget;
use crate::state::Location;

mod cli;
mod http;

pub use cli::{Cli, Command, MirrorAction, RateLimitSetting};
#[cfg(feature = "oauth")]
pub use http::OAuthSettings;
pub use http::{HttpSettings, TOKEN_ENV, normalize_origin};

/// Where the server gets its 1NCE from.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// The real API (or whatever `--api-url` names), with these credentials.
    Live { url: Url, credentials: Credentials },
    /// The built-in sandbox, started by the binary.
    Sandbox,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub upstream: Upstream,
    /// Where stored state is kept: the state directory (with the audit log), or the database
    /// replicas share (`--state-url`).
    pub state: Location,
    pub confirmation_ttl: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// The tools offered (`--tools`, `--read-only`).
    pub tools: ToolSet,
    /// Orders need approval through elicitation; clients without it cannot order.
    pub require_human_approval: bool,
    /// Show the order card to clients that render MCP Apps (`--no-order-card`,
    /// `ONCE_ORDER_CARD=off` turn it off).
    pub order_card: bool,
    /// The operator's limits on every order.
    pub limits: OrderLimits,
    /// Serve over HTTP with these settings; `None` serves stdio.
    pub http: Option<HttpSettings>,
    pub retry: RetryPolicy,
    /// `None` when `--rate-limit off`.
    pub rate_limit: Option<RateLimit>,
    /// With `--sandbox-orders`: the sandbox's account has this many generated orders.
    pub sandbox_orders: Option<usize>,
    /// The order mirror's settings; `None` with `--mirror off`.
    pub mirror: Option<crate::mirror::MirrorSettings>,
}

impl Config {
    /// Validates the command line, reading credentials through `env` (the process environment
    /// in production, a map in tests).
    pub fn from_cli(cli: &Cli, env: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        refuse_left_out(cli, &env)?;
        let within = |name: &str, d: Duration, min: Duration, max: Duration| {
            if d < min || d > max {
                Err(format!(
                    "--{name} must be between {} and {}, not {}",
                    humantime::format_duration(min),
                    humantime::format_duration(max),
                    humantime::format_duration(d)
                ))
            } else {
                Ok(d)
            }
        };
        let confirmation_ttl = within(
            "confirmation-ttl",
            cli.confirmation_ttl,
            Duration::from_secs(1),
            crate::orders::tokens::LONGEST_TTL,
        )?;
        let connect_timeout = within(
            "connect-timeout",
            cli.connect_timeout,
            Duration::from_millis(100),
            Duration::from_secs(300),
        )?;
        let request_timeout = within(
            "request-timeout",
            cli.request_timeout,
            Duration::from_millis(100),
            Duration::from_secs(600),
        )?;
        let retry = RetryPolicy {
            max_retries: cli.max_retries,
            initial_backoff: within(
                "retry-backoff",
                cli.retry_backoff,
                Duration::from_millis(1),
                Duration::from_secs(60),
            )?,
            budget: within(
                "retry-budget",
                cli.retry_budget,
                Duration::ZERO,
                Duration::from_secs(600),
            )?,
            ..RetryPolicy::default()
        };
        let rate_limit = cli.rate_limit.0.map(|limit| RateLimit {
            burst: cli.rate_burst,
            ..limit
        });
        let upstream = if cli.sandbox {
            Upstream::Sandbox
        } else {
            let nonempty = |name: &str| env(name).filter(|v| !v.trim().is_empty());
            let (id, secret) = match (nonempty("ONCE_CLIENT_ID"), nonempty("ONCE_CLIENT_SECRET")) {
                (Some(id), Some(secret)) => (id, secret),
                (id, secret) => {
                    let missing: Vec<&str> = [
                        id.is_none().then_some("ONCE_CLIENT_ID"),
                        secret.is_none().then_some("ONCE_CLIENT_SECRET"),
                    ]
                    .into_iter()
                    .flatten()
                    .collect();
                    return Err(format!(
                        "{} not set. Set ONCE_CLIENT_ID and ONCE_CLIENT_SECRET to the credentials of a 1NCE API user (1NCE portal → Organisation → API access), or run with --sandbox to try the server against a simulated 1NCE without an account",
                        missing.join(" and ")
                    ));
                }
            };
            check_url(&cli.api_url)?;
            Upstream::Live {
                url: cli.api_url.clone(),
                credentials: Credentials::new(id.trim(), secret.trim()),
            }
        };
        let state_dir = match &cli.state_dir {
            Some(dir) => dir.clone(),
            None => default_state_dir(&env).ok_or(
                "cannot tell where to keep state: set --state-dir or ONCE_STATE_DIR (neither XDG_STATE_HOME nor HOME is set)",
            )?,
        };
        // The sandbox keeps state of its own (key, used tokens, audit trail), so nothing of a
        // simulated order can ever confirm or be mistaken for a real one.
        // A generated account (--sandbox-orders N) is another account: its orders are numbered
        // like the seeded ones, so it keeps a directory of its own too, or its mirror would answer
        // with the other's orders.
        let (state_dir, inside) = if cli.sandbox {
            let own = match cli.sandbox_orders {
                Some(n) => format!("sandbox-{n}-orders"),
                None => "sandbox".to_owned(),
            };
            (state_dir.join(own), Some(state_dir))
        } else {
            (state_dir, None)
        };
        let tools = ToolSet::new(cli.tools.as_deref(), cli.read_only)?;
        let audit_log = match cli.audit_log.as_deref().map(str::trim) {
            // Nothing can be ordered, so there is nothing to audit.
            _ if !tools.offers("create_order") => None,
            Some(off) if off.eq_ignore_ascii_case("off") => None,
            Some("") => return Err("--audit-log needs a file path, or \"off\"".to_owned()),
            Some(path) => Some(PathBuf::from(path)),
            None => Some(state_dir.join(crate::state::files::AUDIT_FILE)),
        };
        let directory = Location::Directory {
            dir: state_dir,
            audit_log,
            inside,
        };
        #[cfg(feature = "postgres")]
        let state = match cli.state_url.as_deref().map(str::trim) {
            None => directory,
            Some(url) => {
                let target = state_db_target(url, &env)?;
                if cli.audit_log.is_some() && tools.offers("create_order") {
                    return Err("--audit-log cannot be combined with --state-url: the audit trail is kept in the database then (table audit_trail), shared by every replica".to_owned());
                }
                Location::Postgres(Box::new(target))
            }
        };
        #[cfg(not(feature = "postgres"))]
        let state = directory;
        let http = HttpSettings::from_cli(cli, &env)?;
        let mirror = cli.mirror.then_some(crate::mirror::MirrorSettings {
            max_age: within(
                "mirror-max-age",
                cli.mirror_max_age,
                Duration::from_secs(1),
                Duration::from_secs(24 * 3600),
            )?,
            rate_share: cli.mirror_rate_share,
            rate_limit,
        });
        Ok(Config {
            upstream,
            state,
            confirmation_ttl,
            connect_timeout,
            request_timeout,
            tools,
            require_human_approval: cli.require_human_approval,
            order_card: !cli.no_order_card && order_card_env(&env)?,
            limits: OrderLimits {
                max_quantity: cli.max_quantity,
                max_order_value: cli.max_order_value.clone(),
                allowed_products: cli.allowed_products.clone(),
                spend: spend_limits(cli, http.as_ref())?,
            },
            http,
            retry,
            rate_limit,
            sandbox_orders: cli.sandbox_orders.map(|n| n as usize),
            mirror,
        })
    }

    /// The state directory, when state is kept in one.
    #[cfg(test)]
    pub fn state_dir(&self) -> Option<&std::path::Path> {
        match &self.state {
            Location::Directory { dir, .. } => Some(dir),
            #[cfg(feature = "postgres")]
            Location::Postgres(_) => None,
        }
    }

    /// The audit log file, when the audit trail goes to one.
    #[cfg(test)]
    pub fn audit_log(&self) -> Option<&std::path::Path> {
        match &self.state {
            Location::Directory { audit_log, .. } => audit_log.as_deref(),
            #[cfg(feature = "postgres")]
            Location::Postgres(_) => None,
        }
    }

    /// The state database, with `--state-url`.
    #[cfg(all(test, feature = "postgres"))]
    pub fn state_db(&self) -> Option<&DbTarget> {
        match &self.state {
            Location::Postgres(target) => Some(target),
            Location::Directory { .. } => None,
        }
    }
}

/// `--spend-limit` and `--spend-limit-per-person`, which needs OAuth to tell people apart.
fn spend_limits(cli: &Cli, http: Option<&HttpSettings>) -> Result<Vec<SpendLimit>, String> {
    #[cfg(feature = "oauth")]
    let oauth = http.is_some_and(|h| h.oauth.is_some());
    #[cfg(not(feature = "oauth"))]
    let oauth = {
        let _ = http;
        false
    };
    if !cli.spend_limits_per_person.is_empty() && !oauth {
        return Err("--spend-limit-per-person / ONCE_SPEND_LIMIT_PER_PERSON needs OAuth (--http with --oauth-issuer): without it the server cannot tell people apart. Use --spend-limit for one budget shared by everyone".to_owned());
    }
    Ok(cli
        .spend_limits
        .iter()
        .chain(&cli.spend_limits_per_person)
        .cloned()
        .collect())
}

/// Environment variable naming a file that holds the state database's password.
pub const STATE_PASSWORD_FILE_ENV: &str = "ONCE_STATE_PASSWORD_FILE";

/// What a setting of a part this build was made without says: the part, its cargo feature, and
/// what to do instead.
#[cfg(not(all(feature = "postgres", feature = "oauth")))]
fn left_out(part: &str, feature: &str, setting: &str, instead: &str) -> String {
    format!(
        "this 1nce-mcp was built without {part} (cargo feature `{feature}`); {setting} needs a build with it, such as `cargo install onence-mcp` with its default features. Or {instead}"
    )
}

/// Refuses the settings of parts this build was made without (cargo features): they parse as
/// in every build, and are then refused, never ignored.
fn refuse_left_out(cli: &Cli, env: &impl Fn(&str) -> Option<String>) -> Result<(), String> {
    #[cfg(not(feature = "postgres"))]
    if cli.state_url.is_some() {
        return Err(left_out(
            "PostgreSQL support",
            "postgres",
            "--state-url (ONCE_STATE_URL)",
            "leave --state-url out to keep state in the state directory.",
        ));
    }
    #[cfg(not(feature = "oauth"))]
    {
        let named: Vec<&str> = [
            (
                cli.oauth_issuer.is_some(),
                "--oauth-issuer (ONCE_OAUTH_ISSUER)",
            ),
            (cli.public_url.is_some(), "--public-url (ONCE_PUBLIC_URL)"),
            (
                cli.oauth_client_id.is_some(),
                "--oauth-client-id (ONCE_OAUTH_CLIENT_ID)",
            ),
            (
                cli.oauth_audiences.iter().any(|a| !a.trim().is_empty()),
                "--oauth-audience (ONCE_OAUTH_AUDIENCE)",
            ),
            // Read, as in a build with OAuth, only when serving HTTP.
            (
                cli.http.is_some()
                    && env(http::OAUTH_SECRET_ENV).is_some_and(|v| !v.trim().is_empty()),
                http::OAUTH_SECRET_ENV,
            ),
        ]
        .into_iter()
        .filter_map(|(given, name)| given.then_some(name))
        .collect();
        if !named.is_empty() {
            return Err(left_out(
                "OAuth support",
                "oauth",
                &named.join(" and "),
                "use a static bearer token (ONCE_MCP_HTTP_TOKEN or --http-token-file) instead.",
            ));
        }
    }
    let _ = (cli, env);
    Ok(())
}

/// Validates `--state-url` and finds its password: inside the URL only when the URL came from
/// `ONCE_STATE_URL` (a flag's value is visible to every user through `ps`), else from the file
/// named by `ONCE_STATE_PASSWORD_FILE`, else `PGPASSWORD`.
#[cfg(feature = "postgres")]
fn state_db_target(url: &str, env: &impl Fn(&str) -> Option<String>) -> Result<DbTarget, String> {
    let usage = "write it as postgres://USER@HOST:PORT/DATABASE (options such as ?sslmode=disable may follow)";
    let parsed = Url::parse(url).map_err(|e| format!("--state-url is not a URL ({e}); {usage}"))?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "--state-url must be a postgres:// URL, not {}:; {usage}",
            parsed.scheme()
        ));
    }
    let mut shown = parsed.clone();
    let _ = shown.set_password(None);
    let shown = shown.to_string();
    let from_env = env("ONCE_STATE_URL").is_some_and(|v| v.trim() == url);
    if parsed.password().is_some() && !from_env {
        return Err(format!(
            "--state-url carries a password, and a flag's value is visible to every user of the machine; remove it from the URL ({shown}) and put it in PGPASSWORD or in a file named by {STATE_PASSWORD_FILE_ENV}"
        ));
    }
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| format!("--state-url {shown} is not a PostgreSQL URL ({e}); {usage}"))?;
    if config.get_password().is_none() {
        let nonempty = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if let Some(file) = nonempty(STATE_PASSWORD_FILE_ENV) {
            let text = std::fs::read_to_string(file.trim()).map_err(|e| {
                format!("cannot read the state database password from {STATE_PASSWORD_FILE_ENV} ({}): {e}", file.trim())
            })?;
            config.password(text.trim_end_matches(['\n', '\r']));
        } else if let Some(password) = env("PGPASSWORD") {
            config.password(password);
        }
    }
    Ok(DbTarget { config, shown })
}

/// `$XDG_STATE_HOME/1nce-mcp`, else `~/.local/state/1nce-mcp` (on Windows `%LOCALAPPDATA%\1nce-mcp`).
pub fn default_state_dir(env: &impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let set = |name: &str| {
        env(name)
            .filter(|v| !v.trim().is_empty())
            .map(PathBuf::from)
    };
    set("XDG_STATE_HOME")
        .or_else(|| set("HOME").map(|home| home.join(".local").join("state")))
        .or_else(|| set("LOCALAPPDATA"))
        .map(|base| base.join("1nce-mcp"))
}

/// Refuses URLs that would send credentials in clear text over a network.
fn check_url(url: &Url) -> Result<(), String> {
    // Checked first, and the URL not repeated: it would show the password.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "ONCE_API_URL / --api-url has user info (user:password@); leave it out: the server authenticates with ONCE_CLIENT_ID and ONCE_CLIENT_SECRET, e.g. {}",
            api::DEFAULT_BASE_URL
        ));
    }
    let loopback = crate::is_loopback_url(url);
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(format!(
            "ONCE_API_URL / --api-url {url} uses plain http, which would send the credentials unencrypted; use https (http is accepted for loopback addresses only)"
        )),
        _ => Err(format!(
            "ONCE_API_URL / --api-url {url} is not an http(s) URL; the default is {}",
            api::DEFAULT_BASE_URL
        )),
    }
}

/// `ONCE_ORDER_CARD`: on (the default) or off.
fn order_card_env(env: &impl Fn(&str) -> Option<String>) -> Result<bool, String> {
    match env("ONCE_ORDER_CARD").as_deref().map(str::trim) {
        None | Some("") => Ok(true),
        Some(v)
            if ["on", "true", "yes", "1"]
                .iter()
                .any(|o| v.eq_ignore_ascii_case(o)) =>
        {
            Ok(true)
        }
        Some(v)
            if ["off", "false", "no", "0"]
                .iter()
                .any(|o| v.eq_ignore_ascii_case(o)) =>
        {
            Ok(false)
        }
        Some(v) => Err(format!(
            "ONCE_ORDER_CARD must be on or off, not {v:?} (off is the same as --no-order-card)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::products::Cents;
    use clap::Parser;
    use std::collections::BTreeSet;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("1nce-mcp").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn missing_credentials_name_the_variables_and_sandbox() {
        let err = Config::from_cli(&cli(&[]), |_| None).unwrap_err();
        assert!(
            err.contains("ONCE_CLIENT_ID and ONCE_CLIENT_SECRET not set"),
            "{err}"
        );
        assert!(err.contains("--sandbox"));
        let err = Config::from_cli(&cli(&[]), |k| (k == "ONCE_CLIENT_ID").then(|| "x".into()))
            .unwrap_err();
        assert!(err.starts_with("ONCE_CLIENT_SECRET not set"), "{err}");
    }

    #[test]
    fn sandbox_needs_no_credentials() {
        let c = Config::from_cli(&cli(&["--sandbox"]), |k| {
            (k == "HOME").then(|| "/home/u".into())
        })
        .unwrap();
        assert!(matches!(c.upstream, Upstream::Sandbox));
        assert_eq!(
            c.state_dir().unwrap(),
            PathBuf::from("/home/u/.local/state/1nce-mcp/sandbox")
        );
        let err = Config::from_cli(&cli(&["--sandbox"]), |_| None).unwrap_err();
        assert!(err.contains("--state-dir"), "{err}");
        let c = Config::from_cli(
            &cli(&["call", "list_orders", "--sandbox", "--state-dir", "/s"]),
            |_| None,
        )
        .unwrap();
        assert_eq!(c.state_dir().unwrap(), PathBuf::from("/s/sandbox"));
        // A generated account's state is apart from the seeded one's.
        let c = Config::from_cli(
            &cli(&["--sandbox", "--sandbox-orders", "2000", "--state-dir", "/s"]),
            |_| None,
        )
        .unwrap();
        assert_eq!(
            c.state_dir().unwrap(),
            PathBuf::from("/s/sandbox-2000-orders")
        );
        assert_eq!(c.confirmation_ttl, Duration::from_secs(600));
    }

    #[test]
    fn urls_and_durations_are_checked() {
        let env = |k: &str| (k != "ONCE_ORDER_CARD").then(|| "v".to_owned());
        assert!(Config::from_cli(&cli(&["--api-url", "http://127.0.0.1:9/x"]), env).is_ok());
        let err = Config::from_cli(&cli(&["--api-url", "http://example.com"]), env).unwrap_err();
        assert!(err.contains("plain http"));
        for with_user in [
            "http://user:s3cret-pw@127.0.0.1:9/x",
            "https://user@api.example.com",
        ] {
            let err = Config::from_cli(&cli(&["--api-url", with_user]), env).unwrap_err();
            assert!(err.contains("user info"), "{err}");
            assert!(
                !err.contains("s3cret-pw") && !err.contains("user@"),
                "{err}"
            );
        }
        let err = Config::from_cli(&cli(&["--confirmation-ttl", "25h"]), env).unwrap_err();
        assert!(err.contains("between 1s and 1day"), "{err}");
        assert_eq!(
            cli(&["--request-timeout", "90"]).request_timeout,
            Duration::from_secs(90)
        );
        assert!(Cli::try_parse_from(["1nce-mcp", "--connect-timeout", "soon"]).is_err());
    }

    #[test]
    fn retry_and_rate_limit_flags() {
        let c =
            Config::from_cli(&cli(&["--sandbox"]), |k| (k == "HOME").then(|| "/h".into())).unwrap();
        assert_eq!(c.retry.max_retries, 3);
        assert_eq!(c.retry.budget, Duration::from_secs(30));
        assert_eq!(c.rate_limit, Some(RateLimit::DEFAULT));
        let c = Config::from_cli(
            &cli(&[
                "--sandbox",
                "--max-retries",
                "0",
                "--retry-budget",
                "5s",
                "--retry-backoff",
                "1ms",
                "--rate-limit",
                "10/1s",
                "--rate-burst",
                "20",
            ]),
            |k| (k == "HOME").then(|| "/h".into()),
        )
        .unwrap();
        assert_eq!(c.retry.max_retries, 0);
        assert_eq!(c.retry.budget, Duration::from_secs(5));
        assert_eq!(c.retry.initial_backoff, Duration::from_millis(1));
        let limit = c.rate_limit.unwrap();
        assert_eq!(
            (limit.requests, limit.per, limit.burst),
            (10, Duration::from_secs(1), 20)
        );
        let off = Config::from_cli(&cli(&["--sandbox", "--rate-limit", "off"]), |k| {
            (k == "HOME").then(|| "/h".into())
        })
        .unwrap();
        assert_eq!(off.rate_limit, None);
        for bad in [
            &["--max-retries", "11"][..],
            &["--rate-limit", "fast"],
            &["--rate-burst", "0"],
        ] {
            assert!(
                Cli::try_parse_from(std::iter::once("1nce-mcp").chain(bad.iter().copied()))
                    .is_err()
            );
        }
        let err = Config::from_cli(&cli(&["--sandbox", "--retry-budget", "1h"]), |k| {
            (k == "HOME").then(|| "/h".into())
        })
        .unwrap_err();
        assert!(err.contains("--retry-budget"), "{err}");
    }

    #[test]
    fn safety_flags() {
        let c = Config::from_cli(
            &cli(&[
                "--sandbox",
                "--max-quantity",
                "50",
                "--max-order-value",
                "EUR:500,USD:300",
                "--allowed-products",
                "1001,1002",
                "--audit-log",
                "/tmp/x/audit.jsonl",
                "--require-human-approval",
            ]),
            |k| (k == "HOME").then(|| "/home/u".into()),
        )
        .unwrap();
        assert_eq!(c.limits.max_quantity, Some(50));
        assert_eq!(
            c.limits.max_order_value.as_ref().unwrap()["USD"],
            Cents(30000)
        );
        assert_eq!(
            c.limits.allowed_products,
            Some(BTreeSet::from([1001, 1002]))
        );
        assert_eq!(
            c.audit_log(),
            Some(PathBuf::from("/tmp/x/audit.jsonl").as_path())
        );
        assert!(c.require_human_approval && c.tools.offers("create_order"));
        let default = Config::from_cli(&cli(&["--sandbox"]), |k| {
            (k == "HOME").then(|| "/home/u".into())
        })
        .unwrap();
        assert_eq!(
            default.audit_log(),
            Some(std::path::Path::new(
                "/home/u/.local/state/1nce-mcp/sandbox/audit.jsonl"
            ))
        );
        let off = Config::from_cli(&cli(&["--sandbox", "--audit-log", "off"]), |k| {
            (k == "HOME").then(|| "/home/u".into())
        })
        .unwrap();
        assert_eq!(off.audit_log(), None);
        let ro = Config::from_cli(&cli(&["--sandbox", "--read-only"]), |k| {
            (k == "HOME").then(|| "/home/u".into())
        })
        .unwrap();
        assert!(!ro.tools.offers("create_order") && ro.audit_log().is_none());
        assert!(Cli::try_parse_from(["1nce-mcp", "--max-quantity", "0"]).is_err());
        assert!(Cli::try_parse_from(["1nce-mcp", "--max-order-value", "lots"]).is_err());
        assert!(Cli::try_parse_from(["1nce-mcp", "--allowed-products", "x"]).is_err());
    }

    #[test]
    #[cfg(feature = "postgres")]
    fn the_state_database_password_never_comes_from_a_flag() {
        let home = |k: &str| (k == "HOME").then(|| "/h".into());
        let url = "postgres://mcp:s3cret@db.internal:5432/once";
        let err = Config::from_cli(&cli(&["--sandbox", "--state-url", url]), home).unwrap_err();
        assert!(
            err.contains("PGPASSWORD") && !err.contains("s3cret"),
            "{err}"
        );
        // The same URL from ONCE_STATE_URL is the operator's choice, and not visible in ps.
        let from_env = |k: &str| match k {
            "ONCE_STATE_URL" => Some(url.to_owned()),
            other => home(other),
        };
        let c = Config::from_cli(&cli(&["--sandbox", "--state-url", url]), from_env).unwrap();
        let target = c.state_db().unwrap().clone();
        assert_eq!(target.config.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(target.shown, "postgres://mcp@db.internal:5432/once");
        assert!(!format!("{target:?}").contains("s3cret"));
        // Otherwise from a file, or PGPASSWORD.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let path = file.to_str().unwrap().to_owned();
        let bare = "postgres://mcp@db.internal/once";
        let env = |k: &str| match k {
            STATE_PASSWORD_FILE_ENV => Some(path.clone()),
            "PGPASSWORD" => Some("from-env".into()),
            other => home(other),
        };
        let c = Config::from_cli(&cli(&["--sandbox", "--state-url", bare]), env).unwrap();
        assert_eq!(
            c.state_db().unwrap().config.get_password(),
            Some(&b"from-file"[..])
        );
        let env = |k: &str| {
            (k == "PGPASSWORD")
                .then(|| "from-env".into())
                .or_else(|| home(k))
        };
        let c = Config::from_cli(&cli(&["--sandbox", "--state-url", bare]), env).unwrap();
        assert_eq!(
            c.state_db().unwrap().config.get_password(),
            Some(&b"from-env"[..])
        );
        for (bad, says) in [
            ("mysql://db/once", "postgres://"),
            (
                "postgres://db/once?sslmode=sometimes",
                "not a PostgreSQL URL",
            ),
        ] {
            let err = Config::from_cli(&cli(&["--sandbox", "--state-url", bad]), home).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        let err = Config::from_cli(
            &cli(&["--sandbox", "--state-url", bare, "--audit-log", "/a.jsonl"]),
            home,
        )
        .unwrap_err();
        assert!(err.contains("audit_trail"), "{err}");
    }

    /// A build without a part refuses its settings, naming the part and its cargo feature
    /// (`app` exits with status 2, as for every configuration error).
    #[test]
    #[cfg(not(all(feature = "postgres", feature = "oauth")))]
    fn settings_of_a_part_left_out_are_refused() {
        let home = |k: &str| (k == "HOME").then(|| "/h".to_owned());
        #[cfg(not(feature = "postgres"))]
        {
            let url = "postgres://mcp@db.internal/once";
            let err = Config::from_cli(&cli(&["--sandbox", "--state-url", url]), home).unwrap_err();
            assert!(
                err.starts_with(
                    "this 1nce-mcp was built without PostgreSQL support (cargo feature `postgres`); --state-url"
                ),
                "{err}"
            );
        }
        #[cfg(not(feature = "oauth"))]
        {
            let issuer = ["--oauth-issuer", "https://id.example.com"];
            let public = ["--public-url", "https://mcp.example.com/mcp"];
            for args in [
                [
                    &["--sandbox", "--http", "127.0.0.1:0"][..],
                    &issuer,
                    &public,
                ]
                .concat(),
                [&["--sandbox"][..], &issuer].concat(),
                [&["--sandbox", "--http", "8080"][..], &public].concat(),
            ] {
                let err = Config::from_cli(&cli(&args), home).unwrap_err();
                assert!(
                    err.starts_with(
                        "this 1nce-mcp was built without OAuth support (cargo feature `oauth`); --"
                    ),
                    "{args:?}: {err}"
                );
            }
            let secret = |k: &str| match k {
                http::OAUTH_SECRET_ENV => Some("s".to_owned()),
                other => home(other),
            };
            let err = Config::from_cli(&cli(&["--sandbox", "--http", "8080"]), secret).unwrap_err();
            assert!(
                err.contains("`oauth`") && err.contains(http::OAUTH_SECRET_ENV),
                "{err}"
            );
        }
    }

    #[test]
    fn the_order_card_is_on_unless_turned_off() {
        let c = |args: &[&str], card: Option<&str>| {
            let env = |k: &str| match k {
                "ONCE_ORDER_CARD" => card.map(str::to_owned),
                _ => None,
            };
            Config::from_cli(
                &cli(&[&["--sandbox", "--state-dir", "/s"], args].concat()),
                env,
            )
        };
        assert!(c(&[], None).unwrap().order_card);
        assert!(c(&[], Some("on")).unwrap().order_card);
        assert!(!c(&[], Some("OFF")).unwrap().order_card);
        assert!(!c(&["--no-order-card"], Some("on")).unwrap().order_card);
        assert!(!c(&["--no-order-card"], None).unwrap().order_card);
        let err = c(&[], Some("maybe")).unwrap_err();
        assert!(
            err.contains("ONCE_ORDER_CARD") && err.contains("on or off"),
            "{err}"
        );
    }
}
