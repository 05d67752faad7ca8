//! A throwaway PostgreSQL 15 for the fleet tests. [`Cluster::start`] makes one of the test's own
//! (initdb in a temporary directory, 127.0.0.1 on a free port, trust authentication), which the
//! test may stop and start again; [`shared`] is the one server of the whole test binary: such a
//! cluster, or the server named by `VODUP_TEST_POSTGRES` where CI has started one
//! (`.ci/postgres`). Each test takes a database of its own from [`Cluster::create_database`], so
//! tests sharing a server never see each other's rows.
//!
//! The binaries come from `/usr/lib/postgresql/15/bin` (`VODUP_PG_BIN` overrides it). Without
//! them the fleet tests skip, loudly, so that `cargo test` works with only the Rust toolchain;
//! `VODUP_REQUIRE_POSTGRES=1` (set by CI) makes that a failure. initdb and pg_ctl refuse to run
//! as root, so as root they run as the `postgres` system user.
//!
//! A watchdog process stops a cluster at once and removes its directory when this process lets go
//! of the watchdog's stdin: on drop, but also when the cluster is never dropped (the static of
//! [`shared`]) or the test binary dies, which would otherwise leave a postgres running.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use url::Url;

const DEFAULT_BIN: &str = "/usr/lib/postgresql/15/bin";
/// Generous: the machine may be busy compiling while a cluster starts.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of the server's log a failure shows.
const LOG_TAIL_LINES: usize = 40;

/// A PostgreSQL server to create test databases on.
pub struct Cluster {
    /// The URL of its maintenance database, where databases are created.
    server: Url,
    /// For a cluster of [`Cluster::start_tls`]: the CA file that signed its certificate, and
    /// where databases are created instead of `server` (its Unix socket: TCP takes TLS only).
    tls: Option<(PathBuf, String)>,
    /// `None` for the server of `VODUP_TEST_POSTGRES`, which someone else started and stops:
    /// this process may create databases on it, but not stop it.
    own: Option<Own>,
}

/// A cluster this process initialised and runs.
struct Own {
    bin: PathBuf,
    /// The temporary directory: `data/`, `log`, and the Unix socket.
    dir: PathBuf,
    /// Whether the binaries run as the `postgres` system user, because this process is root.
    as_postgres: bool,
    watchdog: Child,
}

/// The server of the whole test binary, started on first use; `None` where there is no
/// PostgreSQL (see [`Cluster::start`]). Tests that stop the server start a [`Cluster`] of their
/// own instead, since this one may be CI's, and stopping it would fail every other test.
pub fn shared() -> Option<&'static Cluster> {
    static SHARED: OnceLock<Option<Cluster>> = OnceLock::new();
    SHARED
        .get_or_init(|| match std::env::var("VODUP_TEST_POSTGRES") {
            Ok(server) => Some(Cluster {
                server: Url::parse(&server)
                    .unwrap_or_else(|e| panic!("VODUP_TEST_POSTGRES={server:?} is no URL: {e}")),
                tls: None,
                own: None,
            }),
            Err(_) => Cluster::start(),
        })
        .as_ref()
}

impl Cluster {
    /// Initialise and start a cluster of this test's own, ready for connections when this
    /// returns. `None`, after a loud message, where the binaries are missing and
    /// `VODUP_REQUIRE_POSTGRES=1` is not set; with it, a panic.
    pub fn start() -> Option<Cluster> {
        Cluster::start_with(false)
    }

    /// [`Cluster::start`], serving TCP over TLS only (`hostssl`; plain TCP is rejected), with a
    /// certificate for `localhost` and 127.0.0.1 signed by a CA of its own ([`Cluster::ca_file`]).
    pub fn start_tls() -> Option<Cluster> {
        Cluster::start_with(true)
    }

    /// The client certificate and key of a [`Cluster::start_tls`] cluster, for the role
    /// `vodup_cert`, whom the server admits by certificate only (create it with [`Cluster::admin`]).
    pub fn client_cert(&self) -> (PathBuf, PathBuf) {
        let dir = self.ca_file().parent().expect("the cluster's directory");
        (dir.join("client.crt"), dir.join("client.key"))
    }

    /// The CA file of a [`Cluster::start_tls`] cluster.
    pub fn ca_file(&self) -> &Path {
        &self.tls.as_ref().expect("a TLS cluster").0
    }

