//! The cluster side of a run: the herd's clients, and an observer client that flushes the
//! nodes, checks that the keys are gone, and reads memcached's command counters.

use std::time::{Duration, Instant};

use memcached_autodiscovery::Client;

/// `count` clients, each built on its own from the configuration endpoint (as separate Lambda
/// environments would), with their connections to every node open.
pub async fn clients(endpoint: &str, count: usize) -> Result<Vec<Client>, String> {
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        let client = Client::builder()
            .config_endpoint(endpoint)
            .build()
            .await
            .map_err(|e| format!("building a client: {e}"))?;
        // `stats` goes to every node: it opens the connections before the herd.
        client
            .stats(None)
            .await
            .map_err(|e| format!("opening connections: {e}"))?;
        clients.push(client);
    }
    Ok(clients)
}

/// How many of `keys` a plain `get` finds.
pub async fn present(observer: &Client, keys: &[String]) -> Result<usize, String> {
    let mut found = 0;
    for key in keys {
        if observer
            .get(key)
            .await
            .map_err(|e| format!("checking {key}: {e}"))?
            .is_some()
        {
            found += 1;
        }
    }
    Ok(found)
}

/// `flush_all`, then checks that no key is left.
pub async fn flush(observer: &Client, keys: &[String]) -> Result<(), String> {
    observer
        .flush_all()
        .await
        .map_err(|e| format!("flush_all: {e}"))?;
    match present(observer, keys).await? {
        0 => Ok(()),
        n => Err(format!("{n} keys still there after flush_all")),
    }
}

/// Waits out `ttl` from `stored`, then until no key is found (memcached's clock ticks once a
/// second, so an item can outlive its TTL by up to a second). Returns the time waited in all.
pub async fn wait_for_expiry(
    observer: &Client,
    keys: &[String],
    stored: Instant,
    ttl: Duration,
) -> Result<Duration, String> {
    let began = Instant::now();
    tokio::time::sleep_until((stored + ttl).into()).await;
    let limit = stored + ttl + Duration::from_secs(5);
    loop {
        if present(observer, keys).await? == 0 {
            return Ok(began.elapsed());
        }
        if Instant::now() > limit {
            return Err(format!(
                "keys still there {:?} after their TTL",
                ttl + Duration::from_secs(5)
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// memcached's command counters, summed over the nodes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// `cmd_get`: text and meta gets (every `mg` of a waiter that asks again counts).
    pub gets: u64,
    /// `cmd_set`: text and meta sets.
    pub sets: u64,
}

impl Counters {
    pub async fn read(observer: &Client) -> Result<Counters, String> {
        let mut counters = Counters::default();
        for (node, pairs) in observer
            .stats(None)
            .await
            .map_err(|e| format!("stats: {e}"))?
        {
            let stat = |name: &str| -> Result<u64, String> {
                pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .and_then(|(_, v)| v.parse().ok())
                    .ok_or_else(|| format!("{node}: no {name} in stats"))
            };
            counters.gets += stat("cmd_get")?;
            counters.sets += stat("cmd_set")?;
        }
        Ok(counters)
    }

    pub fn since(self, before: Counters) -> Counters {
        Counters {
            gets: self.gets.saturating_sub(before.gets),
            sets: self.sets.saturating_sub(before.sets),
        }
    }
}
