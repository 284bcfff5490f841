//! The HTTP transport's settings, validated from the command line: where to listen, the bearer
//! token, and which `Host` and `Origin` values to accept.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
#[cfg(feature = "oauth")]
use url::Url;

use super::cli::Cli;
use crate::state::private as private_fs;

/// The environment variable holding the HTTP bearer token.
pub const TOKEN_ENV: &str = "ONCE_MCP_HTTP_TOKEN";
/// Shortest bearer token accepted: anything shorter is guessable.
const MIN_TOKEN_LEN: usize = 16;
/// Largest token file read: a token is a line of random characters, not a document.
pub const MAX_TOKEN_FILE_BYTES: u64 = 4 * 1024;

/// The environment variable holding the secret of `--oauth-client-id`.
pub const OAUTH_SECRET_ENV: &str = "ONCE_OAUTH_CLIENT_SECRET";

/// OAuth settings: an authorization server's issuer, this server's public URL, and its own
/// client for token introspection.
#[cfg(feature = "oauth")]
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    pub issuer: Url,
    pub public_url: Url,
    /// Client id and secret for introspecting opaque tokens (RFC 7662); `None`: JWTs only.
    pub introspection: Option<(String, SecretString)>,
    /// Audiences accepted besides the public URL (`--oauth-audience`), as given.
    pub audiences: Vec<String>,
}

#[cfg(feature = "oauth")]
impl OAuthSettings {
    /// `None` without either flag; `Err` with one of them alone, or with a bad URL.
    fn from_cli(
        cli: &Cli,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Option<OAuthSettings>, String> {
        fn given(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|v| !v.is_empty())
        }
        let (issuer, public_url) = match (given(&cli.oauth_issuer), given(&cli.public_url)) {
            (None, None) => {
                if given(&cli.oauth_client_id).is_some() {
                    return Err(
                        "--oauth-client-id only applies with --oauth-issuer and --public-url"
                            .to_owned(),
                    );
                }
                if cli.oauth_audiences.iter().any(|a| !a.trim().is_empty()) {
                    return Err(
                        "--oauth-audience / ONCE_OAUTH_AUDIENCE only applies with --oauth-issuer and --public-url"
                            .to_owned(),
                    );
                }
                return Ok(None);
            }
            (Some(_), None) => {
                return Err("--oauth-issuer needs --public-url (ONCE_PUBLIC_URL): the URL MCP clients reach this server at, e.g. https://mcp.example.com/mcp, which access tokens must name as their audience".to_owned());
            }
            (None, Some(_)) => {
                return Err("--public-url only applies with --oauth-issuer (ONCE_OAUTH_ISSUER): the authorization server whose access tokens this server accepts".to_owned());
            }
            (Some(i), Some(p)) => (i, p),
        };
        let issuer = oauth_url(issuer, "--oauth-issuer")?;
        if issuer.query().is_some() {
            return Err(format!(
                "--oauth-issuer {issuer} has a query; an issuer is a URL without query or fragment"
            ));
        }
        let public_url = oauth_url(public_url, "--public-url")?;
        if public_url.query().is_some() {
            return Err(format!(
                "--public-url {public_url} has a query; give the URL clients use, e.g. https://mcp.example.com/mcp"
            ));
        }
        let secret = env(OAUTH_SECRET_ENV).filter(|s| !s.trim().is_empty());
        let introspection = match (given(&cli.oauth_client_id), secret) {
            (None, None) => None,
            (Some(id), Some(secret)) => {
                Some((id.to_owned(), SecretString::from(secret.trim().to_owned())))
            }
            (Some(_), None) => {
                return Err(format!(
                    "--oauth-client-id needs its secret in {OAUTH_SECRET_ENV}: this server authenticates with both to introspect opaque access tokens"
                ));
            }
            (None, Some(_)) => {
                return Err(format!(
                    "{OAUTH_SECRET_ENV} is set without --oauth-client-id (ONCE_OAUTH_CLIENT_ID); set both to accept opaque access tokens, or neither"
                ));
            }
        };
        let audiences = audiences(&cli.oauth_audiences)?;
        Ok(Some(OAuthSettings {
            issuer,
            public_url,
            introspection,
            audiences,
        }))
    }
}

/// Longest `--oauth-audience` accepted.
#[cfg(feature = "oauth")]
const MAX_AUDIENCE_CHARS: usize = 512;

