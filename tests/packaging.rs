//! The release packaging: the Claude Desktop extension that `scripts/package-mcpb` builds,
//! packed, unpacked and started the way the host starts it; and the release metadata (Cargo.toml,
//! the extension's manifest, the MCP Registry's `server.json`, README) telling one story.
//!
//! The mcpb CLI comes from `scripts/packaging-setup` (CI runs it), which exports `ONCE_MCPB`.
//! Without it the bundle test skips (listed at the end of the run, see `common::skip`), unless
//! `ONCE_INTEROP_REQUIRED=1`, as in CI, makes a missing CLI a failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use onence_mcp::sandbox::{SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, Sandbox};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::common::{Server, binary, installed, spawn_command, temp_dir};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// How to get the packaging tools, for a test that finds them missing.
const PACKAGING_SETUP: &str = "run `eval \"$(scripts/packaging-setup)\"`";

fn read_json(path: impl AsRef<Path>) -> Value {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The platform part of a bundle's name on this machine, as scripts/package-mcpb names it.
fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        other => other,
    };
    format!("{}-{arch}", std::env::consts::OS)
}

/// Runs `cmd` to completion and returns its stdout; fails the test with both streams if it fails.
async fn stdout_of(cmd: &mut Command, what: &str) -> String {
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.kill_on_drop(true).output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within 5 minutes"))
        .unwrap_or_else(|e| panic!("{what} did not start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Packs the test's binary with scripts/package-mcpb into `work` and unpacks the bundle there
/// with the mcpb CLI; returns the directory the extension was unpacked to. The binary is
/// stripped of its debug information first where `strip` is at hand: zipping 200 MB of it takes
/// a minute.
async fn pack_and_unpack(mcpb: &Path, work: &Path) -> PathBuf {
    let server = work.join("1nce-mcp");
    std::fs::copy(binary(), &server).unwrap();
    let _ = Command::new("strip")
        .arg("--strip-debug")
        .arg(&server)
        .status()
        .await;
    let out = stdout_of(
        Command::new("python3")
            .arg(format!("{ROOT}/scripts/package-mcpb"))
            .arg("--binary")
            .arg(&server)
            .arg("--out")
            .arg(work)
            .env("MCPB", mcpb),
        "scripts/package-mcpb",
    )
    .await;
    let bundle = PathBuf::from(out.lines().last().unwrap_or_default().trim());
    assert_eq!(
        bundle.file_name().and_then(|n| n.to_str()),
        Some(
            format!(
                "1nce-mcp-{}-{}.mcpb",
                env!("CARGO_PKG_VERSION"),
                host_platform()
            )
            .as_str()
        )
    );
    let unpacked = work.join("unpacked");
    stdout_of(
        Command::new(mcpb).arg("unpack").arg(&bundle).arg(&unpacked),
        "mcpb unpack",
    )
    .await;
    unpacked
}

/// What the host runs for the extension: command, arguments, environment.
struct Launch {
    command: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
}

/// The launch configuration for the settings form's `user_config` values, worked out by the
/// mcpb library itself (tests/packaging/claude_desktop_launch.mjs).
async fn launch(mcpb: &Path, extension: &Path, user_config: Value) -> Launch {
    let library = mcpb
        .parent()
        .and_then(Path::parent)
        .expect("the mcpb CLI is node_modules/.bin/mcpb")
        .join("@anthropic-ai")
        .join("mcpb");
    let out = stdout_of(
        Command::new("node")
            .arg(format!("{ROOT}/tests/packaging/claude_desktop_launch.mjs"))
            .arg(&library)
            .arg(extension)
            .arg(user_config.to_string()),
        "working out the launch configuration",
    )
    .await;
    assert!(!out.contains("${"), "a placeholder was left: {out}");
    let config: Value = serde_json::from_str(&out).unwrap();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    Launch {
        command: config["command"].as_str().unwrap().to_owned(),
        args: strings(&config["args"]),
        env: config["env"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect(),
    }
}

/// Starts the server from `launch` alone, in an otherwise empty environment with a home of its
/// own (where the state directory goes by default) and whatever `inherited` adds to it, and
/// completes `initialize`.
async fn start(launch: &Launch, inherited: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(&launch.command);
    cmd.args(&launch.args)
        .env_clear()
        .env("HOME", temp_dir("home"))
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(inherited.iter().copied())
        .envs(&launch.env);
    spawn_command(cmd).await
}

const ONE_SIM: fn(u64) -> Value =
    |quantity| json!({"products": [{"product_id": 1001, "quantity": quantity}]});

#[tokio::test]
async fn the_extension_starts_as_claude_desktop_starts_it() {
    let Some(mcpb) = installed("ONCE_MCPB", None, PACKAGING_SETUP) else {
        return;
    };
    let work = temp_dir("mcpb");
    let extension = pack_and_unpack(&mcpb, &work).await;
    let manifest = read_json(extension.join("manifest.json"));

    // A person who fills in nothing gets the sandbox, not an error.
    let blank = launch(&mcpb, &extension, json!({})).await;
    assert_eq!(
        PathBuf::from(&blank.command),
        extension.join("server").join("1nce-mcp")
    );
    let server = start(&blank, &[]).await;
    let instructions = server.client.peer_info().unwrap().instructions.clone();
    assert!(
        instructions.unwrap_or_default().contains("sandbox"),
        "the agent is told it works on the sandbox"
    );
    // The manifest lists exactly the tools the server offers, described as the server does.
    let offered: Vec<Value> = server
        .client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| json!({"name": t.name, "description": t.description}))
        .collect();
    assert_eq!(Value::Array(offered), manifest["tools"]);
    let preview = server.ok("create_order", ONE_SIM(1)).await;
    assert!(preview["confirmation_token"].is_string(), "{preview}");
    server.stop().await;

    // With an account: the credentials reach the server through its environment only, and
    // the form's limits apply. The test's sandbox stands in for 1NCE, named by the host's own
    // environment.
    let sandbox = Sandbox::start().await.unwrap();
    let live = launch(
        &mcpb,
        &extension,
        json!({
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": SANDBOX_CLIENT_SECRET,
            "sandbox": false,
            "max_quantity": "5",
        }),
    )
    .await;
    assert_eq!(live.env["ONCE_CLIENT_SECRET"], SANDBOX_CLIENT_SECRET);
    for arg in std::iter::once(&live.command).chain(&live.args) {
        assert!(
            !arg.contains(SANDBOX_CLIENT_SECRET) && !arg.contains(SANDBOX_CLIENT_ID),
            "a credential on the command line: {arg}"
        );
    }
    let url = sandbox.base_url();
    let server = start(&live, &[("ONCE_API_URL", &url)]).await;
    #[cfg(target_os = "linux")]
    {
        let pid = server.pid.expect("the server's process id");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let cmdline = String::from_utf8_lossy(&cmdline);
        assert!(!cmdline.contains(SANDBOX_CLIENT_SECRET), "{cmdline}");
    }
    let orders = server.ok("list_orders", json!({})).await;
    assert!(!orders["orders"].as_array().unwrap().is_empty(), "{orders}");
    let refused = server.err("create_order", ONE_SIM(6)).await;
    assert!(refused.contains("--max-quantity 5"), "{refused}");
    assert!(server.ok("create_order", ONE_SIM(5)).await["confirmation_token"].is_string());
    server.stop().await;
    // Three copies of the server (the binary, the bundle, the unpacked extension): not worth
    // keeping once both servers have exited.
    let _ = std::fs::remove_dir_all(&work);
}

/// Cargo.toml, the extension's manifest, the MCP Registry's server.json and README tell one
/// story: one version, one repository, one registry name (the README's `mcp-name:` line proves
/// the cargo package's ownership), and server.json's settings are the extension's settings.
#[test]
fn release_metadata_agrees() {
    let version = env!("CARGO_PKG_VERSION");
    let repository = env!("CARGO_PKG_REPOSITORY");
    let manifest = read_json(format!("{ROOT}/packaging/mcpb/manifest.json"));
    let entry = read_json(format!("{ROOT}/server.json"));
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).unwrap();

    assert_eq!(manifest["version"], version);
    assert_eq!(manifest["repository"]["url"], repository);
    assert_eq!(entry["version"], version);
    assert_eq!(entry["repository"]["url"], repository);
    let owner = repository
        .strip_prefix("https://github.com/")
        .and_then(|rest| rest.split('/').next())
        .expect("a GitHub repository");
    let name = format!("io.github.{owner}/1nce-mcp");
    assert_eq!(entry["name"], name.as_str());
    assert!(
        readme
            .lines()
            .any(|l| l.trim() == format!("mcp-name: {name}")),
        "README needs the visible line `mcp-name: {name}`"
    );

    let packages = entry["packages"].as_array().unwrap();
    let cargo = packages
        .iter()
        .find(|p| p["registryType"] == "cargo")
        .expect("a cargo package");
    assert_eq!(cargo["identifier"], env!("CARGO_PKG_NAME"));
    assert_eq!(cargo["version"], version);
    for bundle in packages.iter().filter(|p| p["registryType"] == "mcpb") {
        let url = bundle["identifier"].as_str().unwrap();
        assert!(
            url.starts_with(&format!(
                "{repository}/releases/download/v{version}/1nce-mcp-{version}-"
            )) && url.ends_with(".mcpb"),
            "{url}"
        );
    }

    // The registry's environment variables are the extension's, secret where its form field is
    // sensitive.
    let form = &manifest["user_config"];
    let extension_env = manifest["server"]["mcp_config"]["env"].as_object().unwrap();
    let registry_env = cargo["environmentVariables"].as_array().unwrap();
    let mut names: Vec<&str> = registry_env
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    let mut expected: Vec<&str> = extension_env.keys().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(names, expected);
    for variable in registry_env {
        let field = extension_env[variable["name"].as_str().unwrap()]
            .as_str()
            .unwrap()
            .trim_start_matches("${user_config.")
            .trim_end_matches('}');
        assert_eq!(
            variable["isSecret"].as_bool(),
            Some(form[field]["sensitive"] == true),
            "{variable}"
        );
    }
}

/// The release job's registry entry (scripts/release-server-json) carries each bundle's
/// SHA-256, which the registry requires of mcpb packages, still passes the registry's schema,
/// and is refused while a bundle is missing.
#[tokio::test]
async fn the_release_registry_entry_carries_each_bundles_sha256() {
    use sha2::{Digest, Sha256};
    let Some(ajv) = installed("ONCE_AJV", None, PACKAGING_SETUP) else {
        return;
    };
    let dist = temp_dir("release");
    let script = format!("{ROOT}/scripts/release-server-json");
    let entry = read_json(format!("{ROOT}/server.json"));
    let bundles: Vec<String> = entry["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["registryType"] == "mcpb")
        .map(|p| {
            p["identifier"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(!bundles.is_empty());
    for (i, name) in bundles.iter().enumerate() {
        // Every bundle but the last, so the script can be seen refusing first.
        if i + 1 < bundles.len() {
            std::fs::write(dist.join(name), name).unwrap();
        }
    }
    let missing = Command::new("python3")
        .arg(&script)
        .arg(&dist)
        .output()
        .await
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains(bundles.last().unwrap()));

    std::fs::write(dist.join(bundles.last().unwrap()), bundles.last().unwrap()).unwrap();
    let out = stdout_of(Command::new("python3").arg(&script).arg(&dist), &script).await;
    let release: Value = serde_json::from_str(&out).unwrap();
    for package in release["packages"].as_array().unwrap() {
        let url = package["identifier"].as_str().unwrap();
        if package["registryType"] == "mcpb" {
            let name = url.rsplit('/').next().unwrap();
            let sum: String = Sha256::digest(name.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(package["fileSha256"], sum.as_str(), "{url}");
        } else {
            assert!(package.get("fileSha256").is_none(), "{url}");
        }
    }
    std::fs::write(dist.join("server.json"), &out).unwrap();
    stdout_of(
        Command::new(&ajv)
            .args([
                "validate",
                "--spec=draft7",
                "--strict=false",
                "-c",
                "ajv-formats",
                "-s",
            ])
            .arg(format!("{ROOT}/packaging/registry/server.schema.json"))
            .arg("-d")
            .arg(dist.join("server.json")),
        "ajv validate",
    )
    .await;
}
