//! The command line as typed: flags, their environment twins and subcommands, parsed by clap
//! into [`Cli`] with each value's syntax checked. What the values mean together is checked in
//! [`super::Config::from_cli`], so nothing past `config` sees clap.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use url::Url;

use crate::api::products::Cents;
use crate::api::{self, RateLimit};
use crate::orders::OrderLimits;
use crate::orders::spend::SpendLimit;

const ENV_HELP: &str = "\
ENVIRONMENT:
  ONCE_CLIENT_ID        Client id of a 1NCE API user (required without --sandbox)
  ONCE_CLIENT_SECRET    Its secret (required without --sandbox; never pass it as a flag)
  ONCE_MCP_HTTP_TOKEN   Bearer token HTTP clients must send (or --http-token-file, or OAuth:
                        --oauth-issuer with --public-url)
  ONCE_OAUTH_CLIENT_SECRET  Secret of --oauth-client-id, for token introspection
  PGPASSWORD            Password for --state-url (or ONCE_STATE_PASSWORD_FILE, a file holding it)
  RUST_LOG              Log level on stderr: error, warn (default; error for call, check and
                        mirror, which report what went wrong themselves), info, debug, trace
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

{EXIT_STATUS}
HTTP LIMITS (--http):
  Headers must arrive within 10 s and an idle keep-alive connection is closed after 10 s; headers
  at most 64 KiB; a request body at most 1 MiB, whole within 30 s. --max-connections (512) caps
  open connections, --max-sessions (200) open MCP sessions; --session-idle-timeout (10m) closes
  sessions without requests. Refused requests are logged short and counted (one line per kind per
  10 s), and log lines never hold up a request: when stderr is not read they are dropped.
  --http-token-file must be owner-only (chmod 600) and at most 4 KiB.

OAUTH (--http with --oauth-issuer and --public-url):
  Each person signs in at your authorization server (Keycloak, Auth0, Okta, Entra ID…); clients
  such as claude.ai and ChatGPT connectors find it through /.well-known/oauth-protected-resource.
  Access tokens must be JWTs signed by a key of the issuer's JWKS, for the audience --public-url
  (or an --oauth-audience), unexpired; orders:read allows reading, orders:write create_order (403 insufficient_scope
  otherwise). The person's sub, email and preferred_username go into every audit record, and
  only the person who previewed an order can confirm it.
  With --oauth-client-id (and ONCE_OAUTH_CLIENT_SECRET), opaque tokens are accepted through
  the authorization server's token introspection (RFC 7662), at most 50 a second.

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

/// `--help`'s closing sections, with the exit statuses from their one list.
fn long_help() -> String {
    ENV_HELP.replace("{EXIT_STATUS}", &crate::exit_status::ExitStatus::help())
}