/// The `--oauth-audience` values, trimmed, each once, empty ones (`ONCE_OAUTH_AUDIENCE=`)
/// left out: printable, without spaces (an `aud` is an identifier: a URL, a client id, a name).
#[cfg(feature = "oauth")]
fn audiences(given: &[String]) -> Result<Vec<String>, String> {
    let mut audiences: Vec<String> = Vec::new();
    for value in given {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        if value.chars().count() > MAX_AUDIENCE_CHARS
            || value.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(format!(
                "--oauth-audience {value:?} is not an audience: at most {MAX_AUDIENCE_CHARS} characters without spaces, exactly as the `aud` claim of a token has it"
            ));
        }
        if !audiences.iter().any(|a| a == value) {
            audiences.push(value.to_owned());
        }
    }
    Ok(audiences)
}

/// An absolute https URL (http only on loopback), without user info or fragment.
#[cfg(feature = "oauth")]
fn oauth_url(value: &str, flag: &str) -> Result<Url, String> {
    let url = Url::parse(value).map_err(|e| {
        format!(
            "{flag} {value:?} is not a URL ({e}); write it whole, e.g. https://mcp.example.com/mcp"
        )
    })?;
    if url.host().is_none() || !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{flag} {value:?} needs an https scheme and a host"));
    }
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{flag} {value:?} has user info or a fragment; give the plain URL"
        ));
    }
    if url.scheme() == "http" && !crate::is_loopback_url(&url) {
        return Err(format!(
            "{flag} {value:?} is plain http: access tokens and keys would cross the network readable and changeable; use https (plain http is accepted on loopback only)"
        ));
    }
    Ok(url)
}

/// Validated settings of the HTTP transport.
#[derive(Clone)]
pub struct HttpSettings {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The bearer token clients must present; `None` with OAuth, or on loopback.
    pub token: Option<SecretString>,
    /// OAuth instead of the static token: the authorization server trusted, and this server's
    /// public URL.
    #[cfg(feature = "oauth")]
    pub oauth: Option<OAuthSettings>,
    /// `Host` values accepted (`host` or `host:port`); empty means any.
    pub allowed_hosts: Vec<String>,
    /// Browser origins accepted besides loopback ones, normalised (`scheme://host[:port]`).
    pub allowed_origins: Vec<String>,
    /// How long calls in flight may take to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Most connections open at once; past it new ones are refused.
    pub max_connections: usize,
    /// Most MCP sessions (Streamable HTTP and legacy SSE together) open at once.
    pub max_sessions: usize,
    /// A session without any request for this long is closed.
    pub session_idle_timeout: Duration,
    /// The operator says a reverse proxy terminates TLS in front (`--behind-tls-proxy`).
    pub behind_tls_proxy: bool,
}

