//! The Photo demo: an AWS Lambda function that serves the first photos of DynamoDB's `Photo`
//! table from an ElastiCache for Memcached cluster found by auto-discovery. The cache is filled
//! with `Client::get_or_load`: on a cold cache one invocation scans the table and stores the
//! result, and every other invocation, in this environment or any other, waits for that value
//! instead of scanning too.
//!
//! Environment:
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `MEMCACHED_CONFIG_ENDPOINT` | the cluster's configuration endpoint, `host:port` | required |
//! | `TABLE_NAME` | the DynamoDB table to scan | `Photo` |
//! | `MEMCACHED_POLL_INTERVAL_SECS` | how often the cluster configuration is polled | `60` |
//! | `MEMCACHED_TLS` | `true` when the cluster has in-transit encryption | `false` |
//! | `MEMCACHED_NEAR_CACHE_MS` | how long a warm environment serves the photos from its own memory (the near cache's maximum age, in ms) before asking memcached again; `0` turns it off | `1000` |
//!
//! Run it locally with `examples/lambda-photo/run-local`; deploy it with `template.yaml`.

mod item_json;

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::error::DisplayErrorContext;
use bytes::Bytes;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use memcached_autodiscovery::{Client, ClientBuilder, TlsConfig};
use serde_json::{json, Value};

/// Photos read by one scan.
const SCAN_LIMIT: i32 = 20;
/// How long the cached scan lives in memcached. In its last tenth (the last 30 s) one
/// invocation scans again while the others are still served the current value.
const CACHE_TTL: Duration = Duration::from_secs(300);

/// What the function needs from its environment, read once at start-up.
#[derive(Debug)]
struct Settings {
    config_endpoint: String,
    table: String,
    poll_interval: Duration,
    tls: bool,
    /// The near cache's maximum age (zero: off).
    near_cache_age: Duration,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let config_endpoint = var("MEMCACHED_CONFIG_ENDPOINT").ok_or(
            "MEMCACHED_CONFIG_ENDPOINT is not set: give it the cluster's configuration endpoint, \
             host:port (on ElastiCache the address with `.cfg.` in it, port 11211)",
        )?;
        let table = var("TABLE_NAME").unwrap_or_else(|| "Photo".to_string());
        let poll_interval = match var("MEMCACHED_POLL_INTERVAL_SECS") {
            None => Duration::from_secs(60),
            Some(text) => text
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
                .map(Duration::from_secs_f64)
                .ok_or(format!(
                    "MEMCACHED_POLL_INTERVAL_SECS={text:?} is not a number of seconds \
                     between 0 and 86400 (e.g. 60)"
                ))?,
        };
        let tls = match var("MEMCACHED_TLS").as_deref().map(str::trim) {
            None | Some("false") | Some("0") | Some("no") => false,
            Some("true") | Some("1") | Some("yes") => true,
            Some(other) => {
                return Err(format!("MEMCACHED_TLS={other:?} is neither true nor false"))
            }
        };
        let near_cache_age = match var("MEMCACHED_NEAR_CACHE_MS") {
            None => Duration::from_secs(1),
            Some(text) => text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|ms| *ms <= 3_600_000)
                .map(Duration::from_millis)
                .ok_or(format!(
                    "MEMCACHED_NEAR_CACHE_MS={text:?} is not a whole number of milliseconds \
                     up to 3600000 (e.g. 1000; 0 turns the near cache off)"
                ))?,
        };
        Ok(Settings {
            config_endpoint: config_endpoint.trim().to_string(),
            table,
            poll_interval,
            tls,
            near_cache_age,
        })
    }
}

/// Everything built once per execution environment and reused by every invocation.
struct App {
    cache: Client,
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    key: String,
    /// This execution environment in answers: the process id and its start time.
    environment: String,
}

#[tokio::main]
async fn main() {
    if let Err(error) = start().await {
        // Lambda logs this and reports the failed start (Runtime.ExitError).
        eprintln!("lambda-photo: {error}");
        std::process::exit(1);
    }
}

async fn start() -> Result<(), Error> {
    // Log lines go to CloudWatch; RUST_LOG or AWS_LAMBDA_LOG_LEVEL choose the level
    // (`RUST_LOG=info,memcached_autodiscovery=debug` shows discovery and connection events).
    lambda_runtime::tracing::init_default_subscriber();
    let settings = Settings::from_env()?;

    // Both clients are built here, once, outside the handler: connections, the discovered
    // topology and the SDK's credentials are reused by every invocation this environment serves.
    let cache = memcached_client(&settings).await?;
    let dynamodb = dynamodb_client().await;
    let topology = cache.cluster();
    tracing::info!(
        endpoint = %settings.config_endpoint,
        version = topology.version(),
        nodes = topology.nodes().len(),
        poll_interval_s = settings.poll_interval.as_secs_f64(),
        "cold start: memcached cluster discovered"
    );

    let app = App {
        cache,
        dynamodb,
        key: format!("photos:{}:first-{SCAN_LIMIT}", settings.table),
        table: settings.table,
        environment: format!("pid {} started {}", std::process::id(), unix_ms()),
    };
    let app = &app;
    lambda_runtime::run(service_fn(move |event| handle(app, event))).await
}

