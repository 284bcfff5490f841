//! The operator's recipes of docs/operations.md, run as written with real programs: the
//! PostgreSQL set-up (its SQL, literally, against a PostgreSQL this test starts; the owner's first
//! `check`; the serving role's `check` and an order) and the TLS reverse proxy (the nginx
//! configuration, literally, with Debian's nginx in front of `1nce-mcp --http`, an MCP client over
//! HTTPS through it). What the test changes is said where it changes it: the database's host and
//! port, the proxy's ports and the directory of its certificate files.
//!
//! PostgreSQL comes from /usr/lib/postgresql/*/bin (`common::pg`), nginx from `ONCE_NGINX` (else
//! /usr/sbin/nginx) and openssl from `ONCE_OPENSSL` (else /usr/bin/openssl); `.ci/run` installs
//! them. Without one the test does not run and says so (`common::skip`), or fails under
//! `ONCE_INTEROP_REQUIRED=1`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use onence_mcp::sandbox::Sandbox;
use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::json;

use crate::common::markdown::{self, OPERATIONS, ShellCommand, assignment, shell_commands};
use crate::common::pg::Postgres;
use crate::common::{self, Group, PATIENCE, Session, Stderr};

/// Runs `text` as a shell runs it, in `dir`, with the binary first on `PATH` (and `extra_path`
/// before it), in the environment the tests give the binary plus `env`.
async fn sh(text: &str, dir: &Path, extra_path: &[&Path], env: &[(&str, &str)]) -> Output {
    let mut path: Vec<PathBuf> = extra_path.iter().map(|p| p.to_path_buf()).collect();
    path.push(common::binary().parent().unwrap().to_path_buf());
    let path = std::env::join_paths(path.into_iter().chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let mut base = common::command(&[], env);
    let mut shell = tokio::process::Command::new("sh");
    shell
        .arg("-c")
        .arg(text)
        .current_dir(dir)
        .env_clear()
        .envs(
            base.as_std_mut()
                .get_envs()
                .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))),
        )
        .env("PATH", path)
        .env("HOME", dir)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(120), shell.output())
        .await
        .unwrap_or_else(|_| panic!("{text}: did not end within 2 minutes"))
        .unwrap()
}

fn succeeded(what: &str, out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The one command of `commands` containing `needle`.
fn command_with<'a>(commands: &'a [ShellCommand], needle: &str) -> &'a ShellCommand {
    let found: Vec<&ShellCommand> = commands
        .iter()
        .filter(|c| c.text.contains(needle))
        .collect();
    assert_eq!(found.len(), 1, "one command with {needle:?}: {found:?}");
    found[0]
}

/// `text` with `from` replaced by `to`, which must occur in it: a recipe that changed shape
/// fails here rather than testing something else.
fn substituted(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} in {text}");
    text.replace(from, to)
}

