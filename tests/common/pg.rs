//! A real PostgreSQL for the tests, started by them: `initdb` and `pg_ctl` from Debian's
//! `postgresql` package on a temporary directory and a free loopback port, run as the
//! `postgres` user when the tests run as root (PostgreSQL refuses to run as root), stopped when
//! the [`Postgres`] is dropped, even after a panic.
//!
//! Without the binaries a test is skipped ([`Postgres::start`] returns `None` after
//! [`super::skip`]), except under `ONCE_INTEROP_REQUIRED=1` (CI), where their absence fails it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

/// A running PostgreSQL cluster of one test.
pub struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

/// The newest `/usr/lib/postgresql/N/bin` holding `pg_ctl`.
fn binaries() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

impl Postgres {
    /// Initialises and starts a cluster, or `None` after [`super::skip`] when PostgreSQL is not
    /// installed (which fails the test under `ONCE_INTEROP_REQUIRED=1`).
    pub fn start() -> Option<Postgres> {
        let Some(bin) = binaries() else {
            super::skip(
                "PostgreSQL (/usr/lib/postgresql/*/bin/pg_ctl) is not installed",
                "install Debian's postgresql package (apt-get install postgresql)",
            );
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("1nce-pg-")
            .tempdir_in(std::env::temp_dir())
            .expect("a temp dir for PostgreSQL")
            .keep();
        let as_postgres = is_root();
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("run chown");
            assert!(status.success(), "chown {} to postgres", dir.display());
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let pg = Postgres {
            bin,
            dir,
            port,
            as_postgres,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                pg.data().to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        pg.start_again();
        Some(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Runs one of the PostgreSQL binaries (as `postgres` when root), failing the test with its
    /// output if it fails.
    fn run(&self, program: &str, args: &[&str]) {
        let output = self
            .command(program, args)
            .output()
            .expect("run PostgreSQL");
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let path = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(path);
            cmd
        } else {
            Command::new(path)
        };
        cmd.args(args).current_dir(&self.dir);
        cmd
    }

    /// The URL the server is given: the `postgres` superuser's database, no password.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// Starts the cluster (again) on the same port and waits until it accepts connections.
    pub fn start_again(&self) {
        // Tests do not need durability; a measurement (BENCHMARKS.md) sets BENCH_PG_DURABLE=1.
        let fsync = if std::env::var("BENCH_PG_DURABLE").as_deref() == Ok("1") {
            ""
        } else {
            " -c fsync=off"
        };
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}{fsync} -c max_connections=100",
            self.port,
            self.dir.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-l",
                self.dir.join("log").to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// Stops the cluster at once, dropping every connection (as a crashed database would).
    #[cfg(feature = "postgres")]
    pub fn stop(&self) {
        let args = self.stop_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run("pg_ctl", &args);
    }

    fn stop_args(&self) -> [String; 6] {
        let data = self.data().to_string_lossy().into_owned();
        ["-D", &data, "-m", "immediate", "-w", "stop"].map(str::to_owned)
    }

    /// Runs `sql` with `psql` and returns its rows, one line each, fields separated by `|`.
    pub fn query(&self, sql: &str) -> Vec<String> {
        let port = self.port.to_string();
        let output = self
            .command(
                "psql",
                &[
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-At",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-c",
                    sql,
                ],
            )
            .output()
            .expect("run psql");
        assert!(
            output.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Postgres {
    /// The port the cluster listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs `script` with `psql` as `user` in database `db`, statement by statement as a person
    /// pasting it into psql would (so `CREATE DATABASE` runs outside a transaction), stopping at
    /// the first error. Returns what psql printed, or its error output.
    pub fn psql(&self, user: &str, db: &str, script: &str) -> Result<String, String> {
        use std::io::Write;
        let port = self.port.to_string();
        let mut child = self
            .command(
                "psql",
                &[
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-U",
                    user,
                    "-d",
                    db,
                    "-X",
                    "-q",
                    "-A",
                    "-t",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-f",
                    "-",
                ],
            )
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run psql");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .expect("write the script to psql");
        let output = child.wait_with_output().expect("psql ends");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "{stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let args = self.stop_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let _ = self.command("pg_ctl", &args).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
