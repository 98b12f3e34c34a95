//! The Tansu broker as a real child process.
//!
//! Tansu 0.6.0 (`--features libsql`) with `--storage-engine sqlite://tansu.db`, run from a temp
//! data directory because that path is relative to the working directory. SQLite runs WAL with
//! `synchronous=normal`, which survives kill -9 of the broker. Tansu does not create topics on
//! first use, and its metadata always lists one broker (node 111) leading every partition.
//!
//! ## Tansu's epoch-bump wedge, and the workaround
//! When an idempotent producer's message times out, librdkafka drains the partition and then
//! bumps the producer epoch *locally* (`rd_kafka_idemp_drain_done`: "the idempotent producer can
//! bump its own epoch"). Tansu 0.6.0 has no row for that epoch: `producer_select_for_update` in
//! `idempotent_message_check` finds none, `query_one` panics ("more or less than one row",
//! `lite.rs:503`), the storage task dies, and every later request fails (`UnableToSend`) until
//! the process restarts. Real Kafka accepts the bump.
//!
//! Workaround: never send through an idempotent producer after one of its messages timed out;
//! purge it and create a new producer (a new producer id). If the broker wedged anyway,
//! [`TansuBroker::wedged`] says so and [`TansuBroker::restart`] clears it; a producer that bumped
//! its epoch must not be reused across the restart, or it wedges the broker again.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

use crate::{FaultProxy, HarnessError, free_port};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const WEDGE_MARKER: &str = "more or less than one row";
const START_MARKER: &str = "=== spillway harness: broker start ===";

/// Where the cached `tansu` binary is: `$SPILLWAY_TANSU_BIN`, else
/// `${SPILLWAY_TOOLS:-$HOME/.cache/spillway/tools}/tansu-0.6.0/bin/tansu`.
pub fn tansu_binary() -> Result<PathBuf, HarnessError> {
    let mut looked = Vec::new();
    if let Some(p) = std::env::var_os("SPILLWAY_TANSU_BIN") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        looked.push(p);
    }
    let tools = std::env::var_os("SPILLWAY_TOOLS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/spillway/tools"))
        });
    if let Some(tools) = tools {
        let p = tools.join("tansu-0.6.0/bin/tansu");
        if p.is_file() {
            return Ok(p);
        }
        looked.push(p);
    }
    Err(HarnessError::TansuMissing { looked })
}

/// A Tansu broker process with its own data directory and a fixed loopback port.
#[derive(Debug)]
pub struct TansuBroker {
    bin: PathBuf,
    data: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    paused: bool,
    proxy: Option<FaultProxy>,
}

impl TansuBroker {
    /// Starts a broker on a free 127.0.0.1 port and waits until it answers ApiVersions.
    pub fn start() -> Result<Self, HarnessError> {
        let bin = tansu_binary()?;
        let data = tempfile::Builder::new()
            .prefix("tansu-")
            .tempdir()
            .map_err(HarnessError::io("creating the tansu data directory"))?;
        let mut broker = Self {
            bin,
            data,
            port: free_port(),
            child: None,
            paused: false,
            proxy: None,
        };
        broker.spawn()?;
        Ok(broker)
    }

