//! Auto-discovery: fetching the cluster configuration and deciding when to apply it.
//!
//! This module owns one fetch from a configuration endpoint (`config get cluster`, falling back to
//! the legacy key `AmazonElastiCache:cluster`), the apply rules ([`decide`]), and the background
//! poller, which holds only a weak reference to the client and ends when the client is dropped.
//! It also owns the staleness check that every request makes: timers do not run while a Lambda
//! environment is frozen, so a request that finds the last poll older than the interval wakes
//! the poller (one refresh at a time) without waiting for it. Building the next snapshot is
//! the cluster snapshot's job; swapping it in is the client's.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::config::ClusterConfig;
use crate::connection::ConnectionSettings;
use crate::error::{looks_like_tls, tls_required, Error, TLS_REQUIRED_HINT};
use crate::jitter::jitter;
use crate::protocol::{decode, ErrorReply, Limits, Request, Response};

/// What to do with a freshly fetched configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Newer version, or same version with another node set: build and swap a new snapshot.
    Apply,
    /// Same version, same nodes: nothing to do.
    Unchanged,
    /// Lower version than the current one (an eventually consistent endpoint lagging): ignore.
    Stale,
}

/// The apply rules: a higher version is applied; a lower one is ignored; an equal version is
/// applied only when the node set (hostname, IP, port; order aside) differs, because in-place
/// node replacement has been seen to change an IP without a version bump.
pub fn decide(current: &ClusterConfig, candidate: &ClusterConfig) -> Decision {
    use std::cmp::Ordering::*;
    match candidate.version.cmp(&current.version) {
        Greater => Decision::Apply,
        Less => Decision::Stale,
        Equal => {
            let mut a = current.nodes.clone();
            let mut b = candidate.nodes.clone();
            a.sort();
            b.sort();
            if a == b {
                Decision::Unchanged
            } else {
                Decision::Apply
            }
        }
    }
}

/// Splits `host:port` (`[v6]:port` for IPv6; port 11211 when absent).
pub(crate) fn split_host_port(address: &str) -> Result<(String, u16), Error> {
    let bad = || {
        Error::Config(format!(
            "{address:?} is not host:port (e.g. mycluster.abc123.cfg.use1.cache.amazonaws.com:11211)"
        ))
    };
    let address = address.trim();
    if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if after.is_empty() => 11211,
            None => return Err(bad()),
        };
        return Ok((host.to_string(), port));
    }
    let valid_host = |h: &str| {
        !h.is_empty()
            && h.len() <= 255
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    };
    match address.rsplit_once(':') {
        // A bare IPv6 address, without brackets or port.
        Some(_) if address.parse::<std::net::Ipv6Addr>().is_ok() => {
            Ok((address.to_string(), 11211))
        }
        Some((host, port)) if valid_host(host) => {
            let port: u16 = port.parse().map_err(|_| bad())?;
            if port == 0 {
                return Err(bad());
            }
            Ok((host.to_string(), port))
        }
        None if valid_host(address) => Ok((address.to_string(), 11211)),
        _ => Err(bad()),
    }
}

/// One discovery: resolve the endpoint (DNS is resolved anew each time), connect, ask
/// `config get cluster`, fall back to the legacy key, parse. Bounded by `timeout` as a whole.
/// Always plaintext; a client built with `ClientBuilder::tls` discovers over TLS.
pub async fn fetch(
    endpoint: &str,
    timeout: Duration,
    limits: &Limits,
) -> Result<ClusterConfig, Error> {
    bounded(endpoint, timeout, fetch_unbounded(endpoint, limits, None)).await
}

/// One discovery with a client's connection settings: over TLS when the client has it.
pub(crate) async fn fetch_with(
    endpoint: &str,
    timeout: Duration,
    settings: &ConnectionSettings,
) -> Result<ClusterConfig, Error> {
    let deadline = tokio::time::Instant::now() + timeout;
    let discovery = fetch_unbounded(endpoint, &settings.limits, Some((settings, deadline)));
    bounded(endpoint, timeout, discovery).await
}