/// Hand-written so the token never reaches a log through `{:?}`.
impl fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("HttpSettings");
        f.field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"));
        #[cfg(feature = "oauth")]
        f.field("oauth", &self.oauth);
        f.field("allowed_hosts", &self.allowed_hosts)
            .field("allowed_origins", &self.allowed_origins)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("max_connections", &self.max_connections)
            .field("max_sessions", &self.max_sessions)
            .field("session_idle_timeout", &self.session_idle_timeout)
            .field("behind_tls_proxy", &self.behind_tls_proxy)
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
            if cli.behind_tls_proxy {
                return Err(
                    "--behind-tls-proxy / ONCE_BEHIND_TLS_PROXY only applies with --http".into(),
                );
            }
            if cli.oauth_issuer.is_some()
                || cli.public_url.is_some()
                || cli.oauth_client_id.is_some()
                || cli.oauth_audiences.iter().any(|a| !a.trim().is_empty())
            {
                return Err(
                    "--oauth-issuer and --public-url only apply with --http: over stdio the client that starts the server is its only user".into(),
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
                let text = private_fs::read_secret_file(path, MAX_TOKEN_FILE_BYTES)
                    .map_err(|e| format!("could not use the bearer token file: {e}"))?;
                Some(check_token(
                    text.trim(),
                    &format!("the token file {}", path.display()),
                )?)
            }
            (None, None) => None,
        };
        #[cfg(feature = "oauth")]
        let oauth = OAuthSettings::from_cli(cli, &env)?;
        #[cfg(feature = "oauth")]
        if oauth.is_some() && token.is_some() {
            return Err(format!(
                "--oauth-issuer and a static bearer token ({TOKEN_ENV} or --http-token-file) are both set; use one: OAuth gives each person their own token (unset {TOKEN_ENV} and --http-token-file), a static token is one shared secret (drop --oauth-issuer and --public-url)"
            ));
        }
        #[cfg(feature = "oauth")]
        let (by_oauth, or_oauth) = (
            oauth.is_some(),
            "; or use OAuth (--oauth-issuer with --public-url)",
        );
        #[cfg(not(feature = "oauth"))]
        let (by_oauth, or_oauth) = (false, "");
        if token.is_none() && !by_oauth && !addr.ip().is_loopback() {
            return Err(format!(
                "refusing to serve on {addr} without a bearer token: anyone who can reach that address could list orders and place paid orders. Set {TOKEN_ENV} (or --http-token-file) to a long random secret, e.g. `openssl rand -hex 32`, and give it to your MCP clients{or_oauth}; or listen on loopback (127.0.0.1) only"
            ));
        }
        let session_idle_timeout = cli.session_idle_timeout;
        if session_idle_timeout < Duration::from_secs(1)
            || session_idle_timeout > Duration::from_secs(24 * 3600)
        {
            return Err(format!(
                "--session-idle-timeout must be between 1s and 24h, not {}",
                humantime::format_duration(session_idle_timeout)
            ));
        }
        // Clients reach the server under its public URL's host: that name is allowed too.
        #[cfg(feature = "oauth")]
        let public_host = oauth
            .as_ref()
            .and_then(|o| o.public_url.host_str())
            .filter(|_| !cli.allowed_hosts.iter().any(|h| h.trim() == "*"))
            .map(|public| {
                public
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned()
            });
        #[cfg(not(feature = "oauth"))]
        let public_host = None;
        let hosts: Vec<String> = cli
            .allowed_hosts
            .iter()
            .cloned()
            .chain(public_host)
            .collect();
        let allowed_hosts = allowed_hosts(addr, &hosts)?;
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
            #[cfg(feature = "oauth")]
            oauth,
            allowed_hosts,
            allowed_origins,
            shutdown_grace,
            max_connections: cli.max_connections as usize,
            max_sessions: cli.max_sessions as usize,
            session_idle_timeout,
            behind_tls_proxy: cli.behind_tls_proxy,
        }))
    }

    /// The start-up warning for a static bearer token served in clear to the network: off
    /// loopback, with no word from the operator (`--behind-tls-proxy`) that TLS is in front.
    /// `None` on loopback, with OAuth (its public URL is https, so TLS is in front), or behind
    /// a TLS proxy.
    pub fn cleartext_token_warning(&self) -> Option<String> {
        if self.token.is_none() || self.addr.ip().is_loopback() || self.behind_tls_proxy {
            return None;
        }
        Some(format!(
            "serving on {} with a static bearer token over plain HTTP: the token and every order cross the network in clear, and whoever reads the token on the way can list and place orders. Put a reverse proxy that terminates TLS in front (e.g. Caddy or nginx, see docs/operations.md), give clients its https:// URL, then pass --behind-tls-proxy (ONCE_BEHIND_TLS_PROXY=true) to say so; or listen on 127.0.0.1 only",
            self.addr
        ))
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
        let (name, ip) = this_machine();
        return Err(format!(
            "listening on {addr} accepts connections on every address of this machine, and the server answers only requests whose Host header it was told about (a guard against DNS rebinding). Name each host name or IP clients will use to reach it with --allowed-host, e.g. --allowed-host {name} --allowed-host {ip} (or ONCE_MCP_ALLOWED_HOSTS={name},{ip}); behind a reverse proxy, the name the proxy sends in Host. --allowed-host '*' accepts any Host header (not recommended)"
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
        if !is_host_entry(&host) {
            return Err(format!(
                "--allowed-host {host:?} is not a host name or IP address (optionally with :PORT), e.g. mcp.example.com, 192.168.1.20:8080 or [fd00::1]; a Host header could never match it"
            ));
        }
        hosts.push(host);
    }
    Ok(hosts)
}

/// This machine's host name and the IP it reaches other networks from, for the example in a
/// message; placeholders where they cannot be told. Connecting a UDP socket only picks the
/// route: no packet is sent.
fn this_machine() -> (String, String) {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| is_host_name(n) && n.as_str() != "localhost")
        .unwrap_or_else(|| "mcp.example.com".to_owned());
    let ip = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|socket| {
            // TEST-NET-1 (RFC 5737): routed like any outside address, never answered.
            socket.connect("192.0.2.1:9")?;
            socket.local_addr()
        })
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .map_or_else(|| "192.168.1.20".to_owned(), |ip| ip.to_string());
    (name, ip)
}