    /// Starts a broker behind a [`FaultProxy`]: the broker advertises the proxy's address, so
    /// every client connection (bootstrap and after metadata) goes through the proxy.
    pub fn start_proxied() -> Result<Self, HarnessError> {
        let bin = tansu_binary()?;
        let data = tempfile::Builder::new()
            .prefix("tansu-")
            .tempdir()
            .map_err(HarnessError::io("creating the tansu data directory"))?;
        let port = free_port();
        let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], port)))?;
        let mut broker = Self {
            bin,
            data,
            port,
            child: None,
            paused: false,
            proxy: Some(proxy),
        };
        broker.spawn()?;
        Ok(broker)
    }

    /// The fault proxy in front of the broker, when started with [`Self::start_proxied`].
    pub fn proxy(&self) -> Option<&FaultProxy> {
        self.proxy.as_ref()
    }

    /// `bootstrap.servers` for clients: the advertised address (the proxy's, when proxied).
    pub fn bootstrap(&self) -> String {
        self.advertised().to_string()
    }

    /// `bootstrap.servers` that bypasses the proxy (for the harness's own admin calls and
    /// verification reads; after metadata a client still follows the advertised address).
    pub fn direct_bootstrap(&self) -> String {
        self.addr().to_string()
    }

    fn advertised(&self) -> SocketAddr {
        self.proxy
            .as_ref()
            .map_or_else(|| self.addr(), FaultProxy::addr)
    }

    /// The broker's listening address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The data directory (holds `tansu.db` and `tansu.log`).
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// The broker's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Creates topics (name, partitions) with replication factor 1, through the admin API.
    /// A topic that already exists is not an error.
    pub fn create_topics(&self, topics: &[(&str, i32)]) -> Result<(), HarnessError> {
        create_topics(&self.bootstrap(), topics)
    }

    /// Kills the broker with SIGKILL (no shutdown of any kind) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// Starts the broker again on the same port with the same data (after [`Self::kill9`], or
    /// kills it first if it still runs).
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.kill9();
        self.spawn()
    }

    /// SIGSTOP: the process keeps its sockets but answers nothing (a hung broker).
    pub fn pause(&mut self) -> Result<(), HarnessError> {
        self.signal(Signal::SIGSTOP)?;
        self.paused = true;
        Ok(())
    }

    /// SIGCONT after [`Self::pause`].
    pub fn resume(&mut self) -> Result<(), HarnessError> {
        self.signal(Signal::SIGCONT)?;
        self.paused = false;
        Ok(())
    }

    /// Whether the broker log shows Tansu's known `idempotent_message_check` panic (since its
    /// last start), after which every request fails until a restart.
    pub fn wedged(&self) -> bool {
        std::fs::read_to_string(self.log_path()).is_ok_and(|log| {
            log.rsplit(START_MARKER)
                .next()
                .is_some_and(|run| run.contains(WEDGE_MARKER))
        })
    }

    /// Whether the broker answers a metadata request of a fresh client that bypasses the proxy
    /// within `timeout`. Tansu 0.6.0 sometimes stops answering after a fault (it accepts
    /// connections, answers nothing, logs nothing) until it is restarted.
    pub fn answers(&self, timeout: Duration) -> bool {
        self.direct_metadata(timeout).is_ok()
    }

    /// How many brokers a fresh client that bypasses the proxy is told of, or why it was not
    /// answered within `timeout`.
    pub fn direct_metadata(&self, timeout: Duration) -> Result<usize, rdkafka::error::KafkaError> {
        let consumer = ClientConfig::new()
            .set("bootstrap.servers", self.direct_bootstrap())
            .create::<rdkafka::consumer::BaseConsumer>()?;
        let metadata = rdkafka::consumer::Consumer::fetch_metadata(&consumer, None, timeout)?;
        Ok(metadata.brokers().len())
    }

    /// Returns `Err(BrokerWedged)` if [`Self::wedged`]: lets a test report the broker's defect
    /// as such rather than as a failure of the code under test.
    pub fn check_not_wedged(&self) -> Result<(), HarnessError> {
        if self.wedged() {
            return Err(HarnessError::BrokerWedged {
                log_tail: self.log_tail(),
            });
        }
        Ok(())
    }

    /// The broker's combined stdout and stderr across all its runs.
    pub fn log_path(&self) -> PathBuf {
        self.data.path().join("tansu.log")
    }

    /// The last lines of the broker log, for error messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn signal(&self, signal: Signal) -> Result<(), HarnessError> {
        let pid = self.pid().ok_or_else(|| HarnessError::Io {
            during: format!("sending {signal} to tansu"),
            source: std::io::Error::other("broker is not running"),
        })?;
        kill(Pid::from_raw(pid as i32), signal)
            .map_err(|e| HarnessError::io(format!("sending {signal} to tansu"))(e.into()))
    }

    fn spawn(&mut self) -> Result<(), HarnessError> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(HarnessError::io("opening the tansu log"))?;
        writeln!(&log, "{START_MARKER}").map_err(HarnessError::io("writing the tansu log"))?;
        let listen = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://{}", self.advertised());
        let child = Command::new(&self.bin)
            .arg("broker")
            .args(["--storage-engine", "sqlite://tansu.db"])
            .args([
                "--listener-url",
                &listen,
                "--advertised-listener-url",
                &advertised,
            ])
            .current_dir(self.data.path())
            // Tansu reads its options from the environment too: start from a clean one.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(clone(&log)?)
            .stderr(log)
            // A process group of its own. When `pause` stops the broker in our group and that
            // group has no parent outside it (a command started in the background, or under
            // setsid), the kernel sends SIGHUP to the whole group as soon as any member exits:
            // it killed a chaos run, its gateway and its shell. Alone in its group, with us as
            // its parent, the stopped broker never makes anyone's group orphaned.
            .process_group(0)
            .spawn()
            .map_err(HarnessError::io(format!("spawning {}", self.bin.display())))?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(HarnessError::BrokerNotReady {
                        port: self.port,
                        secs: 0,
                        log_tail: format!("exited with {status}\n{}", self.log_tail()),
                    });
                }
            }
            if api_versions_ok(self.addr()) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log_tail = self.log_tail();
        self.kill9();
        Err(HarnessError::BrokerNotReady {
            port: self.port,
            secs: READY_TIMEOUT.as_secs(),
            log_tail,
        })
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        if self.paused {
            let _ = self.signal(Signal::SIGCONT);
        }
        self.kill9();
    }
}

fn clone(file: &File) -> Result<File, HarnessError> {
    file.try_clone()
        .map_err(HarnessError::io("duplicating the tansu log handle"))
}

/// Sends an ApiVersions v0 request and checks for a well-formed, error-free answer.
///
/// Request: i32 size | i16 api_key=18 | i16 version=0 | i32 correlation_id | i16 client_id len |
/// client_id. Response: i32 size | i32 correlation_id | i16 error_code | ...
pub(crate) fn api_versions_ok(addr: SocketAddr) -> bool {
    let probe = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let client_id = b"spillway-probe";
        let mut body = Vec::new();
        body.extend_from_slice(&18i16.to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&7i32.to_be_bytes());
        body.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
        body.extend_from_slice(client_id);
        let mut req = (body.len() as i32).to_be_bytes().to_vec();
        req.extend_from_slice(&body);
        s.write_all(&req)?;
        let mut head = [0u8; 10];
        s.read_exact(&mut head)?;
        let correlation = i32::from_be_bytes(head[4..8].try_into().expect("4 bytes"));
        let error = i16::from_be_bytes(head[8..10].try_into().expect("2 bytes"));
        Ok(correlation == 7 && error == 0)
    };
    probe().unwrap_or(false)
}

/// Creates topics with replication factor 1 through the admin API of the cluster at
/// `bootstrap`; an existing topic is not an error.
pub(crate) fn create_topics(bootstrap: &str, topics: &[(&str, i32)]) -> Result<(), HarnessError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(HarnessError::kafka("creating the admin client"))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = futures::executor::block_on(admin.create_topics(&new, &opts))
        .map_err(HarnessError::kafka("creating topics"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(HarnessError::Kafka {
                    during: format!("creating topic {topic}"),
                    source: rdkafka::error::KafkaError::AdminOp(code),
                });
            }
        }
    }
    Ok(())
}