/// The memcached client, with timeouts well under the function's (10 s in template.yaml).
///
/// What happens across a freeze: between invocations Lambda freezes the environment, so no
/// timer runs, the background poll included, and the cluster may change meanwhile (nodes added,
/// removed, replaced or restarted). On the first call after the thaw the client sees that its
/// last poll is older than `poll_interval` and wakes one refresh in the background without
/// waiting for it (the overdue poll timer may fire at the same moment; either way the new
/// topology is in use within about one discovery round trip, never a full interval later).
/// Sockets that died while frozen are found before they are used: a connection idle for more
/// than 250 ms checks its socket before writing, and a request that meets a dead socket goes out
/// again on a fresh connection. See the README's section on defaults in Lambda.
async fn memcached_client(settings: &Settings) -> Result<Client, Error> {
    let builder = Client::builder()
        .config_endpoint(settings.config_endpoint.clone())
        .poll_interval(settings.poll_interval)
        .request_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(500))
        .discovery_timeout(Duration::from_secs(1))
        // Warm invocations read the photos from this environment's memory for up to
        // `near_cache_age` (a change made elsewhere is seen within that age); 4 MiB is plenty
        // for one JSON list. A zero age leaves it off.
        .near_cache(4 << 20, settings.near_cache_age);
    with_tls(builder, settings.tls).build().await.map_err(|e| {
        format!(
            "cannot discover the memcached cluster at MEMCACHED_CONFIG_ENDPOINT={}: {e}",
            settings.config_endpoint
        )
        .into()
    })
}

/// In-transit encryption (template.yaml's `TransitEncryption=true` sets `MEMCACHED_TLS=true`):
/// TLS to the configuration endpoint and to every node, each node's certificate checked against
/// its hostname. ElastiCache's certificates chain to Amazon's public roots, which
/// `TlsConfig::webpki_roots()` includes.
fn with_tls(builder: ClientBuilder, tls: bool) -> ClientBuilder {
    if tls {
        builder.tls(TlsConfig::webpki_roots())
    } else {
        builder
    }
}

/// The DynamoDB client: credentials and region from the Lambda environment (or, locally, from
/// AWS_* variables; AWS_ENDPOINT_URL_DYNAMODB points it at a local server). rustls with ring
/// speaks HTTPS, and every call is bounded well under the function's timeout.
async fn dynamodb_client() -> aws_sdk_dynamodb::Client {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(4))
        .build();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(timeouts)
        .load()
        .await;
    aws_sdk_dynamodb::Client::new(&config)
}

/// One invocation: the photos from memcached, or from one scan of the table when the key is
/// missing. `get_or_load` runs `scan` at most once per key across every environment of the
/// function (one win per key at the memcached node; the other callers wait for its value), so a
/// burst of invocations on a cold cache reaches DynamoDB once.
async fn handle(app: &App, _event: LambdaEvent<Value>) -> Result<Value, Error> {
    let started_at_ms = unix_ms();
    // The topology the key is routed by, and its node (a refresh may swap in a newer one at any
    // moment: `cluster_version_at_end` says whether one did during this invocation).
    let topology = app.cache.cluster();
    let node = app.cache.node_for(&app.key)?;

    // Set by the loader, which runs only in the invocation that won the key.
    let scan_ms = OnceLock::new();
    // Whether the photos came from this environment's memory: its near cache's hits before and
    // after (one invocation at a time per environment).
    let hits_before = app.cache.near_cache_stats().map(|s| s.hits);
    let started = Instant::now();
    let value = app
        .cache
        .get_or_load(&app.key, CACHE_TTL, || async {
            let started = Instant::now();
            let photos = scan(app).await;
            let _ = scan_ms.set(started.elapsed().as_millis());
            photos
        })
        .await
        .map_err(|e| failure(&app.key, e))?;
    let took = started.elapsed();
    let near_cache = match (app.cache.near_cache_stats(), hits_before) {
        (Some(now), Some(before)) if now.hits > before => "hit",
        (Some(_), _) => "miss",
        (None, _) => "off",
    };
    let count = count_photos(&value).map_err(|e| format!("the value under {:?} {e}", app.key))?;

    let now = app.cache.cluster();
    Ok(json!({
        "message": "It works!",
        "photos": count,
        "bytes": value.len(),
        "digest": digest(&value),
        "loaded": scan_ms.get().is_some(),
        "key": app.key,
        "node": node.id(),
        "node_ip": node.ip().map(|ip| ip.to_string()),
        "cluster_version": topology.version(),
        "cluster_nodes": topology.nodes().len(),
        "cluster_version_at_start": topology.version(),
        "cluster_version_at_end": now.version(),
        "scan_ms": scan_ms.get(),
        "get_or_load_ms": took.as_millis(),
        "get_or_load_us": took.as_micros(),
        "near_cache": near_cache,
        "environment": app.environment,
        "started_at_ms": started_at_ms,
    }))
}

