//! What the library emits through `tracing`, recorded by a subscriber of our own while a client
//! goes through everything that emits something (discovery, requests, topology changes, a
//! lagging and a failing endpoint, a freeze, a killed node, a hostile node). Checked:
//!
//! * the spans and events emitted, with their kind, level and fields, are exactly the rows of
//!   the tracing tables in docs/observability.md and in the crate docs (src/lib.rs);
//! * no recorded field, at any level, holds a byte of a key or a value the caller used, even when
//!   a node answers with the key in a malformed reply;
//! * every `memcached.request` span carries OpenTelemetry's database client fields with the
//!   documented values: `otel.kind` client, `db.system.name` memcached, `db.operation.name` the
//!   call (as `op`), and in a call to one node `server.address` and `server.port` of that node.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use memcached_autodiscovery::Client;
use memcached_autodiscovery_testkit::{EndpointBehavior, LocalCluster};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Keys and values carry this marker; no log may.
const MARKER: &str = "SeCrEt";

/// One kind of span or event: name, "span"/"event", level.
type Kind = (String, &'static str, String);

#[derive(Default)]
struct Recorded {
    /// Fields seen per kind.
    kinds: BTreeMap<Kind, BTreeSet<String>>,
    /// Every field value recorded, as text.
    values: Vec<String>,
    /// The fields of each `memcached.request` span, by name.
    requests: Vec<BTreeMap<String, String>>,
    /// Events of a connection's task (`memcached.connected`, ...) and whether each had no
    /// parent span: the task is polled by whichever caller is alone on the connection, and its
    /// events must not land in that caller's request span.
    connection_events: Vec<(String, bool)>,
}

/// The events of a connection's task.
const CONNECTION_EVENTS: [&str; 6] = [
    "memcached.connected",
    "memcached.connection_lost",
    "memcached.connect_failed",
    "memcached.discovery.connect_failed",
    "memcached.stale.flush",
    "memcached.stale.delete",
];

/// Ids above this are request spans (`REQUEST_IDS + 1` is the first); other spans are id 1.
const REQUEST_IDS: u64 = 1 << 32;

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Recorded>>);

/// What one span or event recorded: its field names and its message.
#[derive(Default)]
struct Fields {
    names: BTreeSet<String>,
    message: Option<String>,
    values: Vec<String>,
    pairs: BTreeMap<String, String>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = Some(text.clone());
        } else {
            self.names.insert(field.name().to_string());
        }
        self.pairs.insert(field.name().to_string(), text.clone());
        self.values.push(text);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }
}

impl Recorder {
    fn ours(metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("memcached_autodiscovery")
    }