/// MCP server for the 1NCE Order Management API.
///
/// Serves the Model Context Protocol on stdio (stdout carries only protocol messages, logs go to
/// stderr), or over HTTP with --http, with five tools: list_orders, get_order, find_orders,
/// list_products and create_order. create_order places real, paid orders that ship SIM cards,
/// and only after a preview has been confirmed.
#[derive(Debug, Clone, Parser)]
#[command(name = "1nce-mcp", version, after_long_help = long_help(), after_help = "ENVIRONMENT: ONCE_CLIENT_ID, ONCE_CLIENT_SECRET, ONCE_MCP_HTTP_TOKEN, RUST_LOG (see --help)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Serve against the built-in simulated 1NCE API on 127.0.0.1 instead of the real one: no
    /// account needed, orders are simulated, nothing is charged or shipped. Ignores ONCE_API_URL
    /// and the credentials. Orders placed in it are kept in the state directory, so the next
    /// process (a later `call`) finds them.
    #[arg(long, global = true, env = "ONCE_SANDBOX", value_parser = clap::builder::FalseyValueParser::new())]
    pub sandbox: bool,

    /// With --sandbox: an account of this many generated orders (dates over years, SIMs, a mix
    /// of statuses) instead of the 25 seeded ones, to try searches on a real-sized account.
    #[arg(long, global = true, env = "ONCE_SANDBOX_ORDERS", value_name = "N", requires = "sandbox", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub sandbox_orders: Option<u32>,

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

    /// Read-only: offer only the tools whose annotations say they only read (list_orders,
    /// get_order, find_orders, list_products); create_order is absent from tools/list.
    #[arg(long, global = true, env = "ONCE_READ_ONLY", value_parser = clap::builder::FalseyValueParser::new())]
    pub read_only: bool,

    /// Offer only these tools, e.g. "list_orders,get_order" (with --read-only: those of them
    /// that only read). The tools: list_orders, get_order, find_orders, list_products,
    /// create_order.
    #[arg(
        long,
        global = true,
        env = "ONCE_TOOLS",
        value_name = "NAMES",
        value_delimiter = ','
    )]
    pub tools: Option<Vec<String>>,

    /// Place an order only after the user approved it themselves: in the order card, or in the
    /// MCP client's own form (elicitation); refuse orders from clients that can show neither.
    #[arg(long, global = true, env = "ONCE_REQUIRE_HUMAN_APPROVAL", value_parser = clap::builder::FalseyValueParser::new())]
    pub require_human_approval: bool,

    /// Do not show the order card: clients that render MCP Apps (Claude Desktop, claude.ai,
    /// ChatGPT, VS Code) then approve through their form or the agent, as other clients do.
    /// Also ONCE_ORDER_CARD=off.
    #[arg(long, global = true)]
    pub no_order_card: bool,

    /// Most units one order may carry, summed over its lines.
    #[arg(long, global = true, env = "ONCE_MAX_QUANTITY", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_quantity: Option<u64>,

    /// Highest one-time net value of one order, per currency, e.g. "500 EUR" or "EUR:500,USD:300".
    /// Orders in a currency not named are refused.
    #[arg(long, global = true, env = "ONCE_MAX_ORDER_VALUE", value_name = "AMOUNT", value_parser = OrderLimits::parse_order_value)]
    pub max_order_value: Option<BTreeMap<String, Cents>>,

    /// Most spent per calendar day, ISO week or calendar month (UTC), over every order placed or
    /// of unknown outcome, net, e.g. 5000EUR/month (repeatable; comma-separated in the variable).
    /// Counted in the state store, so it holds across every process and replica sharing it.
    #[arg(long = "spend-limit", global = true, env = "ONCE_SPEND_LIMIT", value_name = "AMOUNT/PERIOD", value_delimiter = ',', value_parser = parse_spend_limit)]
    pub spend_limits: Vec<SpendLimit>,

    /// A spend limit each person has of their own, e.g. 500EUR/day: needs OAuth (--oauth-issuer),
    /// which says who is who (repeatable; comma-separated in the variable).
    #[arg(long = "spend-limit-per-person", global = true, env = "ONCE_SPEND_LIMIT_PER_PERSON", value_name = "AMOUNT/PERIOD", value_delimiter = ',', value_parser = parse_spend_limit_per_person)]
    pub spend_limits_per_person: Vec<SpendLimit>,

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

    /// PostgreSQL database shared by several replicas, e.g.
    /// postgres://mcp@db.internal:5432/once_mcp: used confirmation tokens, the audit trail, the
    /// token signing key and the rate limit to 1NCE are kept there instead of in the state
    /// directory and audit.jsonl. The password comes from PGPASSWORD or the file named by
    /// ONCE_STATE_PASSWORD_FILE (or inside ONCE_STATE_URL), never from a flag's value.
    #[arg(long, global = true, env = "ONCE_STATE_URL", value_name = "URL")]
    pub state_url: Option<String>,

    /// Serve MCP over HTTP on this address instead of stdio: Streamable HTTP at /mcp, legacy
    /// HTTP+SSE at /sse, health at /health. ADDR is IP:PORT, localhost:PORT or a bare PORT
    /// (loopback). Port 0 picks a free port. A non-loopback address requires a bearer token.
    #[arg(long, global = true, env = "ONCE_MCP_HTTP", value_name = "ADDR", value_parser = parse_listen_addr)]
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

    /// Accept OAuth access tokens from this authorization server instead of a static bearer
    /// token: its issuer URL, e.g. https://keycloak.example.com/realms/acme. Its metadata and
    /// signing keys are discovered at start-up. Needs --public-url; excludes ONCE_MCP_HTTP_TOKEN
    /// and --http-token-file. Tokens must be JWTs for --public-url with the orders:read and/or
    /// orders:write scopes.
    #[arg(long, global = true, env = "ONCE_OAUTH_ISSUER", value_name = "URL")]
    pub oauth_issuer: Option<String>,

    /// This server's URL as MCP clients reach it, e.g. https://mcp.example.com/mcp: the
    /// audience (RFC 8707 resource) access tokens must carry, and the base of the protected
    /// resource metadata at /.well-known/oauth-protected-resource. Needs --oauth-issuer.
    #[arg(long, global = true, env = "ONCE_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,

    /// This server's own client id at the authorization server, to accept opaque access tokens
    /// through token introspection (RFC 7662); its secret comes from ONCE_OAUTH_CLIENT_SECRET,
    /// never a flag. Without it only JWT access tokens are accepted. Needs --oauth-issuer.
    #[arg(long, global = true, env = "ONCE_OAUTH_CLIENT_ID", value_name = "ID")]
    pub oauth_client_id: Option<String>,

    /// Another audience access tokens may carry instead of --public-url, which stays accepted
    /// (repeatable; comma-separated in the variable): for authorization servers that name the
    /// API their own way, e.g. Entra ID's application (client) id, or Keycloak's default
    /// `account`. Any token of the issuer that carries it is accepted, so prefer one that only
    /// this server's tokens carry. Needs --oauth-issuer.
    #[arg(
        long = "oauth-audience",
        global = true,
        env = "ONCE_OAUTH_AUDIENCE",
        value_name = "AUD",
        value_delimiter = ','
    )]
    pub oauth_audiences: Vec<String>,

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

    /// Say that clients reach this HTTP server through a reverse proxy that terminates TLS
    /// (Caddy, nginx…), so a static bearer token does not cross the network in clear: silences
    /// the start-up warning about it. Changes nothing else; the proxy is yours to set up.
    #[arg(long, global = true, env = "ONCE_BEHIND_TLS_PROXY", value_parser = clap::builder::FalseyValueParser::new())]
    pub behind_tls_proxy: bool,

    /// On SIGINT/SIGTERM in HTTP mode, how long calls in flight may take to finish, e.g. 30s.
    #[arg(long, global = true, env = "ONCE_MCP_SHUTDOWN_GRACE", value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Most HTTP connections open at once, e.g. 512. Past it a new connection gets 503 and is
    /// closed at once; the connections already admitted are served as before. The soft
    /// open-files limit is raised to the hard one at start; if that is below N plus 64, a
    /// warning says to raise `ulimit -n`.
    #[arg(long, global = true, env = "ONCE_MCP_MAX_CONNECTIONS", value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Most MCP sessions open at once over HTTP, Streamable HTTP and legacy SSE together. Past
    /// it an initialize (or GET /sse) is answered 503 with Retry-After.
    #[arg(long, global = true, env = "ONCE_MCP_MAX_SESSIONS", value_name = "N", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_sessions: u32,

    /// An HTTP session that sends no request for this long is closed, e.g. 10m (1 s to 24 h);
    /// its client must initialize again.
    #[arg(long, global = true, env = "ONCE_MCP_SESSION_IDLE_TIMEOUT", value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub session_idle_timeout: Duration,

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

    /// Keep every order read from 1NCE in the state store (the order mirror), so searches and
    /// lookups answer from it: "on" (default) or "off" (no copy of any order is kept).
    #[arg(long, global = true, env = "ONCE_MIRROR", value_name = "on|off", default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    pub mirror: bool,

    /// How long the mirror trusts an order that may still change (not COMPLETED or CANCELLED)
    /// before reading it again, e.g. 60s.
    #[arg(long, global = true, env = "ONCE_MIRROR_MAX_AGE", value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub mirror_max_age: Duration,

    /// The share of --rate-limit the mirror's background sync may use, from 0.05 to 1, e.g.
    /// 0.5 for half; an agent's own calls keep the rest.
    #[arg(long, global = true, env = "ONCE_MIRROR_RATE_SHARE", value_name = "SHARE", default_value = "0.5", value_parser = parse_share)]
    pub mirror_rate_share: f64,

    /// The flags whose value came from their environment variable, as (`--flag`, variable),
    /// so a message about a value can name where it was set (see [`Cli::name_variables`]).
    #[arg(skip)]
    pub from_environment: Vec<(String, String)>,
}

