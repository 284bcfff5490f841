//! The HTTP transport's settings, validated from the command line: where to listen, the bearer
//! token, and which `Host` and `Origin` values to accept.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;

use super::cli::Cli;

/// The environment variable holding the HTTP bearer token.
pub const TOKEN_ENV: &str = "ONCE_MCP_HTTP_TOKEN";
/// Shortest bearer token accepted: anything shorter is guessable.
const MIN_TOKEN_LEN: usize = 16;

/// Validated settings of the HTTP transport.
#[derive(Clone)]
pub struct HttpSettings {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The bearer token clients must present; `None` only on loopback.
    pub token: Option<SecretString>,
    /// `Host` values accepted (`host` or `host:port`); empty means any.
    pub allowed_hosts: Vec<String>,
    /// Browser origins accepted besides loopback ones, normalised (`scheme://host[:port]`).
    pub allowed_origins: Vec<String>,
    /// How long calls in flight may take to finish on shutdown.
    pub shutdown_grace: Duration,
}

/// Hand-written so the token never reaches a log through `{:?}`.
impl fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSettings")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("allowed_hosts", &self.allowed_hosts)
            .field("allowed_origins", &self.allowed_origins)
            .field("shutdown_grace", &self.shutdown_grace)
            .finish()
    }
}

impl HttpSettings {
    /// `None` unless `--http` was given; otherwise the checked settings, reading the token from
    /// `ONCE_MCP_HTTP_TOKEN` (through `env`) or `--http-token-file`.
    pub fn from_cli(
        cli: &Cli,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<HttpSettings>, String> {
        let Some(addr) = cli.http else {
            if cli.http_token_file.is_some() {
                return Err(
                    "--http-token-file / ONCE_MCP_HTTP_TOKEN_FILE only applies with --http".into(),
                );
            }
            return Ok(None);
        };
        let shutdown_grace = cli.shutdown_grace;
        if shutdown_grace > Duration::from_secs(3600) {
            return Err(format!(
                "--shutdown-grace must be at most 1h, not {}",
                humantime::format_duration(shutdown_grace)
            ));
        }
        let from_env = env(TOKEN_ENV).filter(|t| !t.trim().is_empty());
        let token = match (from_env, &cli.http_token_file) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "both {TOKEN_ENV} and --http-token-file are set; use one of them"
                ));
            }
            (Some(token), None) => Some(check_token(token.trim(), TOKEN_ENV)?),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    format!(
                        "could not read the bearer token file {}: {e}",
                        path.display()
                    )
                })?;
                Some(check_token(
                    text.trim(),
                    &format!("the token file {}", path.display()),
                )?)
            }
            (None, None) => None,
        };
        if token.is_none() && !addr.ip().is_loopback() {
            return Err(format!(
                "refusing to serve on {addr} without a bearer token: anyone who can reach that address could list orders and place paid orders. Set {TOKEN_ENV} (or --http-token-file) to a long random secret, e.g. `openssl rand -hex 32`, and give it to your MCP clients; or listen on loopback (127.0.0.1) only"
            ));
        }
        let allowed_hosts = allowed_hosts(addr, &cli.allowed_hosts)?;
        let allowed_origins = cli
            .allowed_origins
            .iter()
            .map(|o| o.trim())
            .filter(|o| !o.is_empty())
            .map(normalize_origin)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(HttpSettings {
            addr,
            token,
            allowed_hosts,
            allowed_origins,
            shutdown_grace,
        }))
    }
}

fn check_token(token: &str, source: &str) -> Result<SecretString, String> {
    if token.chars().count() < MIN_TOKEN_LEN {
        return Err(format!(
            "the bearer token in {source} is too short: use at least {MIN_TOKEN_LEN} random characters, e.g. `openssl rand -hex 32`"
        ));
    }
    if token.chars().any(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "the bearer token in {source} must be printable ASCII without spaces (it travels in an HTTP header), e.g. `openssl rand -hex 32`"
        ));
    }
    Ok(SecretString::from(token.to_owned()))
}

/// Loopback names always; the bound IP when it is a specific address; then the user's list.
fn allowed_hosts(addr: SocketAddr, extra: &[String]) -> Result<Vec<String>, String> {
    let extra: Vec<String> = extra
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    if extra.iter().any(|h| h == "*") {
        return Ok(Vec::new());
    }
    if addr.ip().is_unspecified() && extra.is_empty() {
        return Err(format!(
            "listening on {addr} accepts connections for any of this machine's addresses; name the host names or IPs clients will use with --allowed-host (e.g. --allowed-host mcp.example.com --allowed-host 192.168.1.20), or --allowed-host '*' to accept any Host header"
        ));
    }
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(String::from)
        .collect();
    if !addr.ip().is_unspecified() && !addr.ip().is_loopback() {
        hosts.push(addr.ip().to_string());
    }
    for host in extra {
        if host.contains('/') || host.contains("://") {
            return Err(format!(
                "--allowed-host {host}: give a host name or IP, optionally with :PORT, not a URL"
            ));
        }
        hosts.push(host);
    }
    Ok(hosts)
}