    /// Visits fields with `visit` and keeps their values; with `kind`, notes the field names (and
    /// `declared`) under it.
    fn keep(
        &self,
        visit: impl FnOnce(&mut Fields),
        kind: Option<Kind>,
        declared: BTreeSet<String>,
    ) -> Fields {
        let mut fields = Fields::default();
        visit(&mut fields);
        let mut recorded = self.0.lock().unwrap();
        recorded.values.append(&mut fields.values);
        if let Some(kind) = kind {
            let names = fields.names.iter().cloned().chain(declared);
            recorded.kinds.entry(kind).or_default().extend(names);
        }
        fields
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        Self::ours(metadata)
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let metadata = span.metadata();
        // A span's fields are those it declares, recorded now or later.
        let declared = metadata
            .fields()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        let kind = (
            metadata.name().to_string(),
            "span",
            metadata.level().to_string(),
        );
        let fields = self.keep(|fields| span.record(fields), Some(kind), declared);
        if metadata.name() == "memcached.request" {
            // A request span's id says where its fields are kept, for values recorded later.
            let mut recorded = self.0.lock().unwrap();
            recorded.requests.push(fields.pairs);
            return Id::from_u64(REQUEST_IDS + recorded.requests.len() as u64);
        }
        Id::from_u64(1)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let fields = self.keep(|fields| values.record(fields), None, BTreeSet::new());
        if let Some(i) = span.into_u64().checked_sub(REQUEST_IDS + 1) {
            let mut recorded = self.0.lock().unwrap();
            recorded.requests[i as usize].extend(fields.pairs);
        }
    }

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        // An event is named by its message.
        let fields = self.keep(|fields| event.record(fields), None, BTreeSet::new());
        let kind = (
            fields.message.unwrap_or_default(),
            "event",
            event.metadata().level().to_string(),
        );
        let mut recorded = self.0.lock().unwrap();
        if CONNECTION_EVENTS.contains(&kind.0.as_str()) {
            recorded
                .connection_events
                .push((kind.0.clone(), event.is_root()));
        }
        recorded.kinds.entry(kind).or_default().extend(fields.names);
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

/// A node that answers every request line with a line quoting it: a malformed reply that holds
/// the key.
async fn echoing_node() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply = format!("ECHO {line}\r\n");
                    if write.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// The rows of the markdown table under the `heading` line of `text`: (name, kind, level) and
/// fields.
fn table(text: &str, heading: &str) -> BTreeMap<Kind, BTreeSet<String>> {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("{heading:?} present"));
    let mut rows = BTreeMap::new();
    let mut in_table = false;
    for line in text[start..].lines().skip(1) {
        let line = line.trim_start_matches("//!").trim();
        if !line.starts_with('|') {
            if in_table {
                break;
            }
            continue;
        }
        in_table = true;
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() != 3 || cells[0] == "name" || cells[0].starts_with("---") {
            continue;
        }
        let name = cells[0].trim_matches('`').to_string();
        let mut kind_level = cells[1].split(',').map(str::trim);
        let kind = match kind_level.next() {
            Some("span") => "span",
            Some("event") => "event",
            other => panic!("kind of {name}: {other:?}"),
        };
        let level = kind_level
            .next()
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_default()
            .to_ascii_uppercase();
        let fields = cells[2]
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        rows.insert((name, kind, level), fields);
    }
    rows
}

