//! One real memcached process on a loopback address: started on a free port, ready once it
//! answers `version`, stopped when dropped.

use std::ffi::OsString;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::signal::{send_signal, thread_states, Signal};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout, Instant};

/// How long a new process has to answer `version` before its start fails.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// How many free ports [`MemcachedProcess::start`] tries before giving up.
const PORT_ATTEMPTS: usize = 5;
/// How long [`MemcachedProcess::start_on`] keeps retrying a port that is still in use.
const REBIND_PATIENCE: Duration = Duration::from_secs(3);
/// How long freeze and thaw wait for every thread to change state.
const STOP_WAIT: Duration = Duration::from_secs(2);
/// Most stderr bytes kept for an error message.
const STDERR_KEEP: usize = 4096;

/// How memcached is run. Every process is also given `-u nobody -U 0 -c 4096` and its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemcachedOptions {
    /// The memcached binary. Defaults to `$MEMCACHED_BIN` when set, else `memcached` on `PATH`.
    pub binary: PathBuf,
    /// Cache memory in MiB (`-m`). Defaults to 64.
    pub memory_mb: u32,
    /// Largest item size (`-I`), e.g. `"2m"`. Defaults to memcached's own (1 MiB).
    pub max_item_size: Option<String>,
    /// Worker threads (`-t`). Defaults to 1.
    pub threads: u32,
    /// A program and its arguments that run the binary, e.g. `["ip", "netns", "exec", "ns1"]`
    /// to start memcached inside the network namespace `ns1`. It must exec the binary in place
    /// (as `ip netns exec`, `nice` or `taskset` do), so that the process id, the signals of
    /// [`MemcachedProcess::freeze`] and [`MemcachedProcess::kill`] and the readiness check
    /// (which compares memcached's own pid) are memcached's. Defaults to empty: the binary is
    /// run directly.
    pub command_prefix: Vec<OsString>,
    /// TLS (`-Z`), with the feature `tls`. Defaults to `None`: plaintext.
    #[cfg(feature = "tls")]
    pub tls: Option<MemcachedTls>,
}