impl Cli {
    /// Parses this process's command line and environment, exiting with clap's message on a
    /// mistake.
    ///
    /// An environment variable set to the empty string counts as not set, as for the
    /// credentials: a launcher that fills a settings form into the environment (Claude
    /// Desktop's extension, a Docker env file, a CI secret that is not defined) writes
    /// `ONCE_MAX_QUANTITY=` for a field left blank, and blank means "no setting", not "the
    /// number nothing".
    ///
    /// clap's own messages name the flag; a bad value that came from the environment is
    /// reported naming the variable instead (see [`explain`]), and a flag that does not exist
    /// because its value is a secret says where the secret goes.
    pub fn from_process() -> Cli {
        use clap::{CommandFactory, FromArgMatches};
        let command = Cli::command().mut_args(|arg| {
            let blank = arg
                .get_env()
                .and_then(std::env::var_os)
                .is_some_and(|value| value.is_empty());
            if blank { arg.env(None) } else { arg }
        });
        let args: Vec<OsString> = std::env::args_os().collect();
        let matches = command
            .clone()
            .try_get_matches_from(&args)
            .unwrap_or_else(|e| explain(&command, e, &args).exit());
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        cli.from_environment = command
            .get_arguments()
            .filter(|a| {
                matches!(
                    matches.value_source(a.get_id().as_str()),
                    Some(clap::parser::ValueSource::EnvVariable)
                )
            })
            .filter_map(|a| {
                Some((
                    format!("--{}", a.get_long()?),
                    a.get_env()?.to_string_lossy().into_owned(),
                ))
            })
            .collect();
        cli
    }

