//! `1nce-mcp`: parse the command line, set up logging on stderr, connect to 1NCE (or start the
//! sandbox), then serve MCP on stdio or over HTTP (`--http`), or run one tool call; on the way
//! out let any order
//! placement finish.

use std::io::Write as _;
use std::io::{IsTerminal, Read};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use onence_mcp::api::rate_limit::SharedBucket;
use onence_mcp::api::{Client, ClientConfig, Credentials};
use onence_mcp::config::{Cli, Command, Config, Upstream};
use onence_mcp::exit_status::{ExitStatus, QuietPipe};
use onence_mcp::mcp::{OrderServer, ServerOptions, ToolSet};
use onence_mcp::oneshot;
use onence_mcp::orders::{AuditTrail, Confirmations, private_fs};
use onence_mcp::sandbox::{SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, Sandbox};
use onence_mcp::state_db::tables::{AuditTable, RateBuckets, UsedTokens};
use onence_mcp::state_db::{self, StateDb};
use onence_mcp::stderr_log::NonBlockingStderr;
use onence_mcp::transport;
use rmcp::ServiceExt;
use rmcp::model::JsonObject;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
use tracing_subscriber::prelude::*;

/// A reason to stop, with the exit status that says which kind.
struct Exit {
    status: ExitStatus,
    message: String,
}

impl Exit {
    fn usage(message: impl Into<String>) -> Self {
        Exit {
            status: ExitStatus::Usage,
            message: message.into(),
        }
    }

