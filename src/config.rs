//! Everything a user can set, from flags and environment, validated once at start-up.
//!
//! Each flag has an environment twin. The credentials are environment-only: a flag's value is
//! visible to every user of the machine through `ps`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use url::Url;

use crate::api::products::Cents;
use crate::api::{self, Credentials, RateLimit, RetryPolicy};
use crate::orders::OrderLimits;

const ENV_HELP: &str = "\
ENVIRONMENT:
  ONCE_CLIENT_ID        Client id of a 1NCE API user (required without --sandbox)
  ONCE_CLIENT_SECRET    Its secret (required without --sandbox; never pass it as a flag)
  ONCE_MCP_HTTP_TOKEN   Bearer token HTTP clients must send (or --http-token-file)
  RUST_LOG              Log level on stderr: error, warn (default), info, debug, trace
  Every flag above can also be set through the variable shown in its [env: …] note.

SAFETY:
  create_order never places an order without a confirmation token issued by a preview of that
  exact order, single-use and expiring (--confirmation-ttl). A POST is never retried.
  Every preview is checked against the 1NCE product catalogue and the operator's limits
  (--max-quantity, --max-order-value, --allowed-products), and priced.
  When the MCP client can ask its user (elicitation), the user approves each order in a form;
  --require-human-approval refuses orders from clients that cannot ask. --read-only removes
  create_order altogether. Every preview, approval, POST and outcome is appended to the audit
  log (default audit.jsonl in the state directory, --audit-log to move it or turn it off); an
  order whose record cannot be written is not placed.

EXIT STATUS:
  0 success; 1 the tool reported an error (call); 2 bad usage or configuration; 3 could not run;
  check: 4 credentials refused, 5 1NCE unreachable, 6 unexpected answers from 1NCE