/// TLS of a memcached process (feature `tls`): `-Z -o ssl_chain_cert=...,ssl_key=...`, plus
/// `ssl_verify_mode=2,ssl_ca_cert=...` when a client certificate is required.
/// memcached runs as `nobody`: the files must be readable by that user, and must exist as long
/// as processes may start. [`LocalClusterBuilder::tls`](super::LocalClusterBuilder::tls)
/// takes care of both.
#[cfg(feature = "tls")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemcachedTls {
    /// The certificate chain (PEM): the server certificate first.
    pub chain_file: PathBuf,
    /// The private key (PEM).
    pub key_file: PathBuf,
    /// When set, clients must present a certificate issued by a CA of this PEM file.
    pub client_ca_file: Option<PathBuf>,
    /// The certificate chain and key (PEM) the kit's readiness probe presents when a client
    /// certificate is required.
    pub probe_identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl Default for MemcachedOptions {
    fn default() -> Self {
        MemcachedOptions {
            binary: std::env::var_os("MEMCACHED_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("memcached")),
            memory_mb: 64,
            max_item_size: None,
            threads: 1,
            command_prefix: Vec::new(),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

/// A running (or killed, or frozen) memcached process bound to one `ip:port`.
///
/// Dropping it kills the process (SIGKILL, also when it is frozen) and reaps it, so no process
/// outlives its owner, even when a test panics.
#[derive(Debug)]
pub struct MemcachedProcess {
    addr: SocketAddr,
    options: MemcachedOptions,
    child: Option<Child>,
}

impl MemcachedProcess {
    /// Starts memcached on `ip` and a port the OS reports free, and waits until it answers
    /// `version` (at most about 5 s). If another process grabs the port first, another port is
    /// tried.
    ///
    /// A missing binary gives an error of kind `NotFound` saying how to install it.
    pub async fn start(ip: IpAddr, options: &MemcachedOptions) -> io::Result<MemcachedProcess> {
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port(ip)?;
            match launch(SocketAddr::new(ip, port), options).await {
                Ok(child) => {
                    return Ok(MemcachedProcess {
                        addr: SocketAddr::new(ip, port),
                        options: options.clone(),
                        child: Some(child),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free port found")))
    }

    /// Starts memcached on exactly `addr` and waits until it answers `version`. While the port is
    /// still held by someone else, retries for a few seconds, then fails with `AddrInUse`.
    pub async fn start_on(
        addr: SocketAddr,
        options: &MemcachedOptions,
    ) -> io::Result<MemcachedProcess> {
        let child = launch_patiently(addr, options).await?;
        Ok(MemcachedProcess {
            addr,
            options: options.clone(),
            child: Some(child),
        })
    }

    /// Starts memcached on exactly `addr`, once: a port in use fails at once with `AddrInUse`.
    pub(crate) async fn start_once(
        addr: SocketAddr,
        options: &MemcachedOptions,
    ) -> io::Result<MemcachedProcess> {
        let child = launch(addr, options).await?;
        Ok(MemcachedProcess {
            addr,
            options: options.clone(),
            child: Some(child),
        })
    }

    /// The address the process listens on (and listens on again after [`restart`]).
    ///
    /// [`restart`]: MemcachedProcess::restart
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The options the process runs with.
    pub fn options(&self) -> &MemcachedOptions {
        &self.options
    }

    /// The process id, or `None` after [`kill`](MemcachedProcess::kill).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process exists and has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the process with SIGKILL and reaps it. Does nothing if it is already gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // An error means the child already exited; `wait` reaps it either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Suspends the process (SIGSTOP): its sockets stay open but nothing is answered.
    ///
    /// A stop signal takes effect only when one of the process's threads next runs, so this
    /// returns once every thread is seen stopped (at most about 2 s). Does nothing after
    /// [`kill`](MemcachedProcess::kill).
    ///
    /// The signal is sent by this process itself (`kill(2)`), no program is run. When the OS
    /// refuses it, the error has the kind of the OS error (`PermissionDenied` for `EPERM`), says
    /// which signal and pid, and has the OS error as its
    /// [`source`](std::error::Error::source) ([`io::Error::raw_os_error`] gives the errno). A
    /// process whose threads are not all stopped within the wait gives `TimedOut`. Not on
    /// Windows: `Unsupported`.
    pub fn freeze(&self) -> io::Result<()> {
        self.signal(Signal::Stop)?;
        self.await_stopped(true)
    }

    /// Resumes a frozen process (SIGCONT), and returns once no thread is stopped any more.
    /// Errors as for [`freeze`](MemcachedProcess::freeze).
    pub fn thaw(&self) -> io::Result<()> {
        self.signal(Signal::Continue)?;
        self.await_stopped(false)
    }

    /// Polls `/proc/<pid>/task/*/stat` until every thread is stopped (`T`), or none is.
    fn await_stopped(&self, stopped: bool) -> io::Result<()> {
        let Some(pid) = self.pid() else {
            return Ok(());
        };
        let deadline = std::time::Instant::now() + STOP_WAIT;
        loop {
            let Some(states) = thread_states(pid) else {
                return Ok(()); // no procfs: nothing to wait for
            };
            if states.iter().all(|&state| (state == 'T') == stopped) {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "memcached {pid} threads are in states {states:?}, not stopped={stopped}"
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Kills the process if it still runs, then starts a new one on the same `ip:port` and waits
    /// until it answers. The new process starts empty.
    pub async fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.child = Some(launch_patiently(self.addr, &self.options).await?);
        Ok(())
    }

    fn signal(&self, signal: Signal) -> io::Result<()> {
        match self.pid() {
            Some(pid) => send_signal(pid, signal),
            None => Ok(()),
        }
    }
}

impl Drop for MemcachedProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port that is free on `ip` right now: bind port 0, read what the OS chose, release it.
fn free_port(ip: IpAddr) -> io::Result<u16> {
    let listener = StdListener::bind((ip, 0)).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot bind a port on {ip} ({e}); the test kit needs loopback 127.0.0.0/8"),
        )
    })?;
    Ok(listener.local_addr()?.port())
}

async fn launch_patiently(addr: SocketAddr, options: &MemcachedOptions) -> io::Result<Child> {
    let deadline = Instant::now() + REBIND_PATIENCE;
    loop {
        match launch(addr, options).await {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// Spawns memcached on `addr` and waits until it, and not some other process, answers there.
async fn launch(addr: SocketAddr, options: &MemcachedOptions) -> io::Result<Child> {
    let mut command = match options.command_prefix.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(&options.binary);
            command
        }
        None => Command::new(&options.binary),
    };
    command
        .args(["-u", "nobody", "-U", "0", "-c", "4096"])
        .arg("-l")
        .arg(addr.ip().to_string())
        .arg("-p")
        .arg(addr.port().to_string())
        .arg("-m")
        .arg(options.memory_mb.to_string())
        .arg("-t")
        .arg(options.threads.to_string());
    if let Some(size) = &options.max_item_size {
        command.arg("-I").arg(size);
    }
    #[cfg(feature = "tls")]
    if let Some(tls) = &options.tls {
        let mut settings = format!(
            "ssl_chain_cert={},ssl_key={}",
            tls.chain_file.display(),
            tls.key_file.display()
        );
        if let Some(ca) = &tls.client_ca_file {
            settings.push_str(&format!(",ssl_verify_mode=2,ssl_ca_cert={}", ca.display()));
        }
        command.arg("-Z").arg("-o").arg(settings);
    }
    let prober = Prober::new(options)?;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|e| spawn_error(e, options))?;
    let stderr = drain_stderr(&mut child);
    match wait_ready(&mut child, addr, &stderr, &prober).await {
        Ok(()) => Ok(child),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

fn spawn_error(e: io::Error, options: &MemcachedOptions) -> io::Error {
    if let Some(program) = options.command_prefix.first() {
        return io::Error::new(
            e.kind(),
            format!(
                "cannot start `{}` (the command prefix of `{}`): {e}",
                program.to_string_lossy(),
                options.binary.display()
            ),
        );
    }
    if e.kind() == io::ErrorKind::NotFound {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "memcached binary `{}` not found: install memcached (e.g. `apt-get install \
                 memcached`, `brew install memcached`) or point MEMCACHED_BIN at it",
                options.binary.display()
            ),
        )
    } else {
        io::Error::new(
            e.kind(),
            format!("cannot start `{}`: {e}", options.binary.display()),
        )
    }
}

/// Reads the child's stderr on a thread (so the pipe never fills), keeping the first bytes.
fn drain_stderr(child: &mut Child) -> Arc<Mutex<Vec<u8>>> {
    let kept = Arc::new(Mutex::new(Vec::new()));
    if let Some(mut pipe) = child.stderr.take() {
        let sink = Arc::clone(&kept);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 1024];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let mut kept = sink.lock().unwrap_or_else(|p| p.into_inner());
                let room = STDERR_KEEP.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
        });
    }
    kept
}

async fn wait_ready(
    child: &mut Child,
    addr: SocketAddr,
    stderr: &Mutex<Vec<u8>>,
    prober: &Prober,
) -> io::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let pid = child.id();
    loop {
        if let Some(status) = child.try_wait()? {
            // Give the stderr thread a moment to collect the last words.
            sleep(Duration::from_millis(20)).await;
            let text = String::from_utf8_lossy(&stderr.lock().unwrap_or_else(|p| p.into_inner()))
                .trim()
                .to_owned();
            let kind = if text.contains("Address already in use") {
                io::ErrorKind::AddrInUse
            } else {
                io::ErrorKind::Other
            };
            return Err(io::Error::new(
                kind,
                format!("memcached on {addr} exited at start ({status}): {text}"),
            ));
        }
        match prober.probe(addr).await {
            Ok(Some(answering)) if answering == pid => return Ok(()),
            Ok(Some(other)) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{addr} is served by another memcached (pid {other})"),
                ))
            }
            Ok(None) | Err(_) => {}
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("memcached on {addr} did not answer `version` within {READY_TIMEOUT:?}"),
            ));
        }
        sleep(Duration::from_millis(15)).await;
    }
}

