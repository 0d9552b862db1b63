//! pymemcache's `HashClient` default: rendezvous (highest random weight) hashing with
//! MurmurHash3 x86_32, seed 0.
//!
//! Every node scores `murmur3_32("{node}-{key}")`, over one byte per character
//! (`ord(ch) & 0xFF`), and the highest score wins; equal scores go to the node whose id is
//! larger as a string. The node list order does not matter, and removing a node moves only its
//! own keys.

use std::borrow::Cow;

use super::hash;

#[derive(Debug, Clone)]
pub(crate) struct Rendezvous {
    /// Per node: the masked bytes of `"{node}-"`.
    prefixes: Box<[Box<[u8]>]>,
    /// Per node: its id, for ties.
    ids: Box<[Box<str>]>,
}

impl Rendezvous {
    pub(crate) fn new<S: AsRef<str>>(ids: &[S]) -> Rendezvous {
        let prefixes = ids
            .iter()
            .map(|id| {
                let mut text = hash::pymemcache_text_bytes(id.as_ref().as_bytes());
                text.push(b'-');
                text.into_boxed_slice()
            })
            .collect();
        let ids = ids.iter().map(|id| Box::from(id.as_ref())).collect();
        Rendezvous { prefixes, ids }
    }

    #[inline]
    pub(crate) fn locate(&self, key: &[u8]) -> Option<usize> {
        self.highest(key, |_| true)
    }

    /// The highest-scoring node for which `usable` is true (ties as in [`Rendezvous::locate`]).
    /// The winner is worked out first over all nodes, so that a usable winner costs what
    /// `locate` costs; only when it is not usable are the scores computed again without the
    /// unusable nodes.
    #[inline]
    pub(crate) fn locate_usable(
        &self,
        key: &[u8],
        usable: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        match self.locate(key) {
            Some(winner) if usable(winner) => Some(winner),
            Some(_) => self.highest(key, usable),
            None => None,
        }
    }

    #[inline]
    fn highest(&self, key: &[u8], usable: impl Fn(usize) -> bool) -> Option<usize> {
        let key: Cow<'_, [u8]> = if key.is_ascii() {
            Cow::Borrowed(key)
        } else {
            Cow::Owned(hash::pymemcache_text_bytes(key))
        };
        // One contiguous buffer per node text: the murmur3 crate reads a single slice faster
        // than two chained ones.
        let longest = self.prefixes.iter().map(|p| p.len()).max().unwrap_or(0);
        let mut text = Vec::with_capacity(longest + key.len());
        let mut winner: Option<(u32, usize)> = None;
        for (i, prefix) in self.prefixes.iter().enumerate() {
            if !usable(i) {
                continue;
            }
            text.clear();
            text.extend_from_slice(prefix);
            text.extend_from_slice(&key);
            let score = hash::murmur3_32_of(&text, &[]);
            winner = match winner {
                None => Some((score, i)),
                Some((best, _)) if score > best => Some((score, i)),
                Some((best, w)) if score == best && self.ids[i] > self.ids[w] => Some((score, i)),
                keep => keep,
            };
        }
        winner.map(|(_, i)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_murmur3_of_node_dash_key() {
        let r = Rendezvous::new(&["127.0.0.1:11211"]);
        assert_eq!(r.locate(b"dustin"), Some(0));
        assert_eq!(
            hash::murmur3_32_of(&r.prefixes[0], b"dustin"),
            2_848_086_011
        );
    }

    #[test]
    fn list_order_does_not_matter_and_removal_moves_only_the_removed_nodes_keys() {
        let a = Rendezvous::new(&["a:1", "b:1", "c:1", "d:1"]);
        let b = Rendezvous::new(&["d:1", "c:1", "b:1", "a:1"]);
        let c = Rendezvous::new(&["a:1", "b:1", "d:1"]);
        for i in 0..2000 {
            let key = format!("key-{i}");
            let x = a.locate(key.as_bytes()).unwrap();
            let y = b.locate(key.as_bytes()).unwrap();
            assert_eq!(&*a.ids[x], &*b.ids[y]);
            if &*a.ids[x] != "c:1" {
                let z = c.locate(key.as_bytes()).unwrap();
                assert_eq!(&*a.ids[x], &*c.ids[z]);
            }
        }
        let none: [&str; 0] = [];
        assert_eq!(Rendezvous::new(&none).locate(b"k"), None);
    }

    #[test]
    fn equal_scores_go_to_the_larger_id() {
        // Two nodes with the same id string score the same for every key.
        let r = Rendezvous::new(&["same:1", "same:1"]);
        assert_eq!(r.locate(b"k"), Some(0));
        let r = Rendezvous {
            prefixes: vec![Box::from(&b"x-"[..]), Box::from(&b"x-"[..])].into_boxed_slice(),
            ids: vec![Box::from("a"), Box::from("b")].into_boxed_slice(),
        };
        assert_eq!(r.locate(b"k"), Some(1));
    }
}