async fn bounded(
    endpoint: &str,
    timeout: Duration,
    discovery: impl std::future::Future<Output = Result<ClusterConfig, Error>>,
) -> Result<ClusterConfig, Error> {
    match tokio::time::timeout(timeout, discovery).await {
        Ok(result) => result,
        Err(_) => Err(Error::Discovery {
            endpoint: endpoint.to_string(),
            reason: format!("no complete answer within {timeout:?}"),
        }),
    }
}

async fn fetch_unbounded(
    endpoint: &str,
    limits: &Limits,
    settings: Option<(&ConnectionSettings, tokio::time::Instant)>,
) -> Result<ClusterConfig, Error> {
    let failed = |reason: String| Error::Discovery {
        endpoint: endpoint.to_string(),
        reason,
    };
    let (host, port) = split_host_port(endpoint)?;
    let mut stream = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| failed(format!("connect: {e}")))?;
    stream.set_nodelay(true).ok();
    #[cfg(feature = "tls")]
    if let Some((tls, deadline)) = settings.and_then(|(s, d)| s.tls.as_deref().map(|t| (t, d))) {
        let peer = crate::tls::Peer::Endpoint(endpoint);
        let mut stream = tls.handshake(stream, &host, peer, deadline).await?;
        return query(&mut stream, endpoint, limits, false).await;
    }
    let _ = settings;
    query(&mut stream, endpoint, limits, true).await
}

/// The discovery commands over an open connection.
async fn query<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    endpoint: &str,
    limits: &Limits,
    plaintext: bool,
) -> Result<ClusterConfig, Error> {
    let failed = |reason: String| Error::Discovery {
        endpoint: endpoint.to_string(),
        reason,
    };
    let mut rbuf = BytesMut::with_capacity(4096);
    let first = exchange(stream, &mut rbuf, Request::ConfigGetCluster, limits)
        .await
        .map_err(|e| e.into_error(endpoint, plaintext, true))?;
    let unknown_command = match first {
        Response::Config(Some(block)) => return parse_block(&block, endpoint),
        Response::Config(None) => false,
        Response::Error(ErrorReply::Error) => true,
        Response::Error(e) => return Err(failed(format!("`config get cluster` answered {e}"))),
        other => return Err(failed(format!("unexpected answer {other:?}"))),
    };
    let legacy = exchange(stream, &mut rbuf, Request::LegacyConfigGet, limits)
        .await
        .map_err(|e| e.into_error(endpoint, plaintext, false))?;
    match legacy {
        Response::Values(items) if !items.is_empty() => parse_block(&items[0].value, endpoint),
        Response::Values(_) | Response::Error(ErrorReply::Error) if unknown_command => {
            Err(Error::DiscoveryUnsupported {
                endpoint: endpoint.to_string(),
            })
        }
        Response::Values(_) => Err(failed(
            "the endpoint has no cluster configuration stored (empty `config get cluster` and no legacy key)"
                .into(),
        )),
        Response::Error(e) => Err(failed(format!("legacy `get AmazonElastiCache:cluster` answered {e}"))),
        other => Err(failed(format!("unexpected answer {other:?}"))),
    }
}

fn parse_block(block: &[u8], endpoint: &str) -> Result<ClusterConfig, Error> {
    ClusterConfig::parse(block).map_err(|e| Error::Discovery {
        endpoint: endpoint.to_string(),
        reason: e.to_string(),
    })
}