/// `name[:port]`, `IPv4[:port]`, `[IPv6][:port]` or a bare IPv6 address: what a `Host` header
/// can hold. Names are DNS labels (letters, digits, `-`, and `_` for internal names).
fn is_host_entry(entry: &str) -> bool {
    if entry.parse::<std::net::Ipv6Addr>().is_ok() {
        return true;
    }
    // `[IPv6]` or a name, then `:PORT` or nothing.
    let (host, rest) = match entry.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((ip, rest)) if ip.parse::<std::net::Ipv6Addr>().is_ok() => (None, rest),
            _ => return false,
        },
        None => match entry.find(':') {
            Some(colon) => (Some(&entry[..colon]), &entry[colon..]),
            None => (Some(entry), ""),
        },
    };
    let port_ok = match rest.strip_prefix(':') {
        Some(port) => port.parse::<u16>().is_ok(),
        None => rest.is_empty(),
    };
    port_ok && host.is_none_or(is_host_name)
}

/// A DNS name (or dotted IPv4 address): labels of letters, digits, `-` and `_`, at most 253
/// characters.
fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// `scheme://host[:port]` as browsers send it (lower-case, default port omitted).
///
/// Refused: `null` (the origin of sandboxed frames, `data:` and `file:` pages of any site),
/// wildcards (`https://*.example.com` never matches: origins are compared whole), user info,
/// paths, queries and fragments: anything but one exact origin.
pub fn normalize_origin(origin: &str) -> Result<String, String> {
    let origin = origin.trim();
    if origin.eq_ignore_ascii_case("null") {
        return Err(
            "origin \"null\" is what sandboxed frames and data: or file: pages of any website send; allowing it would let any of them call this server. List the web client's real origin, e.g. https://app.example.com".to_owned(),
        );
    }
    if origin.contains('*') {
        return Err(format!(
            "origin {origin:?} has a wildcard; origins are matched exactly, so list each one, e.g. https://app.example.com"
        ));
    }
    let url = url::Url::parse(origin).map_err(|e| {
        format!("origin {origin:?} is not valid ({e}); write it with its scheme, e.g. https://app.example.com or http://localhost:3000")
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!(
            "origin {origin:?} needs an http or https scheme and a host, e.g. https://app.example.com"
        ));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "origin {origin:?} has a path, query or fragment; an origin is only scheme://host[:port]"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() || origin.contains('@') {
        return Err(format!(
            "origin {origin:?} has user info; an origin is only scheme://host[:port]"
        ));
    }
    let is_name = match url.host() {
        Some(url::Host::Domain(d)) => is_host_name(d),
        Some(_) => true,
        None => false,
    };
    if !is_name {
        return Err(format!(
            "origin {origin:?} does not name a host; an origin is scheme://host[:port], e.g. https://app.example.com"
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
        let path = token_file("token", &format!("{TOKEN}\n"), 0o640);
        #[cfg(unix)]
        {
            let err = from_token_file(&path).unwrap_err();
            assert!(
                err.contains("other users (mode 640)") && err.contains("chmod 600"),
                "{err}"
            );
            set_mode(&path, 0o600);
        }
        let s = from_token_file(&path).unwrap().unwrap();
        assert_eq!(s.token.unwrap().expose_secret(), TOKEN);
        let env = |k: &str| (k == TOKEN_ENV).then(|| TOKEN.to_owned());
        let args = [
            "--http",
            "8080",
            "--http-token-file",
            path.to_str().unwrap(),
        ];
        let err = HttpSettings::from_cli(&cli(&args), env).unwrap_err();
        assert!(err.contains("use one of them"), "{err}");
        std::fs::remove_file(&path).unwrap();
        let err = from_token_file(&path).unwrap_err();
        assert!(err.contains("could not use the bearer token file"), "{err}");
    }

    #[test]
    #[cfg(feature = "oauth")]
    fn oauth_needs_both_urls_replaces_the_token_and_allows_the_public_host() {
        let oauth = [
            "--http",
            "0.0.0.0:8080",
            "--oauth-issuer",
            "https://kc.example.com/realms/acme",
            "--public-url",
            "https://mcp.example.com/mcp",
        ];
        let s = HttpSettings::from_cli(&cli(&oauth), |_| None)
            .unwrap()
            .unwrap();
        let o = s.oauth.as_ref().unwrap();
        assert_eq!(o.issuer.as_str(), "https://kc.example.com/realms/acme");
        assert_eq!(o.public_url.as_str(), "https://mcp.example.com/mcp");
        assert!(s.token.is_none());
        assert!(
            s.allowed_hosts.contains(&"mcp.example.com".to_owned()),
            "{:?}",
            s.allowed_hosts
        );
        assert!(o.audiences.is_empty());
        let token = |k: &str| (k == TOKEN_ENV).then(|| TOKEN.to_owned());
        let err = HttpSettings::from_cli(&cli(&oauth), token).unwrap_err();
        assert!(err.contains("use one"), "{err}");
        let err = HttpSettings::from_cli(&cli(&oauth[..4]), |_| None).unwrap_err();
        assert!(err.contains("needs --public-url"), "{err}");
        for bad in [
            "mcp.example.com/mcp",
            "http://mcp.example.com/mcp",
            "https://u:p@mcp.example.com/",
        ] {
            let mut args = oauth.to_vec();
            args[5] = bad;
            let err = HttpSettings::from_cli(&cli(&args), |_| None).unwrap_err();
            assert!(err.contains("--public-url"), "{bad}: {err}");
        }
    }

    #[test]
    #[cfg(feature = "oauth")]
    fn extra_audiences_are_kept_as_given_once_and_need_oauth() {
        let oauth = [
            "--http",
            "127.0.0.1:8080",
            "--oauth-issuer",
            "https://login.example.com/tenant/v2.0",
            "--public-url",
            "https://mcp.example.com/mcp",
        ];
        let with = |extra: &[&str]| {
            let args: Vec<&str> = oauth.iter().chain(extra).copied().collect();
            HttpSettings::from_cli(&cli(&args), |_| None)
        };
        let s = with(&[
            "--oauth-audience",
            " api://1nce-mcp ",
            "--oauth-audience=account,api://1nce-mcp",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(s.oauth.unwrap().audiences, ["api://1nce-mcp", "account"]);
        let s = with(&["--oauth-audience="]).unwrap().unwrap();
        assert!(s.oauth.unwrap().audiences.is_empty());
        for bad in ["a b", "x\u{7}"] {
            let flag = format!("--oauth-audience={bad}");
            let err = with(&[flag.as_str()]).unwrap_err();
            assert!(err.contains("--oauth-audience"), "{bad:?}: {err}");
        }
        let err = HttpSettings::from_cli(
            &cli(&["--http", "8080", "--oauth-audience", "account"]),
            |_| None,
        )
        .unwrap_err();
        assert!(err.contains("only applies with --oauth-issuer"), "{err}");
        let err =
            HttpSettings::from_cli(&cli(&["--oauth-audience", "account"]), |_| None).unwrap_err();
        assert!(err.contains("only apply with --http"), "{err}");
    }

    /// A token file in the temp directory with `contents` and (on Unix) `mode`.
    fn token_file(label: &str, contents: &str, mode: u32) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("1nce-mcp-{label}-{}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        set_mode(&path, mode);
        path
    }

    #[cfg_attr(not(unix), allow(unused_variables))]
    fn set_mode(path: &std::path::Path, mode: u32) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }

    fn from_token_file(path: &std::path::Path) -> Result<Option<HttpSettings>, String> {
        let path = path.to_str().unwrap();
        HttpSettings::from_cli(&cli(&["--http", "8080", "--http-token-file", path]), |_| {
            None
        })
    }

    #[test]
    fn token_files_are_read_to_a_bound() {
        let too_long = "x".repeat(MAX_TOKEN_FILE_BYTES as usize + 1);
        let path = token_file("big-token", &too_long, 0o600);
        let err = from_token_file(&path).unwrap_err();
        assert!(err.contains("larger than 4096 bytes"), "{err}");
        std::fs::remove_file(&path).unwrap();
        #[cfg(unix)]
        {
            let err = from_token_file(std::path::Path::new("/dev/zero")).unwrap_err();
            assert!(err.contains("not a regular file"), "{err}");
        }
    }

    #[test]
    fn origins_that_cannot_be_one_exact_origin_are_refused() {
        for bad in [
            "null",
            "NULL",
            "https://*.example.com",
            "*",
            "https://user:pw@app.example.com",
            "https://app.example.com/path",
            "https://app.example.com?q=1",
            "https://app.example.com#top",
            "ftp://app.example.com",
            "https://app_ex ample.com",
        ] {
            let err =
                HttpSettings::from_cli(&cli(&["--http", "8080", "--allowed-origin", bad]), |_| {
                    None
                })
                .unwrap_err();
            assert!(err.contains("origin"), "{bad}: {err}");
        }
        for good in [
            "http://localhost:6274",
            "https://[::1]:8443",
            "http://10.0.0.2:3000",
        ] {
            let s =
                HttpSettings::from_cli(&cli(&["--http", "8080", "--allowed-origin", good]), |_| {
                    None
                });
            assert!(s.is_ok(), "{good}: {s:?}");
        }
    }

    #[test]
    fn allowed_hosts_must_be_host_names() {
        for bad in [
            "a b",
            "user@host",
            "host:port",
            "host:99999",
            "-bad.example",
            "[::1",
            "a..b",
        ] {
            let flag = format!("--allowed-host={bad}");
            let err =
                HttpSettings::from_cli(&cli(&["--http", "8080", &flag]), |_| None).unwrap_err();
            assert!(err.contains("--allowed-host"), "{bad}: {err}");
        }
        for good in [
            "mcp.example.com",
            "mcp.example.com:8080",
            "192.168.1.20",
            "[fd00::1]:80",
            "fd00::1",
            "my_host",
        ] {
            let s =
                HttpSettings::from_cli(&cli(&["--http", "8080", "--allowed-host", good]), |_| None)
                    .unwrap()
                    .unwrap();
            assert!(s.allowed_hosts.contains(&good.to_owned()), "{good}");
        }
    }

    #[test]
    fn connection_and_session_limits_have_careful_defaults() {
        let s = HttpSettings::from_cli(&cli(&["--http", "8080"]), |_| None)
            .unwrap()
            .unwrap();
        assert_eq!(s.max_connections, 512);
        assert_eq!(s.max_sessions, 200);
        assert_eq!(s.session_idle_timeout, Duration::from_secs(600));
        let err = HttpSettings::from_cli(
            &cli(&["--http", "8080", "--session-idle-timeout", "0s"]),
            |_| None,
        )
        .unwrap_err();
        assert!(err.contains("--session-idle-timeout"), "{err}");
        assert!(Cli::try_parse_from(["1nce-mcp", "--max-connections", "0"]).is_err());
        assert!(Cli::try_parse_from(["1nce-mcp", "--max-sessions", "0"]).is_err());
    }

    #[test]
    fn unspecified_addresses_need_allowed_hosts() {
        let env = |k: &str| (k == TOKEN_ENV).then(|| TOKEN.to_owned());
        let err = HttpSettings::from_cli(&cli(&["--http", "0.0.0.0:8080"]), env).unwrap_err();
        assert!(
            err.contains("--allowed-host ") && err.contains("ONCE_MCP_ALLOWED_HOSTS="),
            "{err}"
        );
        // The example is a command line that would be accepted.
        let (name, ip) = this_machine();
        let example = format!("--allowed-host {name} --allowed-host {ip}");
        assert!(err.contains(&example), "{err}");
        let args = [
            "--http",
            "0.0.0.0:8080",
            "--allowed-host",
            name.as_str(),
            "--allowed-host",
            ip.as_str(),
        ];
        assert!(
            HttpSettings::from_cli(&cli(&args), env).is_ok(),
            "{example}"
        );
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
    fn a_static_token_off_loopback_is_warned_about_unless_behind_a_tls_proxy() {
        let token = |k: &str| (k == TOKEN_ENV).then(|| TOKEN.to_owned());
        let settings = |args: &[&str]| HttpSettings::from_cli(&cli(args), token).unwrap().unwrap();
        let lan = settings(&["--http", "192.168.1.5:8080"]);
        let warning = lan.cleartext_token_warning().expect("a warning");
        assert!(
            warning.contains("192.168.1.5:8080")
                && warning.contains("in clear")
                && warning.contains("docs/operations.md")
                && warning.contains("--behind-tls-proxy"),
            "{warning}"
        );
        assert!(!warning.contains(TOKEN), "{warning}");
        let any = settings(&["--http", "0.0.0.0:8080", "--allowed-host", "*"]);
        assert!(any.cleartext_token_warning().is_some());
        let proxied = settings(&["--http", "192.168.1.5:8080", "--behind-tls-proxy"]);
        assert_eq!(proxied.cleartext_token_warning(), None);
        assert_eq!(
            settings(&["--http", "8080"]).cleartext_token_warning(),
            None
        );
        assert_eq!(
            settings(&["--http", "[::1]:8080"]).cleartext_token_warning(),
            None
        );
        let err = HttpSettings::from_cli(&cli(&["--behind-tls-proxy"]), |_| None).unwrap_err();
        assert!(err.contains("only applies with --http"), "{err}");
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