/// The loader: the first `SCAN_LIMIT` photos of the table, as a JSON list. Its error is the
/// runtime's own (`lambda_runtime::Error`); `get_or_load` hands it back as `Error::Load`.
async fn scan(app: &App) -> Result<Bytes, Error> {
    let scan = app
        .dynamodb
        .scan()
        .table_name(&app.table)
        .limit(SCAN_LIMIT)
        .send()
        .await
        .map_err(|e| {
            format!(
                "DynamoDB Scan of table {:?} failed: {}",
                app.table,
                DisplayErrorContext(e)
            )
        })?;
    let photos = scan
        .items()
        .iter()
        .map(item_json::item_to_json)
        .collect::<Result<Vec<Value>, String>>()
        .map_err(|e| format!("table {:?}: {e}", app.table))?;
    let json = serde_json::to_vec(&photos)?;
    Ok(Bytes::from(json))
}

/// The invocation's error: a failed scan says so in its own words (the key was given back at
/// once, and the next invocation scans again); anything else is memcached's.
fn failure(key: &str, error: memcached_autodiscovery::Error) -> String {
    match error {
        memcached_autodiscovery::Error::Load { source } => source.to_string(),
        error => format!("memcached get_or_load of {key:?} failed: {error}"),
    }
}

/// How many photos the cached value holds, or what is wrong with it.
fn count_photos(value: &[u8]) -> Result<usize, String> {
    match serde_json::from_slice::<Value>(value) {
        Ok(Value::Array(photos)) => Ok(photos.len()),
        Ok(_) => Err(format!("is JSON but not a list ({} bytes)", value.len())),
        Err(e) => Err(format!("is not JSON ({} bytes): {e}", value.len())),
    }
}

/// 64-bit FNV-1a of the value, in hex: equal values give equal digests, so answers can be
/// compared (the value a scan stored and the one later invocations were served).
fn digest(value: &[u8]) -> String {
    let hash = value.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_photos_reads_a_json_list() {
        assert_eq!(count_photos(br#"[{"id":"p-001"},{"id":"p-002"}]"#), Ok(2));
        assert_eq!(count_photos(b"[]"), Ok(0));
        // What a plain `get` sees while a load is in progress: the empty placeholder.
        assert!(count_photos(b"")
            .unwrap_err()
            .starts_with("is not JSON (0 bytes)"));
        assert_eq!(
            count_photos(br#"{"id":"p-001"}"#).unwrap_err(),
            "is JSON but not a list (14 bytes)"
        );
    }

    #[test]
    fn digest_is_fnv1a_64() {
        // The published FNV-1a test vectors.
        assert_eq!(digest(b""), "cbf29ce484222325");
        assert_eq!(digest(b"a"), "af63dc4c8601ec8c");
        assert_eq!(digest(b"foobar"), "85944171f73967e8");
        assert_ne!(digest(b"[1,2]"), digest(b"[2,1]"));
    }

    #[test]
    fn a_failed_scan_reads_as_its_own_message() {
        let scan_failed = memcached_autodiscovery::Error::Load {
            source: std::sync::Arc::from(Error::from("DynamoDB Scan of table \"Photo\" failed")),
        };
        assert_eq!(
            failure("photos:Photo:first-20", scan_failed),
            "DynamoDB Scan of table \"Photo\" failed"
        );
        assert_eq!(
            failure(
                "photos:Photo:first-20",
                memcached_autodiscovery::Error::NoNodes
            ),
            "memcached get_or_load of \"photos:Photo:first-20\" failed: the cluster has no nodes"
        );
    }

    #[test]
    fn settings_errors_name_the_variable() {
        // One test touches the environment, so there is no race between tests.
        std::env::remove_var("MEMCACHED_CONFIG_ENDPOINT");
        let error = Settings::from_env().unwrap_err();
        assert!(
            error.starts_with("MEMCACHED_CONFIG_ENDPOINT is not set"),
            "{error}"
        );

        std::env::set_var("MEMCACHED_CONFIG_ENDPOINT", "cfg.example:11211");
        std::env::set_var("MEMCACHED_POLL_INTERVAL_SECS", "soon");
        let error = Settings::from_env().unwrap_err();
        assert!(
            error.starts_with("MEMCACHED_POLL_INTERVAL_SECS=\"soon\""),
            "{error}"
        );

        std::env::set_var("MEMCACHED_POLL_INTERVAL_SECS", "2");
        std::env::set_var("MEMCACHED_TLS", "maybe");
        let error = Settings::from_env().unwrap_err();
        assert!(error.starts_with("MEMCACHED_TLS=\"maybe\""), "{error}");

        std::env::remove_var("MEMCACHED_TLS");
        std::env::remove_var("TABLE_NAME");
        let settings = Settings::from_env().unwrap();
        assert_eq!(settings.table, "Photo");
        assert_eq!(settings.poll_interval, Duration::from_secs(2));
        assert!(!settings.tls);
    }
}