#[cfg(unix)]
#[tokio::test]
async fn postgres_set_up_runs_as_written() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let section = markdown::section(OPERATIONS, "### Setting up the database");
    let sql: Vec<markdown::Block> = markdown::blocks(section)
        .into_iter()
        .filter(|b| b.lang == "sql")
        .collect();
    assert_eq!(sql.len(), 2, "the superuser's SQL, then the owner's grants");
    let commands = shell_commands(section);
    // The database runs here: the documents' host and port become this cluster's.
    let here = format!("127.0.0.1:{}", pg.port());
    let local = |text: &str| substituted(text, "db.internal:5432", &here);
    let sandbox = Sandbox::start().await.unwrap();
    let api = sandbox.base_url();
    // The 1NCE credentials the recipe expects in the environment: the sandbox's, at its URL.
    let credentials = common::sandbox_env(&api);
    let dir = common::temp_dir("pg-recipe");

    // 1. As a superuser: the roles and the owner's database.
    pg.psql("postgres", "postgres", &sql[0].body)
        .unwrap_or_else(|e| panic!("the superuser's SQL of the manual fails:\n{e}"));

    // 2. The owner's first `check` creates the tables.
    let owner_check = command_with(&commands, "once_mcp_owner@");
    let out = sh(&local(&owner_check.text), &dir, &[], &credentials).await;
    let stdout = succeeded("the owner's first check", &out);
    assert!(stdout.contains("ready (PostgreSQL"), "{stdout}");
    let owners = pg
        .psql(
            "postgres",
            "once_mcp",
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public';",
        )
        .unwrap();
    assert_eq!(
        owners.trim(),
        "once_mcp_owner",
        "the owner created every table"
    );

    // 3. As the owner, in the new database: the serving role's grants.
    pg.psql("once_mcp_owner", "once_mcp", &sql[1].body)
        .unwrap_or_else(|e| panic!("the owner's grants of the manual fail:\n{e}"));

    // 4. The serving role: the replicas' `check`, then an order through the same --state-url.
    let replicas = shell_commands(markdown::section(OPERATIONS, "### Running the replicas"));
    let serving_check = command_with(&replicas, "1nce-mcp check --state-url");
    let text = local(&serving_check.text);
    assert!(text.contains("postgres://once_mcp@"), "{text}");
    let out = sh(&text, &dir, &[], &credentials).await;
    let stdout = succeeded("the serving role's check", &out);
    assert!(stdout.contains("ready (PostgreSQL"), "{stdout}");
    let url = markdown::words(&text)
        .into_iter()
        .skip_while(|w| w != "--state-url")
        .nth(1)
        .expect("the serving role's --state-url");
    let order = r#"{"products": [{"product_id": 1001, "quantity": 2}]}"#;
    // With the same 1NCE account as the owner's check: the database is that account's.
    let call = |args: String| {
        let url = url.clone();
        async move {
            common::run(
                None,
                &["--state-url", &url, "call", "create_order", "--args", &args],
                &credentials,
            )
            .await
        }
    };
    let preview = call(order.to_owned()).await;
    assert_eq!(preview.code, 0, "{preview:?}");
    let placed = call(preview.confirming(order)).await;
    assert_eq!(placed.code, 0, "{placed:?}");
    assert_eq!(placed.json()["status"], "placed", "{placed:?}");

    // What the recipe promises of the serving role: it writes the trail but cannot rewrite it,
    // and creates no tables.
    let events = pg
        .psql(
            "once_mcp_owner",
            "once_mcp",
            "SELECT count(*) FROM audit_trail;",
        )
        .unwrap();
    assert!(
        events.trim().parse::<u32>().unwrap() >= 2,
        "the preview and the order are in the trail: {events}"
    );
    for refused in [
        "DELETE FROM audit_trail;",
        "UPDATE audit_trail SET event = 'x';",
        "CREATE TABLE intruder (x int);",
    ] {
        let error = pg.psql("once_mcp", "once_mcp", refused).expect_err(refused);
        assert!(error.contains("permission denied"), "{refused}: {error}");
    }
}

/// The proxy: nginx run in the foreground from a configuration of the test's that includes the
/// manual's server block. Killed with its workers (a process group) when dropped.
#[cfg(unix)]
struct Nginx {
    group: Group,
    stderr: Stderr,
}

#[cfg(unix)]
impl Nginx {
    async fn start(nginx: &Path, dir: &Path, server_block: &str) -> Nginx {
        std::fs::write(dir.join("1nce-mcp.conf"), server_block).unwrap();
        // nginx refuses to run as root without a `user`; the test's files are root's.
        // SAFETY: geteuid has no preconditions and cannot fail.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root;"
        } else {
            ""
        };
        let d = dir.display();
        let main = format!(
            "{user}\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log stderr info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/client_body;\n  \
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             include {d}/1nce-mcp.conf;\n}}\n"
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, main).unwrap();
        let prefix = format!("{d}/");
        let tested = std::process::Command::new(nginx)
            .args(["-p", &prefix, "-c"])
            .arg(&conf)
            .arg("-t")
            .output()
            .expect("run nginx -t");
        assert!(
            tested.status.success(),
            "nginx -t refuses the manual's configuration:\n{}",
            String::from_utf8_lossy(&tested.stderr)
        );
        let mut command = tokio::process::Command::new(nginx);
        command
            .args(["-p", &prefix, "-c"])
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut group = Group::spawn(command);
        let stderr = Stderr::capture(group.child.stderr.take().unwrap());
        Nginx { group, stderr }
    }
}

#[cfg(unix)]
impl Drop for Nginx {
    fn drop(&mut self) {
        self.group.kill();
    }
}