    fn failure(message: impl Into<String>) -> Self {
        Exit {
            status: ExitStatus::Failure,
            message: message.into(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::from_process();
    // Serving HTTP, logs must never hold up a request: lines go through a queue that drops
    // them when stderr is not read (see `stderr_log`). stdio and the subcommands write directly,
    // in order with their other messages on stderr.
    let _drain = if cli.http.is_some() && cli.command.is_none() {
        let (writer, drain) = NonBlockingStderr::start();
        init_logging(writer);
        Some(drain)
    } else {
        init_logging(std::io::stderr);
        None
    };
    if let Some(Command::Tools) = cli.command {
        return match ToolSet::new(cli.tools.as_deref(), cli.read_only) {
            Ok(tools) => print_tools(&tools),
            Err(message) => exit(Exit::usage(message)),
        };
    }
    let config = match Config::from_cli(&cli, |name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(message) => return exit(Exit::usage(message)),
    };
    // Before anything runs: a state directory or audit log that other users could write (or
    // that is a symbolic link) is a configuration to fix, not one to use as found.
    // The sandbox's state lives inside the live one's, so that directory is checked too.
    let sandbox_parent = matches!(config.upstream, Upstream::Sandbox)
        .then(|| config.state_dir.parent())
        .flatten();
    // With --state-url the state directory is not used at all.
    let sandbox_parent = sandbox_parent.filter(|_| config.state_db.is_none());
    let checked = match sandbox_parent {
        Some(parent) => private_fs::check_state(parent, None),
        None => Ok(()),
    }
    .and_then(|()| match config.state_db {
        Some(_) => Ok(()),
        None => private_fs::check_state(&config.state_dir, config.audit_log.as_deref()),
    });
    if let Err(message) = checked {
        return exit(Exit::usage(message));
    }
    // One stdio session is a conversation of one client: a single-threaded runtime answers it
    // without handing each message between worker threads (a futex wake per hop, measured by
    // `cargo bench --bench mcp`). Many HTTP sessions at once use every core.
    let mut builder = if config.http.is_some() && cli.command.is_none() {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            return exit(Exit::failure(format!(
                "could not start the async runtime: {e}"
            )));
        }
    };
    let outcome = runtime.block_on(async {
        let (server, sandbox, state_db) = connect(&config).await?;
        let in_flight = server.in_flight();
        let outcome = match cli.command {
            Some(Command::Call {
                tool,
                args,
                args_file,
            }) => {
                let arguments = read_arguments(args.as_deref(), args_file.as_deref())?;
                call(server, &tool, arguments).await
            }
            Some(Command::Check) => {
                let mut out = QuietPipe::new(std::io::stdout());
                if let Some(db) = &state_db {
                    // Reaching here means it connected and its schema is current.
                    let version = db.version().map_err(|e| Exit::failure(format!("the state database {} failed: {e}", db.shown())))?;
                    writeln!(out, "state database {}: ready (PostgreSQL {version}, schema current)", db.shown())
                        .map_err(|e| Exit::failure(format!("could not write the report: {e}")))?;
                }
                let clock = server.clock_check();
                match &clock {
                    Ok(agreement) => writeln!(out, "state store clock: agrees with this machine's (within {} ms)", agreement.off_by.num_milliseconds().abs()),
                    Err(why) => writeln!(out, "state store clock: FAIL: {why}"),
                }
                .map_err(|e| Exit::failure(format!("could not write the report: {e}")))?;
                let verdict = onence_mcp::setup_check::run(server.client(), &mut out)
                    .await
                    .map_err(|e| Exit::failure(format!("could not write the report: {e}")))?;
                match (verdict.exit_status(), clock) {
                    (ExitStatus::Success, Ok(_)) => Ok(()),
                    (ExitStatus::Success, Err(_)) => Err(Exit::failure("")),
                    (status, _) => Err(Exit {
                        status,
                        message: String::new(),
                    }),
                }
            }
            _ => match config.http.clone() {
                Some(settings) => serve_http(server, settings, &config).await,
                None => serve_stdio(server, &config).await,
            },
        };
        // An order placement still running must reach its record before the process ends.
        in_flight.close();
        if !in_flight.is_empty() {
            tracing::info!("waiting for {} order placement(s) to finish", in_flight.len());
            let grace = config.request_timeout + Duration::from_secs(5);
            if tokio::time::timeout(grace, in_flight.wait()).await.is_err() {
                return Err(Exit::failure(
                    "an order placement did not finish in time; check list_orders before ordering again",
                ));
            }
        }
        drop(sandbox);
        drop(state_db);
        outcome
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => exit(e),
    }
}

fn exit(e: Exit) -> ExitCode {
    if !e.message.is_empty() {
        eprintln!("1nce-mcp: {}", e.message);
    }
    e.status.into()
}

/// Log targets that write whole MCP messages, and the most verbose level each may log at.
/// rmcp logs every request with its arguments and every result at debug and trace, and client
/// notifications at info: confirmation tokens (capabilities to spend money) and delivery
/// addresses (personal data). At warn and error it names failures, and quotes only the JSON-RPC
/// errors this server answers with, whose texts hold neither.
/// hyper, hyper-util, reqwest, h2 and axum were checked at trace: they log connections and
/// frame kinds, never bodies or header values.
/// tokio-postgres (through the `log` bridge) logs every statement's parameters at debug: the
/// signing key as it is stored, token ids, audit records. Its notices at info are kept.
const MESSAGE_LOGGERS: [(&str, LevelFilter); 2] = [
    ("rmcp", LevelFilter::WARN),
    ("tokio_postgres", LevelFilter::INFO),
];

/// Logs go to stderr only: in stdio mode stdout belongs to the MCP protocol.
///
/// `RUST_LOG` picks what is logged, within [`MESSAGE_LOGGERS`]' caps. The caps are a second
/// filter that every event must pass as well, not directives added to the user's: a directive
/// is overruled by a narrower one (`rmcp::service=trace`) or by a span directive
/// (`[serve_inner]=trace`), a second filter by nothing.
fn init_logging<W>(writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let caps = Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(MESSAGE_LOGGERS);
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(false)
                .with_target(false)
                .with_filter(filter.and(caps)),
        )
        .init();
}

fn print_tools(tools: &ToolSet) -> ExitCode {
    let tools = tools.definitions();
    let json = match serde_json::to_string_pretty(&tools) {
        Ok(json) => json,
        Err(e) => return exit(Exit::failure(format!("could not serialise the tools: {e}"))),
    };
    // A reader that stops early (`1nce-mcp tools | head`) is not an error.
    match writeln!(QuietPipe::new(std::io::stdout()), "{json}") {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => exit(Exit::failure(format!("could not write the tools: {e}"))),
    }
}

/// Builds the server for the configured 1NCE: the real API, or a sandbox started here (the
/// returned handle keeps it running), with its state in the state directory or, with
/// `--state-url`, in the database replicas share (exits here when that is unreachable).
async fn connect(
    config: &Config,
) -> Result<(OrderServer, Option<Sandbox>, Option<Arc<StateDb>>), Exit> {
    let mut sandbox = None;
    let (url, credentials) = match &config.upstream {
        Upstream::Live { url, credentials } => (url.clone(), credentials.clone()),
        Upstream::Sandbox => {
            let started = Sandbox::start().await.map_err(|e| {
                Exit::failure(format!("could not start the sandbox on 127.0.0.1: {e}"))
            })?;
            let url = started
                .base_url()
                .parse()
                .map_err(|e| Exit::failure(format!("sandbox URL: {e}")))?;
            sandbox = Some(started);
            (
                url,
                Credentials::new(SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET),
            )
        }
    };
    let state_db = match &config.state_db {
        None => None,
        Some(target) => Some(Arc::new(StateDb::open(target).map_err(Exit::failure)?)),
    };
    let client = Client::new(ClientConfig {
        base_url: url,
        credentials,
        connect_timeout: config.connect_timeout,
        request_timeout: config.request_timeout,
        retry: config.retry,
        rate_limit: config.rate_limit,
        shared_rate_limit: state_db
            .as_ref()
            .map(|db| Arc::new(RateBuckets::new(Arc::clone(db))) as Arc<dyn SharedBucket>),
    })
    .map_err(|e| Exit::failure(e.to_string()))?;
    let confirmations = match &state_db {
        Some(db) => {
            let key = state_db::signing_key(db).map_err(|e| {
                Exit::failure(format!(
                    "could not read or create the signing key in the state database {}: {e}",
                    db.shown()
                ))
            })?;
            Confirmations::with_store(
                key,
                Arc::new(UsedTokens::new(Arc::clone(db))),
                config.confirmation_ttl,
            )
        }
        None => Confirmations::open(&config.state_dir, config.confirmation_ttl).map_err(|e| {
            Exit::failure(format!(
                "could not use the state directory {} for confirmation tokens: {e}",
                config.state_dir.display()
            ))
        })?,
    }
    // A claimed token without an outcome after the longest a POST can take is one whose
    // process died mid-POST.
    .with_posting_grace(config.request_timeout + Duration::from_secs(60));
    // Said at start-up, and again by every preview and confirmation while it lasts.
    if let Err(why) = confirmations.clock_check() {
        tracing::warn!("{why}");
    }
    let server = OrderServer::new(
        client,
        Arc::new(confirmations),
        ServerOptions {
            sandbox: sandbox.is_some(),
            tools: config.tools.clone(),
            require_human_approval: config.require_human_approval,
            limits: config.limits.clone(),
            audit_log: config.audit_log.clone(),
            audit_trail: state_db.as_ref().map(|db| {
                Arc::new(AuditTable::new(Arc::clone(db), replica_name())) as Arc<dyn AuditTrail>
            }),
            approval_timeout: Some(config.confirmation_ttl),
            order_card: config.order_card,
        },
    );
    Ok((server, sandbox, state_db))
}

/// How this process signs its rows in the shared audit trail: host and process id.
fn replica_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|| "unknown-host".to_owned());
    format!("{host}:{}", std::process::id())
}

