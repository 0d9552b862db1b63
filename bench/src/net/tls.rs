//! Cold start over TLS (`--tls`, cargo feature `tls`): a TLS cluster of its own (the test
//! kit's, a certificate from a test CA for the node names and the endpoints' IPs), behind a
//! line of its own with a TLS second endpoint; `build()` → first `get` on loopback and through
//! the line, with the round trips counted as for plaintext.

use memcached_autodiscovery::{Client, ClusterConfig, TlsConfig};
use memcached_autodiscovery_testkit::{ConfigEndpoint, LocalCluster, TestCa};

use super::measure::{cold_start, Cold, Keys, Net, Target};
use super::{start_line, NetOptions};
use crate::load::KEY_COUNT;

pub async fn cold_starts(o: &NetOptions, keys: &Keys) -> Result<Vec<Cold>, String> {
    let ca = TestCa::new("loadbench test CA");
    let mut names: Vec<String> = (1..=o.nodes)
        .map(|k| format!("node-{k}.local-cluster.test"))
        .collect();
    // The kit's endpoint, the front of the line's endpoint, and the nodes' own IPs (the kit
    // gives node k 127.0.0.(k+1)), which the preload reaches them by.
    names.extend(["127.0.0.1".to_string(), "127.0.1.1".to_string()]);
    names.extend((1..=o.nodes).map(|k| format!("127.0.0.{}", k + 1)));
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (chain, key) = ca.issue(&names);
    let cluster = LocalCluster::builder()
        .nodes(o.nodes)
        .threads(1)
        .memory_mb(64)
        .tls(chain.clone(), key.clone())
        .start()
        .await
        .map_err(|e| format!("starting the TLS cluster: {e}"))?;
    let endpoint = ConfigEndpoint::start_tls(
        ClusterConfig::new(1, Vec::new()),
        chain.as_bytes(),
        key.as_bytes(),
        None,
    )
    .map_err(|e| format!("starting the TLS second endpoint: {e}"))?;
    let (line, _endpoint) = start_line(&cluster, endpoint, o.rtt)?;
    let n = o.nodes;
    let pids: Vec<u32> = (0..n).filter_map(|i| cluster.pid(i)).collect();
    let targets = [
        Target {
            net: Net::Loopback,
            endpoint: cluster.config_endpoint(),
            servers: cluster.node_addrs(),
            pids: pids.clone(),
            line: None,
        },
        Target {
            net: Net::Delay,
            endpoint: line.fronts[n],
            servers: line.fronts[..n].to_vec(),
            pids,
            line: Some(line.shared.clone()),
        },
    ];
    let tls = TlsConfig::with_ca_pem(ca.pem.as_bytes()).map_err(|e| e.to_string())?;
    let builder = || Client::builder().tls(tls.clone());
    // The keys cold start reads, on every node (a client reaching the nodes through the line
    // may route a key elsewhere than one reaching them directly), stored through a TLS client
    // of that node alone (the nodes speak only TLS).
    for addr in &targets[0].servers {
        let client = builder()
            .nodes([addr.to_string()])
            .build()
            .await
            .map_err(|e| format!("TLS preload: {e}"))?;
        for i in 0..o.cold_start {
            let key = &keys.get.keys[(i * 7919) % KEY_COUNT];
            client
                .set(key, &keys.get.value, std::time::Duration::ZERO)
                .await
                .map_err(|e| format!("TLS preload: {e}"))?;
        }
    }
    let mut colds = Vec::new();
    for net in &o.nets {
        let t = targets
            .iter()
            .find(|t| t.net == *net)
            .expect("both targets");
        colds.push(cold_start(t, keys, o.cold_start, true, builder).await?);
    }
    Ok(colds)
}