    /// `message` (about the configuration) with the first mention of each flag whose value came
    /// from the environment naming its variable as well, unless the message names it already:
    /// "ONCE_CONFIRMATION_TTL (the environment variable of --confirmation-ttl) must be…".
    pub fn name_variables(&self, message: &str) -> String {
        let mut text = message.to_owned();
        for (flag, variable) in &self.from_environment {
            if text.contains(variable.as_str()) {
                continue;
            }
            let whole_word = text.match_indices(flag.as_str()).find(|(at, _)| {
                !text[at + flag.len()..]
                    .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-')
            });
            if let Some((at, _)) = whole_word {
                text.replace_range(
                    at..at + flag.len(),
                    &format!("{variable} (the environment variable of {flag})"),
                );
            }
        }
        text
    }
}

/// Flags people try for what never comes from a flag (a value on the command line is visible
/// to every user of the machine through `ps`), and where it goes instead.
const NOT_FLAGS: [(&str, &str); 7] = [
    (
        "--client-secret",
        "the 1NCE client secret is never a flag (every user of this machine could read it in the process list): set ONCE_CLIENT_SECRET in the environment",
    ),
    (
        "--client-id",
        "the 1NCE client id comes from the environment: set ONCE_CLIENT_ID (and ONCE_CLIENT_SECRET)",
    ),
    (
        "--http-token",
        "the HTTP bearer token is never a flag: set ONCE_MCP_HTTP_TOKEN in the environment, or name a file holding it with --http-token-file",
    ),
    (
        "--token",
        "the HTTP bearer token is never a flag: set ONCE_MCP_HTTP_TOKEN in the environment, or name a file holding it with --http-token-file",
    ),
    (
        "--oauth-client-secret",
        "the OAuth client secret is never a flag: set ONCE_OAUTH_CLIENT_SECRET in the environment",
    ),
    (
        "--password",
        "the state database's password is never a flag: set PGPASSWORD, or name a file holding it with ONCE_STATE_PASSWORD_FILE",
    ),
    (
        "--state-password",
        "the state database's password is never a flag: set PGPASSWORD, or name a file holding it with ONCE_STATE_PASSWORD_FILE",
    ),
];

/// clap's error `error` for the command line `args`, told better where clap cannot know:
/// - a value that is not valid and came from an environment variable (its flag is not on the
///   command line) names that variable, for every flag that has one;
/// - a flag that does not exist because its value is a secret says where the secret goes.
///
/// Any other error is clap's own.
pub fn explain(command: &clap::Command, error: clap::Error, args: &[OsString]) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let invalid_arg = match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => arg.clone(),
        _ => return error,
    };
    let flag = invalid_arg.split([' ', '=']).next().unwrap_or_default();
    match error.kind() {
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let Some(variable) = command
                .get_arguments()
                .find(|a| a.get_long().is_some_and(|long| flag == format!("--{long}")))
                .and_then(|a| a.get_env())
            else {
                return error;
            };
            let on_command_line = args.iter().skip(1).any(|a| {
                a.to_str()
                    .is_some_and(|a| a == flag || a.starts_with(&format!("{flag}=")))
            });
            if on_command_line || std::env::var_os(variable).is_none() {
                return error;
            }
            let rendered = error.render().to_string();
            let message = rendered
                .strip_prefix("error: ")
                .unwrap_or(&rendered)
                .replacen(
                    &format!("'{invalid_arg}'"),
                    &format!(
                        "{} (the environment variable of {flag})",
                        variable.to_string_lossy()
                    ),
                    1,
                );
            clap::Error::raw(error.kind(), message).with_cmd(command)
        }
        ErrorKind::UnknownArgument => {
            let Some((_, hint)) = NOT_FLAGS.iter().find(|(name, _)| *name == flag) else {
                return error;
            };
            let mut error = error;
            error.insert(
                ContextKind::Suggested,
                ContextValue::StyledStrs(vec![(*hint).to_owned().into()]),
            );
            error
        }
        _ => error,
    }
}

