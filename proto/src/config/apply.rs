//! The apply rules: what a client does with a configuration it fetched, given the one it holds.
//! Pure; the client's topology applies the decision.

use super::{ClusterConfig, Node};

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
/// applied only when the node set (hostname, IP, port; order and repeats aside) differs, because
/// in-place node replacement has been seen to change an IP without a version bump.
pub fn decide(current: &ClusterConfig, candidate: &ClusterConfig) -> Decision {
    use std::cmp::Ordering::*;
    match candidate.version.cmp(&current.version) {
        Greater => Decision::Apply,
        Less => Decision::Stale,
        Equal => {
            let set = |c: &ClusterConfig| {
                c.nodes
                    .iter()
                    .cloned()
                    .collect::<std::collections::BTreeSet<Node>>()
            };
            if set(current) == set(candidate) {
                Decision::Unchanged
            } else {
                Decision::Apply
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let repeated = config(
            5,
            &[("a", "10.0.0.1"), ("b", "10.0.0.2"), ("a", "10.0.0.1")],
        );
        assert_eq!(
            decide(&current, &repeated),
            Decision::Unchanged,
            "a node listed twice is the same set"
        );
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
}