/// Waits until something accepts connections on `addr`.
async fn listening(addr: SocketAddr, what: &str, log: impl Fn() -> String) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} does not listen on {addr}:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(unix)]
#[tokio::test]
async fn nginx_recipe_puts_tls_in_front_of_the_server() {
    let how = "install Debian's package (apt-get install nginx openssl), or set the variable to \
               the program";
    let Some(nginx) = common::installed("ONCE_NGINX", Some("/usr/sbin/nginx"), how) else {
        return;
    };
    let Some(openssl) = common::installed("ONCE_OPENSSL", Some("/usr/bin/openssl"), how) else {
        return;
    };
    common::install_crypto();
    let section = markdown::section(OPERATIONS, "### TLS in front: nginx");
    let commands = shell_commands(section);
    let dir = common::temp_dir("tls-recipe");
    let tools = [openssl.parent().unwrap()];

    // 1. The local CA and the proxy's certificate, as written; and the token file of "Serve
    //    over HTTP", as written.
    let certificates: Vec<&ShellCommand> = commands
        .iter()
        .filter(|c| c.text.starts_with("openssl "))
        .collect();
    assert_eq!(certificates.len(), 2, "{commands:?}");
    let token_file = command_with(&shell_commands(OPERATIONS), "openssl rand").clone();
    for command in certificates.into_iter().chain([&token_file]) {
        succeeded(&command.text, &sh(&command.text, &dir, &tools, &[]).await);
    }
    let token = std::fs::read_to_string(dir.join("1nce-mcp.token")).unwrap();
    let token = token.trim();

    // 3. The server behind the proxy, as written but on a port of its own (and against the
    //    sandbox, with its credentials, for the real 1NCE's).
    let sandbox = Sandbox::start().await.unwrap();
    let api = sandbox.base_url();
    let server_line = command_with(&commands, "1nce-mcp --http 127.0.0.1:8080");
    let args: Vec<String> = markdown::words(&server_line.text)
        .into_iter()
        .skip_while(|w| assignment(w).is_some())
        .skip(1)
        .map(|w| w.replace("127.0.0.1:8080", "127.0.0.1:0"))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = common::command(&args, &common::sandbox_env(&api));
    server
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut server = server.spawn().expect("spawn the server");
    let server_log = Stderr::capture(server.stderr.take().unwrap());
    let ready = server_log.wait_for(" ready on http://").await;
    let backend = ready
        .split(" ready on http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();

    // 2. nginx with the manual's server block: the proxy on a free loopback port instead of
    //    443, the server's port instead of 8080, the certificate files in this test's directory.
    let port = common::net::free_port();
    let block = markdown::blocks(section)
        .into_iter()
        .find(|b| b.lang == "nginx")
        .expect("the manual's nginx configuration");
    let config = substituted(
        &block.body,
        "listen 443 ssl;",
        &format!("listen 127.0.0.1:{port} ssl;"),
    );
    let config = substituted(&config, "127.0.0.1:8080", &backend);
    let config = substituted(&config, "/etc/nginx/tls/", &format!("{}/", dir.display()));
    let proxy = Nginx::start(&nginx, &dir, &config).await;
    let public = SocketAddr::from(([127, 0, 0, 1], port));
    listening(public, "nginx", || proxy.stderr.now()).await;

    // 4. A client that trusts the local CA, reaching mcp.example.com at the proxy.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.crt")).unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([ca])
        .resolve("mcp.example.com", public)
        .build()
        .unwrap();
    let base = format!("https://mcp.example.com:{port}");

    // The MCP client: initialize, then list orders, over HTTPS through the proxy.
    let config = StreamableHttpClientTransportConfig::with_uri(format!("{base}/mcp"))
        .auth_header(token.to_owned());
    let transport = StreamableHttpClientTransport::with_client(http.clone(), config);
    let session = Session {
        client: ().serve(transport).await.unwrap_or_else(|e| {
            panic!("MCP initialize through nginx: {e}\n{}", proxy.stderr.now())
        }),
    };
    let orders = session.ok("list_orders", json!({"page_size": 3})).await;
    assert_eq!(orders["orders"].as_array().unwrap().len(), 3, "{orders}");
    session.client.cancel().await.unwrap();

    // Streaming passes unbuffered: a legacy SSE stream's first event (the endpoint to POST to)
    // arrives while the stream stays open. A buffering proxy holds the answer, its headers too,
    // until the stream ends (when the session expires, minutes later).
    let (stream, first) = tokio::time::timeout(Duration::from_secs(10), async {
        let mut stream = http
            .get(format!("{base}/sse"))
            .bearer_auth(token)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), 200);
        let first = stream.chunk().await.unwrap().expect("the stream is open");
        (stream, first)
    })
    .await
    .expect("the SSE stream's first event arrives through the proxy at once");
    let first = String::from_utf8_lossy(&first);
    assert!(first.contains("event: endpoint"), "{first}");
    drop(stream);

    // The token still guards the server behind the proxy.
    let refused = http.post(format!("{base}/mcp")).send().await.unwrap();
    assert_eq!(refused.status(), 401);

    drop(proxy);
    server.kill().await.unwrap();
}