async fn serve_stdio(server: OrderServer, config: &Config) -> Result<(), Exit> {
    let version = env!("CARGO_PKG_VERSION");
    match &config.upstream {
        Upstream::Sandbox => eprintln!(
            "1nce-mcp {version} ready on stdio against the built-in 1NCE SANDBOX: orders are simulated, nothing is charged or shipped"
        ),
        Upstream::Live { url, .. } => {
            eprintln!("1nce-mcp {version} ready on stdio against {url}: orders are REAL and paid")
        }
    }
    let session = async {
        // Pipes and socket pairs (how clients spawn stdio servers) are read and written on the
        // I/O reactor, not through a blocking thread per message.
        let (stdin, stdout, mode) = transport::stdio::streams();
        tracing::debug!(?mode, "stdio transport");
        // Every line is checked before rmcp sees it, and a malformed request is answered.
        let transport = transport::framing::LineTransport::new(stdin, stdout);
        // A notification sent before `initialize` would otherwise end the session.
        let service = server
            .serve(onence_mcp::mcp::IgnoreBeforeInitialize::new(transport))
            .await
            .map_err(|e| Exit::failure(format!("MCP session failed to start: {e}")))?;
        let reason = service
            .waiting()
            .await
            .map_err(|e| Exit::failure(format!("MCP session failed: {e}")))?;
        tracing::info!(?reason, "MCP session ended");
        Ok(())
    };
    tokio::select! {
        served = session => served,
        signal = shutdown_signal() => {
            tracing::info!("{signal}: shutting down");
            Ok(())
        }
    }
}

async fn serve_http(
    server: OrderServer,
    settings: onence_mcp::config::HttpSettings,
    config: &Config,
) -> Result<(), Exit> {
    // The authorization server is asked for its metadata and keys before the port opens: a
    // server that cannot check tokens must not look ready.
    let oauth = match &settings.oauth {
        None => None,
        Some(o) => {
            let resource = onence_mcp::oauth::ResourceServer::discover(
                &o.issuer,
                &o.public_url,
                o.introspection.clone(),
            )
            .await
            .map_err(|e| Exit::failure(format!("OAuth: {e}")))?;
            for note in &resource.notes {
                tracing::warn!("the authorization server {}: {note}", resource.issuer());
            }
            Some(std::sync::Arc::new(resource))
        }
    };
    let oauth_line = oauth.as_ref().map(|o| {
        format!(
            "OAuth access tokens of {} for {} required; metadata at {}",
            o.issuer(),
            o.resource(),
            o.metadata_url()
        )
    });
    let http = transport::http::bind(settings, oauth)
        .await
        .map_err(Exit::failure)?;
    let addr = http.local_addr().map_err(Exit::failure)?;
    let auth = match (&oauth_line, http.requires_token()) {
        (Some(line), _) => line.as_str(),
        (None, true) => "bearer token required",
        (None, false) => "no token (loopback only)",
    };
    let against = match &config.upstream {
        Upstream::Sandbox => {
            "the built-in 1NCE SANDBOX: orders are simulated, nothing is charged or shipped"
                .to_owned()
        }
        Upstream::Live { url, .. } => format!("{url}: orders are REAL and paid"),
    };
    eprintln!(
        "1nce-mcp {} ready on http://{addr} (Streamable HTTP at /mcp, legacy SSE at /sse, health at /health; {auth}) against {against}",
        env!("CARGO_PKG_VERSION")
    );
    http.serve(server, shutdown_signal())
        .await
        .map_err(Exit::failure)
}