/// Why one exchange with the endpoint failed.
enum ExchangeError {
    /// Described, with the bytes read so far (which may be a TLS record).
    Failed(String, Vec<u8>),
    /// A read or write failed; nothing at all had been read when `empty`.
    Io(std::io::Error, &'static str, bool),
}

impl ExchangeError {
    /// The error to report. `plaintext` connections that the endpoint answered with a TLS
    /// record, or dropped before any byte on the first command (`first`), may need TLS.
    fn into_error(self, endpoint: &str, plaintext: bool, first: bool) -> Error {
        let failed = |reason: String| Error::Discovery {
            endpoint: endpoint.to_string(),
            reason,
        };
        match self {
            ExchangeError::Failed(_, bytes) if plaintext && looks_like_tls(&bytes) => {
                tls_required(endpoint, "configuration endpoint")
            }
            ExchangeError::Failed(reason, bytes) if plaintext && first && bytes.is_empty() => {
                failed(format!("{reason}; {TLS_REQUIRED_HINT}"))
            }
            ExchangeError::Failed(reason, _) => failed(reason),
            ExchangeError::Io(e, what, empty) => {
                #[cfg(feature = "tls")]
                if let Some(error) =
                    crate::tls::rustls_failure(&e, crate::tls::Peer::Endpoint(endpoint), false, "")
                {
                    return error;
                }
                if plaintext && first && empty {
                    failed(format!("{what}: {e}; {TLS_REQUIRED_HINT}"))
                } else {
                    failed(format!("{what}: {e}"))
                }
            }
        }
    }
}

/// Sends one request and reads its reply.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    request: Request<'_>,
    limits: &Limits,
) -> Result<Response, ExchangeError> {
    let mut out = BytesMut::new();
    let expect = request
        .encode(&mut out, limits)
        .map_err(|e| ExchangeError::Failed(e.to_string(), Vec::new()))?;
    stream
        .write_all(&out)
        .await
        .map_err(|e| ExchangeError::Io(e, "send", rbuf.is_empty()))?;
    stream
        .flush()
        .await
        .map_err(|e| ExchangeError::Io(e, "send", rbuf.is_empty()))?;
    loop {
        match decode(rbuf, expect, limits) {
            Ok(Some((response, _))) => return Ok(response),
            Ok(None) => {}
            Err(e) => return Err(ExchangeError::Failed(e.to_string(), rbuf.to_vec())),
        }
        let n = stream
            .read_buf(rbuf)
            .await
            .map_err(|e| ExchangeError::Io(e, "read", rbuf.is_empty()))?;
        if n == 0 {
            let reason = if rbuf.is_empty() {
                "connection closed without an answer".into()
            } else {
                format!(
                    "connection closed mid-answer after {} bytes (truncated reply)",
                    rbuf.len()
                )
            };
            return Err(ExchangeError::Failed(reason, rbuf.to_vec()));
        }
    }
}

/// Poll timing shared by the poller and the request path.
pub(crate) struct PollState {
    pub interval: Duration,
    started: Instant,
    /// Milliseconds since `started` of the last poll attempt.
    last_attempt_ms: AtomicU64,
    /// Milliseconds since `started` of the last warning logged (rate limit).
    last_warn_ms: AtomicU64,
    refresh_requested: AtomicBool,
    wake: Notify,
    pub lock: tokio::sync::Mutex<()>,
}

