//! The process, from the command line to an exit status: logging, the configuration, the
//! runtime, the state store, the 1NCE client (or the sandbox), the MCP server, and then what
//! was asked: serve on stdio or HTTP, one `call`, a `check`, or the `tools`. `main.rs` is a few
//! lines over [`run`].
//!
//! Everything here is wiring; what each part does is in its own module.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::api::{Client, ClientConfig, Credentials};
use crate::config::{Cli, Command, Config, Upstream};
use crate::exit_status::{Exit, QuietPipe};
use crate::mcp::{OrderServer, ServerOptions, ToolSet};
use crate::orders::Confirmations;
use crate::sandbox::{SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, Sandbox};
use crate::state::{Account, StateError, Store};

/// Runs the command line `cli` to its end.
pub fn run(cli: Cli) -> ExitCode {
    // Serving HTTP, logs must never hold up a request (see `stderr_log`); stdio and the
    // subcommands write directly, in order with their other messages on stderr.
    let serving_http = cli.http.is_some() && cli.command.is_none();
    // A server's log is its operator's view: warnings by default. A command (`call`, `check`…)
    // reports what went wrong itself, in its result; a warning before it would only say it
    // twice (wrong credentials: a timestamped WARN line, then the message that says what to do).
    let default_level = if cli.command.is_some() {
        "error"
    } else {
        "warn"
    };
    let _drain = crate::stderr_log::start(serving_http, default_level);
    if let Some(Command::Tools) = cli.command {
        return match ToolSet::new(cli.tools.as_deref(), cli.read_only) {
            Ok(tools) => print_tools(&tools),
            Err(message) => Exit::usage(cli.name_variables(&message)).report(),
        };
    }
    let config = match Config::from_cli(&cli, |name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(message) => return Exit::usage(cli.name_variables(&message)).report(),
    };
    // One stdio session is a conversation of one client: a single-threaded runtime answers it
    // without handing each message between worker threads (a futex wake per hop, measured by
    // `cargo bench --bench mcp`). Many HTTP sessions at once use every core.
    let mut builder = if serving_http {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return Exit::failure(format!("could not start the async runtime: {e}")).report(),
    };
    match runtime.block_on(serve(cli.command, &config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}

/// Builds everything for `config`, does `command`, and lets any order placement finish.
async fn serve(command: Option<Command>, config: &Config) -> Result<(), Exit> {
    let (server, sandbox, store) = connect(config).await?;
    let in_flight = server.in_flight();
    let against = match &config.upstream {
        Upstream::Sandbox => {
            "the built-in 1NCE SANDBOX: orders are simulated, nothing is charged or shipped"
                .to_owned()
        }
        Upstream::Live { url, .. } => format!("{url}: orders are REAL and paid"),
    };
    let outcome = match command {
        Some(Command::Call {
            tool,
            args,
            args_file,
        }) => {
            let arguments = crate::oneshot::read_arguments(args.as_deref(), args_file.as_deref())?;
            crate::oneshot::run(server, &config.tools, &tool, arguments).await
        }
        Some(Command::Check) => check(&server, &store, config.http.as_ref()).await,
        Some(Command::Mirror { action }) => mirror(&server, action).await,
        _ => match config.http.clone() {
            Some(settings) => crate::transport::serve_http(server, settings, &against)
                .await
                .map_err(Exit::failure),
            None => crate::transport::serve_stdio(server, &against)
                .await
                .map_err(Exit::failure),
        },
    };
    // An order placement still running must reach its record before the process ends.
    in_flight.close();
    if !in_flight.is_empty() {
        tracing::info!(
            "waiting for {} order placement(s) to finish",
            in_flight.len()
        );
        let grace = config.request_timeout + Duration::from_secs(5);
        if tokio::time::timeout(grace, in_flight.wait()).await.is_err() {
            return Err(Exit::failure(
                "an order placement did not finish in time; check list_orders before ordering again",
            ));
        }
    }
    drop(sandbox);
    outcome
}

/// `check`: the state store, its clock against this machine's, then 1NCE and the OAuth
/// authorization server (see `setup_check`); the exit status says which kind of problem came
/// first.
async fn check(
    server: &OrderServer,
    store: &Store,
    http: Option<&crate::config::HttpSettings>,
) -> Result<(), Exit> {
    let mut out = QuietPipe::new(std::io::stdout());
    let report = |e: std::io::Error| Exit::failure(format!("could not write the report: {e}"));
    if let Some(note) = store.adopted() {
        writeln!(out, "state store: {note}").map_err(report)?;
    }
    if let Some(line) = store
        .check()
        .await
        .map_err(|e| Exit::failure(e.to_string()))?
    {
        writeln!(out, "{line}").map_err(report)?;
    }
    let clock = server.clock_check().await;
    match &clock {
        Ok(agreement) => writeln!(
            out,
            "state store clock: agrees with this machine's (within {} ms)",
            agreement.off_by.num_milliseconds().abs()
        ),
        Err(why) => writeln!(out, "state store clock: FAIL: {why}"),
    }
    .map_err(report)?;
    let spend = server.spend_standing().await;
    match &spend {
        Ok(standings) => {
            for s in standings.iter() {
                let line = if s.per_person {
                    format!(
                        "spend limit {}: each person's own budget, resets {} (their figures are in list_products)",
                        s.limit, s.resets_at
                    )
                } else {
                    format!(
                        "spend limit {}: {} spent, {} left {} (resets {})",
                        s.limit,
                        s.spent,
                        s.left,
                        s.period.this(),
                        s.resets_at
                    )
                };
                writeln!(out, "{line}").map_err(report)?;
            }
        }
        Err(why) => writeln!(
            out,
            "spend limits: FAIL: cannot be read ({why}); nothing can be ordered"
        )
        .map_err(report)?,
    }
    if let Some(mirror) = server.mirror() {
        let line = match mirror.coverage().await {
            Ok(coverage) => mirror_line(&coverage),
            Err(e) => format!("cannot be read ({e}); answers read 1NCE directly"),
        };
        writeln!(out, "order mirror: {line}").map_err(report)?;
    }
    let verdict = crate::setup_check::run(server.client(), http, &mut out)
        .await
        .map_err(report)?;
    match (verdict.exit_status(), clock.is_ok() && spend.is_ok()) {
        (crate::exit_status::ExitStatus::Success, true) => Ok(()),
        (crate::exit_status::ExitStatus::Success, false) => Err(Exit::failure("")),
        (status, _) => Err(Exit {
            status,
            message: String::new(),
        }),
    }
}

/// `mirror status` and `mirror drop`.
async fn mirror(server: &OrderServer, action: crate::config::MirrorAction) -> Result<(), Exit> {
    let Some(mirror) = server.mirror() else {
        return Err(Exit::usage(
            "the order mirror is off (--mirror off or ONCE_MIRROR=off): it keeps nothing",
        ));
    };
    let failed = |e: crate::state::StateError| Exit::failure(format!("the order mirror: {e}"));
    match action {
        crate::config::MirrorAction::Drop => {
            mirror.drop_all().await.map_err(failed)?;
            println!("order mirror: dropped; it fills again on next use");
            Ok(())
        }
        crate::config::MirrorAction::Status => {
            let coverage = mirror.coverage().await.map_err(failed)?;
            println!("order mirror: {}", mirror_line(&coverage));
            Ok(())
        }
    }
}

/// How much the mirror holds and how its sync goes, in one line.
fn mirror_line(coverage: &crate::mirror::Coverage) -> String {
    let mut line = format!("holds {}", coverage.describe());
    if coverage.complete() {
        line.push_str(", the whole account");
        if let Some(at) = coverage.last_pass {
            line.push_str(&format!(
                " (newest pages read {})",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
    } else {
        line.push_str("; the rest is read in the background while the server runs");
    }
    if let Some(error) = &coverage.error {
        line.push_str(&format!("; the sync stopped: {error}"));
    }
    line
}

fn print_tools(tools: &ToolSet) -> ExitCode {
    let tools = tools.definitions();
    let json = match serde_json::to_string_pretty(&tools) {
        Ok(json) => json,
        Err(e) => return Exit::failure(format!("could not serialise the tools: {e}")).report(),
    };
    // A reader that stops early (`1nce-mcp tools | head`) is not an error.
    match writeln!(QuietPipe::new(std::io::stdout()), "{json}") {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => Exit::failure(format!("could not write the tools: {e}")).report(),
    }
}

/// A store refused by its rules (exit status 2, the operator's to fix), or one that cannot be
/// used (3).
fn store_exit(e: StateError) -> Exit {
    match e {
        StateError::Refused(message) => Exit::usage(message),
        other => Exit::failure(other.to_string()),
    }
}

/// Builds the server for the configured 1NCE: the real API, or a sandbox started here (the
/// returned handle keeps it running), with its state in the store the configuration names.
/// A state directory others could write (or a symbolic link), or a store of another 1NCE
/// account, is exit status 2, naming the fix; a store that cannot be used otherwise, 3.
async fn connect(config: &Config) -> Result<(OrderServer, Option<Sandbox>, Store), Exit> {
    // Known before the sandbox starts: the sandbox is named, not its port of the day.
    let account = match &config.upstream {
        Upstream::Live { url, credentials } => Account::api(url, credentials.client_id()),
        Upstream::Sandbox => Account::BuiltInSandbox,
    };
    let store = Store::open(&config.state, &account)
        .await
        .map_err(store_exit)?;
    let mut sandbox = None;
    let (url, credentials) = match &config.upstream {
        Upstream::Live { url, credentials } => (url.clone(), credentials.clone()),
        Upstream::Sandbox => {
            // Its orders are kept beside the rest of the sandbox's state, so one-shot calls see
            // each other's.
            let orders_file = store.sandbox_orders_file().map_err(store_exit)?;
            let options = crate::sandbox::SandboxOptions {
                orders: config.sandbox_orders,
                orders_file,
                ..Default::default()
            };
            let started = Sandbox::start_with(options).await.map_err(|e| {
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
    let client = Client::new(ClientConfig {
        base_url: url,
        credentials,
        connect_timeout: config.connect_timeout,
        request_timeout: config.request_timeout,
        retry: config.retry,
        rate_limit: config.rate_limit,
        shared_rate_limit: store.shared_bucket(),
    })
    .map_err(|e| Exit::failure(e.to_string()))?;
    // A claimed token without an outcome after the longest a POST can take is one whose
    // process died mid-POST.
    let confirmations = Confirmations::new(store.clone(), config.confirmation_ttl)
        .with_posting_grace(config.request_timeout + Duration::from_secs(60));
    // Said at start-up, and again by every preview and confirmation while it lasts. An error,
    // not a warning: nothing can be ordered (and a command, which logs only errors, says it too).
    if let Err(why) = confirmations.clock_check().await {
        tracing::error!("{why}");
    }
    let server = OrderServer::new(
        client,
        Arc::new(confirmations),
        ServerOptions {
            sandbox: sandbox.is_some(),
            tools: config.tools.clone(),
            require_human_approval: config.require_human_approval,
            limits: config.limits.clone(),
            approval_timeout: Some(config.confirmation_ttl),
            order_card: config.order_card,
            mirror: config.mirror,
        },
    );
    Ok((server, sandbox, store))
}
