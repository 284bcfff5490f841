//! `1nce-mcp`: parse the command line, set up logging on stderr, connect to 1NCE (or start the
//! sandbox), serve MCP on stdio, and on the way out let any order placement finish.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use onence_mcp::api::{Client, ClientConfig, Credentials};
use onence_mcp::config::{Cli, Config, Upstream};
use onence_mcp::mcp::{OrderServer, ServerOptions};
use onence_mcp::sandbox::{SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, Sandbox};
use rmcp::ServiceExt;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let config = match Config::from_cli(&cli, |name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("1nce-mcp: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("1nce-mcp: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("1nce-mcp: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr only: in stdio mode stdout belongs to the MCP protocol.
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .init();
}

async fn run(config: Config) -> Result<(), String> {
    // Held until the end: dropping it stops the simulated 1NCE.
    let mut sandbox = None;
    let (url, credentials) = match &config.upstream {
        Upstream::Live { url, credentials } => (url.clone(), credentials.clone()),
        Upstream::Sandbox => {
            let started = Sandbox::start()
                .await
                .map_err(|e| format!("could not start the sandbox on 127.0.0.1: {e}"))?;
            let url = started
                .base_url()
                .parse()
                .map_err(|e| format!("sandbox URL: {e}"))?;
            sandbox = Some(started);
            (
                url,
                Credentials::new(SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET),
            )
        }
    };
    let client = Client::new(ClientConfig {
        base_url: url.clone(),
        credentials,
        connect_timeout: config.connect_timeout,
        request_timeout: config.request_timeout,
    })
    .map_err(|e| e.to_string())?;
    let server = OrderServer::new(
        client,
        ServerOptions {
            confirmation_ttl: config.confirmation_ttl,
            sandbox: sandbox.is_some(),
            read_only: config.read_only,
            require_human_approval: config.require_human_approval,
            limits: config.limits.clone(),
            audit_log: config.audit_log.clone(),
        },
    );
    let in_flight = server.in_flight();

    let version = env!("CARGO_PKG_VERSION");
    if sandbox.is_some() {
        eprintln!(
            "1nce-mcp {version} ready on stdio against the built-in 1NCE SANDBOX at {url}: orders are simulated, nothing is charged or shipped"
        );
    } else {
        eprintln!("1nce-mcp {version} ready on stdio against {url}: orders are REAL and paid");
    }

    tokio::select! {
        served = serve_stdio(server) => served?,
        signal = shutdown_signal() => tracing::info!("{signal}: shutting down"),
    }
    // The stdio session is over; an order placement still running must reach its record.
    let grace = config.request_timeout + Duration::from_secs(5);
    if in_flight.count() > 0 {
        tracing::info!(
            "waiting for {} order placement(s) to finish",
            in_flight.count()
        );
        if tokio::time::timeout(grace, in_flight.idle()).await.is_err() {
            return Err("an order placement did not finish in time; check list_orders".into());
        }
    }
    drop(sandbox);
    Ok(())
}

async fn serve_stdio(server: OrderServer) -> Result<(), String> {
    let service = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("MCP session failed to start: {e}"))?;
    let reason = service
        .waiting()
        .await
        .map_err(|e| format!("MCP session failed: {e}"))?;
    tracing::info!(?reason, "MCP session ended");
    Ok(())
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
