//! The Photo demo: an AWS Lambda function that scans DynamoDB's `Photo` table, caches the result
//! in an ElastiCache for Memcached cluster found by auto-discovery, reads it back and compares.
//!
//! Environment:
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `MEMCACHED_CONFIG_ENDPOINT` | the cluster's configuration endpoint, `host:port` | required |
//! | `TABLE_NAME` | the DynamoDB table to scan | `Photo` |
//! | `MEMCACHED_POLL_INTERVAL_SECS` | how often the cluster configuration is polled | `60` |
//! | `MEMCACHED_TLS` | `true` when the cluster has in-transit encryption | `false` |
//!
//! Run it locally with `examples/lambda-photo/run-local`; deploy it with `template.yaml`.

mod item_json;

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::error::DisplayErrorContext;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use memcached_autodiscovery::{Client, ClientBuilder, TlsConfig};
use serde_json::{json, Value};

/// Photos read per invocation.
const SCAN_LIMIT: i32 = 20;
/// How long the cached scan lives in memcached.
const CACHE_TTL: Duration = Duration::from_secs(300);

/// What the function needs from its environment, read once at start-up.
#[derive(Debug)]
struct Settings {
    config_endpoint: String,
    table: String,
    poll_interval: Duration,
    tls: bool,
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
        Ok(Settings {
            config_endpoint: config_endpoint.trim().to_string(),
            table,
            poll_interval,
            tls,
        })
    }
}

/// Everything built once per execution environment and reused by every invocation.
struct App {
    cache: Client,
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    key: String,
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
        version = topology.version,
        nodes = topology.nodes.len(),
        poll_interval_s = settings.poll_interval.as_secs_f64(),
        "cold start: memcached cluster discovered"
    );

    let app = App {
        cache,
        dynamodb,
        key: format!("photo-demo:{}:first-{SCAN_LIMIT}", settings.table),
        table: settings.table,
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
        .discovery_timeout(Duration::from_secs(1));
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

/// One invocation: scan, cache, read back, compare.
async fn handle(app: &App, _event: LambdaEvent<Value>) -> Result<Value, Error> {
    let version_at_start = app.cache.cluster().version;

    let started = Instant::now();
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
    let scan_ms = started.elapsed().as_millis();
    let photos = scan
        .items()
        .iter()
        .map(item_json::item_to_json)
        .collect::<Result<Vec<Value>, String>>()
        .map_err(|e| format!("table {:?}: {e}", app.table))?;
    let count = photos.len();
    let value = serde_json::to_vec(&photos)?;

    // The topology this set is routed by (a refresh may swap in a newer one at any moment).
    let topology = app.cache.cluster();
    let node = app.cache.node_for(&app.key)?;
    let started = Instant::now();
    app.cache
        .set(&app.key, &value, CACHE_TTL)
        .await
        .map_err(|e| format!("memcached set of {:?} failed: {e}", app.key))?;
    let back = app
        .cache
        .get(&app.key)
        .await
        .map_err(|e| format!("memcached get of {:?} failed: {e}", app.key))?;
    let cache_ms = started.elapsed().as_millis();

    let message = match compare(&value, back.as_deref()) {
        None => "It works!".to_string(),
        Some(difference) => format!("Mismatch: {difference}"),
    };
    let now = app.cache.cluster();
    Ok(json!({
        "message": message,
        "photos": count,
        "bytes": value.len(),
        "key": app.key,
        "node": node.id(),
        "node_ip": node.ip.map(|ip| ip.to_string()),
        "cluster_version": topology.version,
        "cluster_nodes": topology.nodes.len(),
        "cluster_version_at_start": version_at_start,
        "cluster_version_at_end": now.version,
        "scan_ms": scan_ms,
        "set_and_get_ms": cache_ms,
    }))
}

/// What differs between what was written and what was read back, or `None` when equal.
fn compare(written: &[u8], read: Option<&[u8]>) -> Option<String> {
    let read = match read {
        None => {
            return Some(format!(
                "wrote {} bytes, then the get found nothing (evicted, or the key moved to \
                 another node between the two calls)",
                written.len()
            ))
        }
        Some(read) => read,
    };
    if read == written {
        return None;
    }
    let first = written
        .iter()
        .zip(read)
        .position(|(a, b)| a != b)
        .unwrap_or(written.len().min(read.len()));
    Some(format!(
        "wrote {} bytes, read back {}; they first differ at byte {first}",
        written.len(),
        read.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_says_what_differed() {
        assert_eq!(compare(b"abc", Some(b"abc")), None);
        assert!(compare(b"abc", None).unwrap().contains("found nothing"));
        assert_eq!(
            compare(b"abcd", Some(b"abXd")).unwrap(),
            "wrote 4 bytes, read back 4; they first differ at byte 2"
        );
        assert_eq!(
            compare(b"abc", Some(b"ab")).unwrap(),
            "wrote 3 bytes, read back 2; they first differ at byte 2"
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