RETRIES AND RATE LIMIT:
  Reads (list_orders, get_order) and the token request are repeated after 429, 502, 503, 504
  and connection failures or timeouts, honouring Retry-After, up to --max-retries times and
  within --retry-budget; then the tool error says when to try again. Requests to 1NCE are paced
  by --rate-limit and --rate-burst (default: within 1NCE's documented 100 per 5 minutes); a call
  that had to wait says so in its result.

EXAMPLES:
  1nce-mcp --sandbox                       serve MCP on stdio against the built-in simulated 1NCE
  ONCE_CLIENT_ID=… ONCE_CLIENT_SECRET=… 1nce-mcp    serve MCP on stdio against the real 1NCE API
  1nce-mcp --sandbox call list_orders --args '{\"page_size\": 3}'    run one tool and exit
  1nce-mcp tools                           print the tools and their schemas as JSON

  1nce-mcp --sandbox --http 127.0.0.1:8080 serve MCP over HTTP on loopback (/mcp, /sse, /health)";

/// MCP server for the 1NCE Order Management API.
///
/// Serves the Model Context Protocol on stdio (stdout carries only protocol messages, logs go to
/// stderr), or over HTTP with --http, with four tools: list_orders, get_order, list_products and
/// create_order. create_order places real, paid orders that ship SIM cards, and only after a
/// preview has been confirmed.
#[derive(Debug, Clone, Parser)]
#[command(name = "1nce-mcp", version, after_long_help = ENV_HELP, after_help = "ENVIRONMENT: ONCE_CLIENT_ID, ONCE_CLIENT_SECRET, ONCE_MCP_HTTP_TOKEN, RUST_LOG (see --help)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Serve against the built-in simulated 1NCE API on 127.0.0.1 instead of the real one: no
    /// account needed, orders are simulated, nothing is charged or shipped. Ignores ONCE_API_URL
    /// and the credentials.
    #[arg(long, global = true, env = "ONCE_SANDBOX", value_parser = clap::builder::FalseyValueParser::new())]
    pub sandbox: bool,

    /// Base URL of the 1NCE Management API. Plain http is accepted for loopback addresses only.
    #[arg(long, global = true, env = "ONCE_API_URL", value_name = "URL", default_value = api::DEFAULT_BASE_URL)]
    pub api_url: Url,

    /// How long an order preview's confirmation token stays valid, e.g. 90s, 10m, 1h (1 s to 24 h).
    #[arg(long, global = true, env = "ONCE_CONFIRMATION_TTL", value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub confirmation_ttl: Duration,

    /// Limit for connecting to 1NCE, e.g. 5s.
    #[arg(long, global = true, env = "ONCE_CONNECT_TIMEOUT", value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Limit for one whole request to 1NCE, e.g. 30s.
    #[arg(long, global = true, env = "ONCE_REQUEST_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Read-only: create_order is not offered at all (absent from tools/list); only list_orders,
    /// get_order and list_products.
    #[arg(long, global = true, env = "ONCE_READ_ONLY", value_parser = clap::builder::FalseyValueParser::new())]
    pub read_only: bool,

    /// Place an order only after the user approved it in the MCP client's own form
    /// (elicitation); refuse orders from clients that cannot ask their user.
    #[arg(long, global = true, env = "ONCE_REQUIRE_HUMAN_APPROVAL", value_parser = clap::builder::FalseyValueParser::new())]
    pub require_human_approval: bool,

    /// Most units one order may carry, summed over its lines.
    #[arg(long, global = true, env = "ONCE_MAX_QUANTITY", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_quantity: Option<u64>,

    /// Highest one-time net value of one order, per currency, e.g. "500 EUR" or "EUR:500,USD:300".
    /// Orders in a currency not named are refused.
    #[arg(long, global = true, env = "ONCE_MAX_ORDER_VALUE", value_name = "AMOUNT", value_parser = OrderLimits::parse_order_value)]
    pub max_order_value: Option<BTreeMap<String, Cents>>,

    /// The only product ids that may be ordered, e.g. "1001,1002".
    #[arg(long, global = true, env = "ONCE_ALLOWED_PRODUCTS", value_name = "IDS", value_parser = OrderLimits::parse_allowed_products)]
    pub allowed_products: Option<BTreeSet<u64>>,

    /// File the audit trail is appended to (JSON lines), or "off" to keep none. Default:
    /// audit.jsonl in the state directory (see --state-dir).
    #[arg(long, global = true, env = "ONCE_AUDIT_LOG", value_name = "PATH|off")]
    pub audit_log: Option<String>,

    /// Directory for the confirmation-token signing key and the record of used tokens
    /// (created owner-only; --sandbox uses its subdirectory "sandbox"). Default:
    /// $XDG_STATE_HOME/1nce-mcp or ~/.local/state/1nce-mcp.
    #[arg(long, global = true, env = "ONCE_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Serve MCP over HTTP on this address instead of stdio: Streamable HTTP at /mcp, legacy
    /// HTTP+SSE at /sse, health at /health. ADDR is IP:PORT, localhost:PORT or a bare PORT
    /// (loopback). Port 0 picks a free port. A non-loopback address requires a bearer token.
    #[arg(long, global = true, env = "ONCE_MCP_HTTP", value_name = "ADDR", value_parser = crate::transport::parse_listen_addr)]
    pub http: Option<std::net::SocketAddr>,

    /// File holding the bearer token HTTP clients must send (Authorization: Bearer …). The
    /// token can also come from the ONCE_MCP_HTTP_TOKEN variable; never from a flag value.
    #[arg(
        long,
        global = true,
        env = "ONCE_MCP_HTTP_TOKEN_FILE",
        value_name = "PATH"
    )]
    pub http_token_file: Option<std::path::PathBuf>,

    /// A browser Origin whose web clients may call the HTTP endpoints, with the CORS headers a
    /// browser needs, e.g. https://agent.example.com (repeatable; the variable takes a
    /// comma-separated list). Loopback origins are always allowed, without CORS; requests
    /// without an Origin header are not browser requests and pass.
    #[arg(
        long = "allowed-origin",
        global = true,
        env = "ONCE_MCP_ALLOWED_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// A Host name (optionally with :PORT) clients may use to reach the HTTP server, e.g.
    /// mcp.example.com (repeatable; comma-separated in the variable). Loopback names and the
    /// bound IP are always allowed; "*" allows any Host (not recommended).
    #[arg(
        long = "allowed-host",
        global = true,
        env = "ONCE_MCP_ALLOWED_HOSTS",
        value_name = "HOST",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,

    /// On SIGINT/SIGTERM in HTTP mode, how long calls in flight may take to finish, e.g. 30s.
    #[arg(long, global = true, env = "ONCE_MCP_SHUTDOWN_GRACE", value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// How many times to repeat a read (never an order) after 429, 502, 503, 504 or a connection
    /// failure, 0 to 10.
    #[arg(long, global = true, env = "ONCE_MAX_RETRIES", value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=10))]
    pub max_retries: u32,

    /// The most one tool call may spend waiting, between retries and for the rate limit
    /// together, e.g. 30s; past it the call fails saying when to try again.
    #[arg(long, global = true, env = "ONCE_RETRY_BUDGET", value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub retry_budget: Duration,

    /// Backoff before the first retry, doubling with each further one (with jitter, at most
    /// 10 s), e.g. 500ms. A Retry-After from 1NCE takes precedence.
    #[arg(long, global = true, env = "ONCE_RETRY_BACKOFF", value_name = "DURATION", default_value = "500ms", value_parser = parse_duration)]
    pub retry_backoff: Duration,

    /// Client-side limit on requests to 1NCE as REQUESTS/PERIOD, e.g. 90/5m or 10/1s, or "off".
    /// The default stays within 1NCE's documented 100 requests per 5 minutes.
    #[arg(long, global = true, env = "ONCE_RATE_LIMIT", value_name = "N/PERIOD", default_value = "90/5m", value_parser = parse_rate_limit)]
    pub rate_limit: RateLimitSetting,

    /// How many requests may go out back to back before --rate-limit spaces them, 1 to 1000.
    #[arg(long, global = true, env = "ONCE_RATE_BURST", value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rate_burst: u32,
}