#[tokio::test(flavor = "current_thread")]
async fn emitted_spans_and_events_are_the_documented_ones_and_hold_no_key_or_value() {
    let recorder = Recorder::default();
    let _guard = tracing::subscriber::set_default(recorder.clone());

    let cluster = LocalCluster::start(2).await.unwrap();
    let poll = Duration::from_millis(300);
    let client = Client::builder()
        .config_endpoint(cluster.config_endpoint().to_string())
        .poll_interval(poll)
        .request_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();

    // Requests of every shape, with marked keys and values.
    let keys: Vec<String> = (0..8).map(|i| format!("{MARKER}-key-{i}")).collect();
    for key in &keys {
        client
            .set(key, format!("{MARKER}-value"), Duration::from_secs(60))
            .await
            .unwrap();
        assert!(client.get(key).await.unwrap().is_some());
    }
    assert_eq!(client.get_many(&keys).await.unwrap().len(), keys.len());
    client.stats(None).await.unwrap();
    let loaded = client
        .get_or_load(
            format!("{MARKER}-loaded"),
            Duration::from_secs(60),
            || async { Ok::<_, std::io::Error>(bytes::Bytes::from(format!("{MARKER}-value"))) },
        )
        .await
        .unwrap();
    assert!(loaded.starts_with(MARKER.as_bytes()));
    assert!(client
        .invalidate(&keys[1], Duration::from_secs(5))
        .await
        .unwrap());

    // Reads served from a near cache: one key, and part of a multi-get.
    let near = Client::builder()
        .config_endpoint(cluster.config_endpoint().to_string())
        .near_cache(1 << 20, Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    for _ in 0..2 {
        assert!(near.get(&keys[2]).await.unwrap().is_some());
    }
    assert_eq!(near.get_many(&keys[2..4]).await.unwrap().len(), 2);
    drop(near);

    // A node joins: the topology changes.
    cluster.add_node().await.unwrap();
    assert!(client.refresh().await.unwrap());
    // The endpoint lags behind: a lower version is ignored.
    let version = cluster.config().version();
    cluster.set_version(version - 1);
    assert!(!client.refresh().await.unwrap());
    cluster.set_version(version);
    // The endpoint fails: the last good topology is kept.
    cluster.set_endpoint_behavior(EndpointBehavior::Garbage);
    assert!(client.refresh().await.is_err());
    cluster.set_endpoint_behavior(EndpointBehavior::Normal);

    // A freeze: the thread sleeps past the poll interval without running timers, then a request
    // finds the last poll stale.
    std::thread::sleep(poll * 2);
    client.get(&keys[0]).await.unwrap();

    // A node dies under a live connection: the connection is lost, the reconnect fails.
    for i in 0..cluster.len() {
        cluster.kill(i);
    }
    for key in &keys {
        let _ = client.get(key).await;
    }

    // A hostile node quotes the key in a malformed reply.
    let hostile = Client::builder()
        .nodes([echoing_node().await.to_string()])
        .build()
        .await
        .unwrap();
    assert!(hostile.get(&keys[0]).await.is_err());
    drop((client, hostile));

    let recorded = recorder.0.lock().unwrap();
    let leaks: Vec<&String> = recorded
        .values
        .iter()
        .filter(|v| v.contains(MARKER))
        .collect();
    assert!(
        leaks.is_empty(),
        "keys or values reached the logs: {leaks:?}"
    );
    assert!(recorded.values.len() > 20, "the recorder saw the library");
    // A connection's events have no parent span, whoever polled its task.
    assert!(
        recorded
            .connection_events
            .iter()
            .any(|(name, _)| name == "memcached.connected"),
        "{:?}",
        recorded.connection_events
    );
    let nested: Vec<_> = recorded
        .connection_events
        .iter()
        .filter(|(_, root)| !root)
        .collect();
    assert!(nested.is_empty(), "connection events in a span: {nested:?}");

    // OpenTelemetry's fields on every request span.
    assert!(recorded.requests.len() > 10, "request spans were recorded");
    let mut one_node = 0;
    for span in &recorded.requests {
        let field = |name: &str| span.get(name).map(String::as_str);
        assert_eq!(field("otel.kind"), Some("client"), "{span:?}");
        assert_eq!(field("db.system.name"), Some("memcached"), "{span:?}");
        assert_eq!(field("db.operation.name"), field("op"), "{span:?}");
        match field("node") {
            Some(node) => {
                one_node += 1;
                let server = format!(
                    "{}:{}",
                    field("server.address").unwrap_or_default(),
                    field("server.port").unwrap_or_default()
                );
                assert_eq!(server, node, "server.address and server.port name the node");
            }
            None => assert!(
                field("server.address").is_none() && field("server.port").is_none(),
                "a call to several nodes names no single server: {span:?}"
            ),
        }
    }
    assert!(one_node > 0 && one_node < recorded.requests.len());
    let operations: BTreeSet<&str> = recorded
        .requests
        .iter()
        .filter_map(|span| span.get("db.operation.name").map(String::as_str))
        .collect();
    for op in [
        "get",
        "set",
        "get_many",
        "stats",
        "get_or_load",
        "invalidate",
    ] {
        assert!(operations.contains(op), "{op} in {operations:?}");
    }

    let root = env!("CARGO_MANIFEST_DIR");
    let page = std::fs::read_to_string(format!("{root}/docs/observability.md")).unwrap();
    let lib = std::fs::read_to_string(format!("{root}/src/lib.rs")).unwrap();
    let documented = table(&page, "## Tracing");
    assert_eq!(
        recorded.kinds, documented,
        "docs/observability.md's tracing table (right) and what the library emits (left) differ"
    );
    assert_eq!(
        table(&lib, "//! # Tracing"),
        documented,
        "the crate docs' tracing table differs from docs/observability.md's"
    );
}