/// Asks new processes who they are, in plaintext or over TLS as they are run.
struct Prober {
    #[cfg(feature = "tls")]
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Prober {
    fn new(options: &MemcachedOptions) -> io::Result<Prober> {
        let _ = options;
        Ok(Prober {
            #[cfg(feature = "tls")]
            tls: match &options.tls {
                Some(tls) => Some(super::tls::probe_connector(tls)?),
                None => None,
            },
        })
    }

    /// Asks `addr` for `version` and its pid. `Ok(None)`: something answered, but not
    /// memcached.
    async fn probe(&self, addr: SocketAddr) -> io::Result<Option<u32>> {
        let exchange = async {
            let stream = TcpStream::connect(addr).await?;
            #[cfg(feature = "tls")]
            if let Some(tls) = &self.tls {
                let name = rustls::pki_types::ServerName::from(addr.ip());
                return identify(tls.connect(name, stream).await?).await;
            }
            identify(stream).await
        };
        let reply = timeout(Duration::from_millis(500), exchange)
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        Ok(pid_of(&reply))
    }
}

/// Sends `version` and `stats` and reads both replies.
async fn identify<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> io::Result<Vec<u8>> {
    stream.write_all(b"version\r\nstats\r\n").await?;
    stream.flush().await?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    while !reply.ends_with(b"END\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        reply.extend_from_slice(&chunk[..n]);
    }
    Ok(reply)
}

/// The pid in a `version` + `stats` reply, or `None` when it is not memcached's.
fn pid_of(reply: &[u8]) -> Option<u32> {
    if !reply.starts_with(b"VERSION ") {
        return None;
    }
    let text = String::from_utf8_lossy(reply);
    text.lines()
        .find_map(|line| line.strip_prefix("STAT pid "))
        .and_then(|pid| pid.trim().parse().ok())
}