impl PollState {
    pub fn new(interval: Duration) -> PollState {
        PollState {
            interval,
            started: Instant::now(),
            last_attempt_ms: AtomicU64::new(0),
            last_warn_ms: AtomicU64::new(0),
            refresh_requested: AtomicBool::new(false),
            wake: Notify::new(),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Records a poll attempt.
    pub fn attempted(&self) {
        self.last_attempt_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// The request-path check: when the last attempt is older than the interval (timers did not
    /// run, e.g. a thawed Lambda), wake the poller once. Never waits.
    #[inline]
    pub fn check_stale(&self) {
        let age = self
            .now_ms()
            .saturating_sub(self.last_attempt_ms.load(Ordering::Relaxed));
        if age > self.interval.as_millis() as u64
            && !self.refresh_requested.swap(true, Ordering::AcqRel)
        {
            tracing::debug!(age_ms = age, "memcached.discovery.stale");
            self.wake.notify_one();
        }
    }

    /// Wakes the poller (also used when the client is dropped, so it can end).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Whether a warning may be logged now (at most one per interval).
    pub fn may_warn(&self) -> bool {
        let now = self.now_ms();
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        let first = last == 0;
        if first || now.saturating_sub(last) >= self.interval.as_millis() as u64 {
            self.last_warn_ms.store(now.max(1), Ordering::Relaxed);
            true
        } else {
            false
        }
    }
}

/// Something the poller can refresh: the client's shared state.
pub(crate) trait Refresh: Send + Sync + 'static {
    fn refresh(self: Arc<Self>) -> impl std::future::Future<Output = Result<bool, Error>> + Send;
}

/// Spawns the poller: every interval (±10 % jitter) or when woken, refresh. It holds only a weak
/// reference between polls and ends as soon as the client is gone.
pub(crate) fn spawn_poller<T: Refresh>(target: Weak<T>, poll: Arc<PollState>) {
    tokio::spawn(async move {
        loop {
            let delay = jitter(poll.interval, 0.1);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = poll.wake.notified() => {}
            }
            let Some(inner) = target.upgrade() else {
                return;
            };
            poll.refresh_requested.store(false, Ordering::Release);
            let _ = inner.refresh().await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Node;

    #[test]
    fn host_port_forms() {
        let ok = |a: &str| split_host_port(a).unwrap();
        assert_eq!(
            ok("cfg.example.com:11212"),
            ("cfg.example.com".into(), 11212)
        );
        assert_eq!(ok("cfg.example.com"), ("cfg.example.com".into(), 11211));
        assert_eq!(ok("10.0.0.1:1"), ("10.0.0.1".into(), 1));
        assert_eq!(ok("[2001:db8::1]:11213"), ("2001:db8::1".into(), 11213));
        assert_eq!(ok("[::1]"), ("::1".into(), 11211));
        assert_eq!(ok("::1"), ("::1".into(), 11211));
        for bad in [
            "",
            ":11211",
            "h:0",
            "h:65536",
            "h:x",
            "a b:1",
            "not a host:port:x",
            "[::1]x",
            "h:1:2",
        ] {
            assert!(split_host_port(bad).is_err(), "{bad:?}");
        }
    }

    fn config(version: u64, nodes: &[(&str, &str)]) -> ClusterConfig {
        ClusterConfig {
            version,
            nodes: nodes
                .iter()
                .map(|(h, ip)| Node::new(*h, ip.parse().ok(), 11211))
                .collect(),
        }
    }

    #[test]
    fn apply_rules() {
        let current = config(5, &[("a", "10.0.0.1"), ("b", "10.0.0.2")]);
        let reordered = config(5, &[("b", "10.0.0.2"), ("a", "10.0.0.1")]);
        assert_eq!(decide(&current, &reordered), Decision::Unchanged);
        assert_eq!(
            decide(
                &current,
                &config(6, &[("a", "10.0.0.1"), ("b", "10.0.0.2")])
            ),
            Decision::Apply
        );
        assert_eq!(
            decide(&current, &config(4, &[("a", "10.0.0.1")])),
            Decision::Stale
        );
        assert_eq!(
            decide(
                &current,
                &config(5, &[("a", "10.0.0.1"), ("b", "10.0.0.9")])
            ),
            Decision::Apply,
            "same version, new IP"
        );
        assert_eq!(
            decide(&current, &config(5, &[("a", "10.0.0.1")])),
            Decision::Apply,
            "same version, node gone"
        );
    }

    #[tokio::test]
    async fn a_stale_poll_wakes_the_poller_once() {
        let poll = PollState::new(Duration::from_millis(30));
        poll.attempted();
        poll.check_stale();
        assert!(
            !poll.refresh_requested.load(Ordering::Acquire),
            "fresh: no wake-up"
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
        poll.check_stale();
        assert!(poll.refresh_requested.load(Ordering::Acquire));
        tokio::time::timeout(Duration::from_millis(100), poll.wake.notified())
            .await
            .expect("the poller was woken");
        poll.check_stale(); // already requested: no second wake-up
        assert!(
            tokio::time::timeout(Duration::from_millis(50), poll.wake.notified())
                .await
                .is_err(),
            "single flight: one wake-up per stale period"
        );
    }

    #[test]
    fn warnings_are_rate_limited_per_interval() {
        let poll = PollState::new(Duration::from_secs(60));
        assert!(poll.may_warn());
        assert!(!poll.may_warn());
    }
}