/// `call`: the tool's structuredContent on stdout, its text on stderr, the exit status says
/// whether the tool succeeded.
async fn call(server: OrderServer, tool: &str, arguments: JsonObject) -> Result<(), Exit> {
    let result = oneshot::call(server, tool, arguments)
        .await
        .map_err(|e| match e {
            oneshot::CallError::UnknownTool { .. } => Exit::usage(e.to_string()),
            oneshot::CallError::Session(_) => Exit::failure(e.to_string()),
        })?;
    let text: Vec<&str> = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
        .collect();
    if result.is_error == Some(true) {
        return Err(Exit {
            status: ExitStatus::ToolError,
            message: text.join("\n"),
        });
    }
    let structured = result.structured_content.unwrap_or_default();
    let json = serde_json::to_string_pretty(&structured)
        .map_err(|e| Exit::failure(format!("could not serialise the result: {e}")))?;
    let mut out = QuietPipe::new(std::io::stdout());
    let written = writeln!(out, "{json}").and_then(|()| out.flush());
    for line in text {
        eprintln!("{line}");
    }
    let unwritten = match written {
        Err(e) => Some(e.to_string()),
        Ok(()) if out.closed() => Some("stdout was closed".to_owned()),
        Ok(()) => None,
    };
    if let Some(why) = unwritten {
        // The tool did its work; what it did must not be lost with its output.
        if structured["status"] == "placed" {
            eprintln!(
                "1nce-mcp: the order WAS placed (order {}), but its result could not be written to stdout ({why})",
                structured["order_number"]
            );
        } else {
            eprintln!("1nce-mcp: the result could not be written to stdout ({why})");
        }
    }
    Ok(())
}

/// The tool arguments from `--args`, `--args-file` or stdin (when piped), as a JSON object.
fn read_arguments(args: Option<&str>, file: Option<&Path>) -> Result<JsonObject, Exit> {
    let (text, source) = match (args, file) {
        (Some(json), _) => (json.to_owned(), "--args".to_owned()),
        (None, Some(path)) if path == Path::new("-") => (read_stdin()?, "stdin".to_owned()),
        (None, Some(path)) => {
            let file = std::fs::File::open(path).map_err(|e| {
                Exit::usage(format!("cannot read --args-file {}: {e}", path.display()))
            })?;
            let source = path.display().to_string();
            (read_bounded(file, &source)?, source)
        }
        (None, None) if std::io::stdin().is_terminal() => (String::new(), "stdin".to_owned()),
        (None, None) => (read_stdin()?, "stdin".to_owned()),
    };
    if text.trim().is_empty() {
        return Ok(JsonObject::new());
    }
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(other) => Err(Exit::usage(format!(
            "the tool arguments from {source} must be a JSON object such as {{\"page\": 1}}, not {}",
            json_kind(&other)
        ))),
        Err(e) => Err(Exit::usage(format!(
            "the tool arguments from {source} are not valid JSON: {e}"
        ))),
    }
}

/// Largest tool arguments read from a file or stdin: an order is a few hundred bytes.
const MAX_ARGUMENTS_BYTES: u64 = 1024 * 1024;

fn read_stdin() -> Result<String, Exit> {
    read_bounded(std::io::stdin(), "stdin")
}

/// Reads at most [`MAX_ARGUMENTS_BYTES`] (one more tells a larger input from one that fits), so
/// `--args-file /dev/zero` is refused instead of filling memory.
fn read_bounded(reader: impl Read, source: &str) -> Result<String, Exit> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_ARGUMENTS_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Exit::usage(format!("cannot read the tool arguments from {source}: {e}")))?;
    if bytes.len() as u64 > MAX_ARGUMENTS_BYTES {
        return Err(Exit::usage(format!(
            "the tool arguments from {source} are larger than 1 MiB; tool arguments are a small JSON object"
        )));
    }
    String::from_utf8(bytes).map_err(|_| {
        Exit::usage(format!(
            "the tool arguments from {source} are not UTF-8 text"
        ))
    })
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Resolves on SIGINT or SIGTERM, naming the signal.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