/// What to do instead of serving MCP.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run one tool through the server's own tool handler and exit (for scripts and Agent
    /// Skills): structuredContent as JSON on stdout, the text summary on stderr. Exit status 0 on
    /// success, 1 when the tool reports an error, 2 on bad usage.
    Call {
        /// The tool to run: list_orders, get_order or create_order.
        tool: String,
        /// The tool's arguments as a JSON object, e.g. '{"page": 2}'. Without --args or
        /// --args-file they are read from stdin when it is not a terminal, else {} is used.
        #[arg(long, value_name = "JSON", conflicts_with = "args_file")]
        args: Option<String>,
        /// Read the tool's arguments (a JSON object) from this file; "-" reads stdin.
        #[arg(long, value_name = "FILE")]
        args_file: Option<PathBuf>,
    },
    /// Print the tools with their input and output schemas as JSON, as tools/list shows them.
    Tools,
    /// Check the configuration against 1NCE: get an access token, read a page of orders and the
    /// product list, and print a verdict. Exit status 0 ready, 2 bad configuration, 4
    /// credentials refused, 5 1NCE unreachable, 6 unexpected answers. Works with --sandbox.
    Check,
}

/// `--rate-limit`: a limit, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSetting(pub Option<RateLimit>);

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
    /// Where confirmation tokens are signed and their use recorded.
    pub state_dir: PathBuf,
    pub confirmation_ttl: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// create_order is not offered.
    pub read_only: bool,
    /// Orders need approval through elicitation; clients without it cannot order.
    pub require_human_approval: bool,
    /// The operator's limits on every order.
    pub limits: OrderLimits,
    /// Where the audit trail goes; `None` when off (or read-only: nothing to audit).
    pub audit_log: Option<PathBuf>,
    /// Serve over HTTP with these settings; `None` serves stdio.
    pub http: Option<crate::transport::HttpSettings>,
    pub retry: RetryPolicy,
    /// `None` when `--rate-limit off`.
    pub rate_limit: Option<RateLimit>,
}