    fn start_with(tls: bool) -> Option<Cluster> {
        let bin =
            std::env::var_os("VODUP_PG_BIN").map_or_else(|| DEFAULT_BIN.into(), PathBuf::from);
        if !bin.join("initdb").is_file() {
            let missing = format!(
                "no PostgreSQL binaries at {} (no initdb): the fleet tests did not run",
                bin.display()
            );
            assert!(
                std::env::var("VODUP_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "{missing}, and VODUP_REQUIRE_POSTGRES=1 requires them (apt-get install -y \
                 postgresql-15)"
            );
            // Straight to stderr, not eprintln!, which the test harness captures and shows only
            // for failed tests: a passing run must still say that it tested nothing here.
            let _ = writeln!(
                std::io::stderr(),
                "!!! SKIPPED: {missing} !!! (apt-get install postgresql-15, or VODUP_PG_BIN=DIR; \
                 VODUP_REQUIRE_POSTGRES=1 makes this a failure, as in CI)"
            );
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("vodup-pg-")
            .tempdir()
            .expect("temporary directory")
            // Removed by the watchdog, which also runs when this process dies without dropping.
            .keep();
        // The directory is ours, so its owner is who we are.
        let as_postgres = dir.metadata().expect("temporary directory").uid() == 0;
        let own = Own {
            watchdog: watchdog(&bin, &dir, as_postgres),
            bin,
            dir,
            as_postgres,
        };
        if as_postgres {
            // postgres creates data/ and the log in it; the system temp dir above lets it through.
            let mut chown = Command::new("chown");
            chown.arg("postgres:").arg(&own.dir);
            own.run(
                chown,
                "chown the cluster's directory to the postgres system user (initdb refuses root; \
                 apt-get install postgresql-15 creates that user)",
            );
        }
        let mut initdb = own.command("initdb");
        initdb
            .arg("--pgdata")
            .arg(own.data())
            .args(["--auth=trust", "--username=postgres", "--encoding=UTF8"])
            .args(["--locale=C", "--no-sync"]);
        own.run(initdb, "initdb");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        // After initdb, so that a restart keeps them. Durability is off: the cluster is thrown
        // away, and the tests run on a busy machine.
        let settings = format!(
            "\n# vodup's test cluster (tests/it/helpers/postgres.rs)\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{dir}'\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             # Tests run in parallel, each with several processes' connection pools.\n\
             max_connections = 200\n",
            dir = own.dir.display()
        );
        OpenOptions::new()
            .append(true)
            .open(own.data().join("postgresql.conf"))
            .and_then(|mut conf| conf.write_all(settings.as_bytes()))
            .expect("postgresql.conf takes the test settings");
        let tls = tls.then(|| {
            let ca = own.make_certificates();
            let admin = format!(
                "host={} port={port} user=postgres dbname=postgres",
                own.dir.display()
            );
            (ca, admin)
        });
        let cluster = Cluster {
            server: Url::parse(&format!("postgres://postgres@127.0.0.1:{port}/postgres"))
                .expect("server URL"),
            tls,
            own: Some(own),
        };
        cluster.start_again();
        Some(cluster)
    }

    /// `postgres://postgres@HOST:PORT/{db}`.
    pub fn url(&self, db: &str) -> String {
        let mut url = self.server.clone();
        url.set_path(db);
        url.into()
    }

    /// Create a database of a fresh name; its URL. Over tokio-postgres rather than `createdb`,
    /// so that CI's server needs no binaries here. Blocking: it runs on a thread and runtime of
    /// its own, so it may be called from async tests and from plain ones alike.
    pub fn create_database(&self) -> String {
        let name = format!("vodup_{:016x}", rand::random::<u64>());
        self.admin(&format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// Run `sql` as the superuser. Blocking, like [`Cluster::create_database`].
    pub fn admin(&self, sql: &str) {
        let server = match &self.tls {
            Some((_, admin)) => admin.as_str(),
            None => self.server.as_str(),
        };
        let create = async {
            let (client, connection) = tokio_postgres::connect(server, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("connecting to {server}: {e}"));
            tokio::spawn(connection);
            client
                .batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql} on {server}: {e}"));
        };
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime")
                        .block_on(create)
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
    }

    /// Shut the server down (fast: connections are closed, then it stops), keeping its data.
    pub fn stop(&self) {
        let own = self.own("stop");
        let mut stop = own.command("pg_ctl");
        stop.arg("stop")
            .arg("--pgdata")
            .arg(own.data())
            .args(["--mode=fast", "--wait"]);
        own.run(stop, "pg_ctl stop");
    }

    /// Start the server on its data and port after [`Cluster::stop`]; ready for connections
    /// when this returns.
    pub fn start_again(&self) {
        let own = self.own("start_again");
        let mut start = own.command("pg_ctl");
        start
            .arg("start")
            .arg("--pgdata")
            .arg(own.data())
            .arg("--log")
            .arg(own.log())
            .arg("--wait")
            .arg(format!("--timeout={}", READY_TIMEOUT.as_secs()));
        own.run(start, "pg_ctl start");
        // pg_ctl waits for the server's own word; this is the address the tests connect to.
        let (host, port) = (
            self.server.host_str().expect("a host"),
            self.server.port().expect("a port"),
        );
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let mut ready = own.command("pg_isready");
            ready.args(["--host", host, "--port", &port.to_string(), "--timeout=1"]);
            if ready.output().expect("pg_isready runs").status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL on {host}:{port} not ready after {READY_TIMEOUT:?}; {}",
                own.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn own(&self, what: &str) -> &Own {
        self.own.as_ref().unwrap_or_else(|| {
            panic!(
                "{what}: the server of VODUP_TEST_POSTGRES is not this process's to stop or \
                 start; a test that restarts PostgreSQL starts its own with Cluster::start()"
            )
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(own) = &mut self.own {
            // EOF on its stdin: the watchdog stops the server and removes the directory.
            drop(own.watchdog.stdin.take());
            let _ = own.watchdog.wait();
        }
    }
}

impl Own {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A CA and a server certificate for `localhost` and 127.0.0.1 (openssl), the server set to
    /// TLS on TCP only (plain TCP rejected; the Unix socket trusted, for creating databases).
    /// Returns the CA's file.
    fn make_certificates(&self) -> PathBuf {
        let openssl = |args: &[&str], what: &str| {
            let mut command = Command::new("openssl");
            command.current_dir(&self.dir).args(args);
            self.run(command, what);
        };
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=vodup test CA",
            ],
            "openssl: the CA",
        );
        openssl(
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
            "openssl: the server's request",
        );
        std::fs::write(
            self.dir.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .expect("server.ext");
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
            "openssl: the server's certificate",
        );
        // A client certificate for the role `vodup_cert`, which may log in by certificate only.
        openssl(
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "client.key",
                "-out",
                "client.csr",
                "-subj",
                "/CN=vodup_cert",
            ],
            "openssl: the client's request",
        );
        std::fs::write(
            self.dir.join("client.ext"),
            "basicConstraints=CA:FALSE
keyUsage=digitalSignature
extendedKeyUsage=clientAuth
",
        )
        .expect("client.ext");
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                "client.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "client.crt",
                "-days",
                "2",
                "-extfile",
                "client.ext",
            ],
            "openssl: the client's certificate",
        );
        if self.as_postgres {
            let mut chown = Command::new("chown");
            chown
                .arg("postgres:")
                .arg(self.dir.join("server.key"))
                .arg(self.dir.join("server.crt"));
            self.run(chown, "chown the server's key to postgres");
        }
        let settings = format!(
            "ssl = on\nssl_cert_file = '{0}/server.crt'\nssl_key_file = '{0}/server.key'\n\
             ssl_ca_file = '{0}/ca.crt'\n",
            self.dir.display()
        );
        OpenOptions::new()
            .append(true)
            .open(self.data().join("postgresql.conf"))
            .and_then(|mut conf| conf.write_all(settings.as_bytes()))
            .expect("postgresql.conf takes the TLS settings");
        std::fs::write(
            self.data().join("pg_hba.conf"),
            "local all all trust\nhostssl all vodup_cert 127.0.0.1/32 cert\n\
             hostssl all all 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 reject\n",
        )
        .expect("pg_hba.conf");
        self.dir.join("ca.crt")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// One of the binaries, as the postgres system user where we are root. It runs in the
    /// cluster's directory, since that user may not be able to enter the test's.
    fn command(&self, tool: &str) -> Command {
        let mut command = pg_command(&self.bin, tool, self.as_postgres);
        command.current_dir(&self.dir).stdin(Stdio::null());
        command
    }

    /// Run `command`; panic naming `what`, with its output and the server's log, if it fails.
    fn run(&self, mut command: Command, what: &str) {
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("{what}: {command:?} does not run: {e}"));
        assert!(
            output.status.success(),
            "{what}: {command:?} failed ({}):\n{}{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log_tail()
        );
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        match std::fs::read_to_string(&log) {
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
                format!("the end of {}:\n{}", log.display(), tail.join("\n"))
            }
            Err(e) => format!("no server log at {}: {e}", log.display()),
        }
    }
}

fn pg_command(bin: &Path, tool: &str, as_postgres: bool) -> Command {
    if as_postgres {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        command
    } else {
        Command::new(bin.join(tool))
    }
}

/// A process that waits for EOF on its stdin, then stops the cluster in `dir` at once (if it
/// runs) and removes `dir`. In a session of its own, so that a Ctrl-C to the tests does not end
/// it before it has cleaned up.
fn watchdog(bin: &Path, dir: &Path, as_postgres: bool) -> Child {
    let stop = pg_command(bin, "pg_ctl", as_postgres);
    Command::new("setsid")
        .args(["--wait", "sh", "-c"])
        .arg(r#"read -r _; "$@" >/dev/null 2>&1; rm -rf -- "$0""#)
        .arg(dir)
        .arg(stop.get_program())
        .args(stop.get_args())
        .args(["stop", "--mode=immediate", "--pgdata"])
        .arg(dir.join("data"))
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the cluster's watchdog (setsid, sh) starts")
}