/// What to do instead of serving MCP.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run one tool through the server's own tool handler and exit (for scripts and Agent
    /// Skills): structuredContent as JSON on stdout, the text summary on stderr. Exit status 0 on
    /// success, 1 when the tool reports an error, 2 on bad usage, 3 when it could not run.
    #[command(after_help = crate::exit_status::ExitStatus::call_help())]
    Call {
        /// The tool to run: list_orders, get_order, find_orders, list_products or create_order.
        tool: String,
        /// The tool's arguments as a JSON object, e.g. '{"page": 2}'. Without --args or
        /// --args-file the tool is called with {} (stdin is never read unless asked for).
        #[arg(long, value_name = "JSON", conflicts_with = "args_file")]
        args: Option<String>,
        /// Read the tool's arguments (a JSON object) from this file; "-" reads them from stdin.
        #[arg(long, value_name = "FILE")]
        args_file: Option<PathBuf>,
    },
    /// Print the tools with their input and output schemas as JSON, as tools/list shows them.
    Tools,
    /// Check the configuration against 1NCE: get an access token, read a page of orders and the
    /// product list; with --oauth-issuer, read the authorization server's metadata and keys and
    /// try its introspection endpoint. Print a verdict. Exit status 0 ready, 2 bad
    /// configuration, 3 OAuth not usable, 4 credentials refused, 5 1NCE unreachable, 6
    /// unexpected answers. Works with --sandbox.
    Check,
    /// The order mirror: "status" says how much of the account it holds and how its sync goes;
    /// "drop" deletes every order it keeps (it fills again on next use unless --mirror off).
    Mirror {
        #[arg(value_enum)]
        action: MirrorAction,
    },
}

/// What `1nce-mcp mirror` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MirrorAction {
    Status,
    Drop,
}

/// "on" or "off" (also true/false, yes/no, 1/0).
pub(crate) fn parse_on_off(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        other => Err(format!("must be on or off, not {other:?}")),
    }
}

/// A share from 0.05 to 1.
pub(crate) fn parse_share(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if (0.05..=1.0).contains(&x) => Ok(x),
        _ => Err(format!(
            "must be a number from 0.05 to 1, such as 0.5, not {s:?}"
        )),
    }
}

/// `--rate-limit`: a limit, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSetting(pub Option<RateLimit>);

pub(crate) fn parse_rate_limit(s: &str) -> Result<RateLimitSetting, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        Ok(RateLimitSetting(None))
    } else {
        s.parse().map(|limit| RateLimitSetting(Some(limit)))
    }
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| {
        format!("{e}; write a duration such as 30s, 10m or 1h (a bare number means seconds)")
    })
}

/// Parses `--http`: `IP:PORT`, `[IPv6]:PORT`, `localhost:PORT` or a bare `PORT` (loopback).
pub fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    if let Some(port) = s
        .strip_prefix("localhost:")
        .and_then(|p| p.parse::<u16>().ok())
    {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    if s.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "{s} has no port; write it as {s}:8080, for example"
        ));
    }
    Err(format!(
        "{s} is not an address to listen on; write IP:PORT (127.0.0.1:8080, [::1]:8080, 0.0.0.0:8080), localhost:PORT or a bare PORT"
    ))
}

fn parse_spend_limit(text: &str) -> Result<SpendLimit, String> {
    SpendLimit::parse(text, false)
}

fn parse_spend_limit_per_person(text: &str) -> Result<SpendLimit, String> {
    SpendLimit::parse(text, true)
}