/// `scheme://host[:port]` as browsers send it (lower-case, default port omitted), or `null`.
pub fn normalize_origin(origin: &str) -> Result<String, String> {
    let origin = origin.trim();
    if origin == "null" {
        return Ok("null".to_owned());
    }
    let url = url::Url::parse(origin).map_err(|e| {
        format!("origin {origin:?} is not valid ({e}); write it with its scheme, e.g. https://app.example.com or http://localhost:3000")
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!(
            "origin {origin:?} needs an http or https scheme and a host, e.g. https://app.example.com"
        ));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() {
        return Err(format!(
            "origin {origin:?} has a path; an origin is only scheme://host[:port]"
        ));
    }
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::cli::parse_listen_addr;
    use clap::Parser;
    use secrecy::ExposeSecret;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("1nce-mcp").chain(args.iter().copied())).unwrap()
    }

    const TOKEN: &str = "0123456789abcdef0123";

    #[test]
    fn no_http_flag_means_stdio() {
        assert!(
            HttpSettings::from_cli(&cli(&[]), |_| None)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn loopback_needs_no_token_but_other_addresses_do() {
        let s = HttpSettings::from_cli(&cli(&["--http", "8080"]), |_| None)
            .unwrap()
            .unwrap();
        assert_eq!(s.addr, "127.0.0.1:8080".parse().unwrap());
        assert!(s.token.is_none());
        assert_eq!(s.allowed_hosts, ["localhost", "127.0.0.1", "::1"]);
        let err =
            HttpSettings::from_cli(&cli(&["--http", "192.168.1.5:8080"]), |_| None).unwrap_err();
        assert!(
            err.contains("without a bearer token") && err.contains(TOKEN_ENV),
            "{err}"
        );
        let env = |k: &str| (k == TOKEN_ENV).then(|| TOKEN.to_owned());
        let s = HttpSettings::from_cli(&cli(&["--http", "192.168.1.5:8080"]), env)
            .unwrap()
            .unwrap();
        assert!(s.allowed_hosts.contains(&"192.168.1.5".to_owned()));
        assert!(!format!("{s:?}").contains(TOKEN), "token in Debug");
    }

    #[test]
    fn tokens_are_checked_and_read_from_a_file() {
        let short = |k: &str| (k == TOKEN_ENV).then(|| "short".to_owned());
        let err = HttpSettings::from_cli(&cli(&["--http", "8080"]), short).unwrap_err();
        assert!(
            err.contains("too short") && !err.contains("short\""),
            "{err}"
        );
        let path = std::env::temp_dir().join(format!("1nce-mcp-token-{}", std::process::id()));
        std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
        let args = [
            "--http",
            "8080",
            "--http-token-file",
            path.to_str().unwrap(),
        ];
        let s = HttpSettings::from_cli(&cli(&args), |_| None)
            .unwrap()
            .unwrap();
        assert_eq!(s.token.unwrap().expose_secret(), TOKEN);
        let env = |k: &str| (k == TOKEN_ENV).then(|| TOKEN.to_owned());
        let err = HttpSettings::from_cli(&cli(&args), env).unwrap_err();
        assert!(err.contains("use one of them"), "{err}");
        std::fs::remove_file(&path).unwrap();
        let err = HttpSettings::from_cli(&cli(&args), |_| None).unwrap_err();
        assert!(
            err.contains("could not read the bearer token file"),
            "{err}"
        );
    }

    #[test]
    fn unspecified_addresses_need_allowed_hosts() {
        let env = |k: &str| (k == TOKEN_ENV).then(|| TOKEN.to_owned());
        let err = HttpSettings::from_cli(&cli(&["--http", "0.0.0.0:8080"]), env).unwrap_err();
        assert!(err.contains("--allowed-host"), "{err}");
        let s = HttpSettings::from_cli(
            &cli(&[
                "--http",
                "0.0.0.0:8080",
                "--allowed-host",
                "MCP.example.com",
            ]),
            env,
        )
        .unwrap()
        .unwrap();
        assert!(s.allowed_hosts.contains(&"mcp.example.com".to_owned()));
        let s = HttpSettings::from_cli(
            &cli(&["--http", "0.0.0.0:8080", "--allowed-host", "*"]),
            env,
        )
        .unwrap()
        .unwrap();
        assert!(s.allowed_hosts.is_empty());
    }

    #[test]
    fn origins_are_normalised_and_listen_addresses_parsed() {
        let s = HttpSettings::from_cli(
            &cli(&[
                "--http",
                "8080",
                "--allowed-origin",
                "https://App.Example.com:443/",
            ]),
            |_| None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.allowed_origins, ["https://app.example.com"]);
        let err = HttpSettings::from_cli(
            &cli(&["--http", "8080", "--allowed-origin", "app.example.com"]),
            |_| None,
        )
        .unwrap_err();
        assert!(err.contains("scheme"), "{err}");
        assert_eq!(
            parse_listen_addr("localhost:0").unwrap(),
            "127.0.0.1:0".parse().unwrap()
        );
        assert_eq!(
            parse_listen_addr("[::1]:9").unwrap(),
            "[::1]:9".parse().unwrap()
        );
        assert!(
            parse_listen_addr("127.0.0.1")
                .unwrap_err()
                .contains("no port")
        );
        assert!(parse_listen_addr("example.com:80").is_err());
    }
}