impl Config {
    /// Validates the command line, reading credentials through `env` (the process environment
    /// in production, a map in tests).
    pub fn from_cli(cli: &Cli, env: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
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
            Duration::from_secs(24 * 3600),
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
        let state_dir = if cli.sandbox {
            state_dir.join("sandbox")
        } else {
            state_dir
        };
        let audit_log = match cli.audit_log.as_deref().map(str::trim) {
            _ if cli.read_only => None,
            Some(off) if off.eq_ignore_ascii_case("off") => None,
            Some("") => return Err("--audit-log needs a file path, or \"off\"".to_owned()),
            Some(path) => Some(PathBuf::from(path)),
            None => Some(state_dir.join("audit.jsonl")),
        };
        let http = crate::transport::HttpSettings::from_cli(cli, &env)?;
        Ok(Config {
            upstream,
            state_dir,
            confirmation_ttl,
            connect_timeout,
            request_timeout,
            read_only: cli.read_only,
            require_human_approval: cli.require_human_approval,
            limits: OrderLimits {
                max_quantity: cli.max_quantity,
                max_order_value: cli.max_order_value.clone(),
                allowed_products: cli.allowed_products.clone(),
            },
            audit_log,
            http,
            retry,
            rate_limit,
        })
    }
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
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
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

fn parse_rate_limit(s: &str) -> Result<RateLimitSetting, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        Ok(RateLimitSetting(None))
    } else {
        s.parse().map(|limit| RateLimitSetting(Some(limit)))
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| {
        format!("{e}; write a duration such as 30s, 10m or 1h (a bare number means seconds)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
            c.state_dir,
            PathBuf::from("/home/u/.local/state/1nce-mcp/sandbox")
        );
        let err = Config::from_cli(&cli(&["--sandbox"]), |_| None).unwrap_err();
        assert!(err.contains("--state-dir"), "{err}");
        let c = Config::from_cli(
            &cli(&["call", "list_orders", "--sandbox", "--state-dir", "/s"]),
            |_| None,
        )
        .unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/s/sandbox"));
        assert_eq!(c.confirmation_ttl, Duration::from_secs(600));
    }

    #[test]
    fn urls_and_durations_are_checked() {
        let env = |_: &str| Some("v".to_owned());
        assert!(Config::from_cli(&cli(&["--api-url", "http://127.0.0.1:9/x"]), env).is_ok());
        let err = Config::from_cli(&cli(&["--api-url", "http://example.com"]), env).unwrap_err();
        assert!(err.contains("plain http"));
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
        assert_eq!(c.limits.max_order_value.unwrap()["USD"], Cents(30000));
        assert_eq!(
            c.limits.allowed_products,
            Some(BTreeSet::from([1001, 1002]))
        );
        assert_eq!(c.audit_log, Some(PathBuf::from("/tmp/x/audit.jsonl")));
        assert!(c.require_human_approval && !c.read_only);
        let default = Config::from_cli(&cli(&["--sandbox"]), |k| {
            (k == "HOME").then(|| "/home/u".into())
        })
        .unwrap();
        assert_eq!(
            default.audit_log,
            Some(PathBuf::from(
                "/home/u/.local/state/1nce-mcp/sandbox/audit.jsonl"
            ))
        );
        let off = Config::from_cli(&cli(&["--sandbox", "--audit-log", "off"]), |k| {
            (k == "HOME").then(|| "/home/u".into())
        })
        .unwrap();
        assert_eq!(off.audit_log, None);
        let ro = Config::from_cli(&cli(&["--sandbox", "--read-only"]), |k| {
            (k == "HOME").then(|| "/home/u".into())
        })
        .unwrap();
        assert!(ro.read_only && ro.audit_log.is_none());
        assert!(Cli::try_parse_from(["1nce-mcp", "--max-quantity", "0"]).is_err());
        assert!(Cli::try_parse_from(["1nce-mcp", "--max-order-value", "lots"]).is_err());
        assert!(Cli::try_parse_from(["1nce-mcp", "--allowed-products", "x"]).is_err());
    }
}
