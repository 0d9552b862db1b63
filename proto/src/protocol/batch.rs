//! Splitting the keys of a multi-key retrieval into lines of bounded size, pure.
//!
//! ElastiCache Serverless refuses a `get`/`gets` line longer than 16 KB, and 100 long keys
//! (up to 250 bytes each) make a line of about 25 KB. [`retrieval_batches`] cuts a node's keys
//! into consecutive groups whose line fits both a key count and a byte limit; every group goes
//! out as its own pipelined request.

/// The longest `get`/`gets` line ElastiCache Serverless accepts, counted here with the verb,
/// the spaces and the final `\r\n`: 16 KB.
pub const MAX_RETRIEVAL_LINE: usize = 16 * 1024;

/// Consecutive groups of `keys`, in order, each of at most `max_keys` keys (at least 1) and with
/// a line `<verb> k1 k2 ...\r\n` of at most `max_line` bytes. A key too long to fit the limit
/// on its own (impossible for valid keys under [`MAX_RETRIEVAL_LINE`]) makes a group alone.
///
/// ```
/// use memcached_autodiscovery_proto::protocol::retrieval_batches;
/// let keys: Vec<&[u8]> = vec![b"aaaa", b"bbbb", b"cccc"];
/// // "get aaaa bbbb\r\n" is 15 bytes: a third key would make 20.
/// let groups: Vec<_> = retrieval_batches(b"get", &keys, 100, 16).collect();
/// assert_eq!(groups, [&keys[..2], &keys[2..]]);
/// ```
pub fn retrieval_batches<'a, 'k>(
    verb: &'a [u8],
    keys: &'a [&'k [u8]],
    max_keys: usize,
    max_line: usize,
) -> impl Iterator<Item = &'a [&'k [u8]]> + 'a {
    let max_keys = max_keys.max(1);
    let mut rest = keys;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut line = verb.len() + 2;
        let mut taken = 0;
        for key in rest.iter().take(max_keys) {
            let longer = line.saturating_add(1).saturating_add(key.len());
            if taken > 0 && longer > max_line {
                break;
            }
            line = longer;
            taken += 1;
        }
        let (group, tail) = rest.split_at(taken);
        rest = tail;
        Some(group)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_len(verb: &[u8], group: &[&[u8]]) -> usize {
        verb.len() + group.iter().map(|k| k.len() + 1).sum::<usize>() + 2
    }

    #[test]
    fn groups_keep_every_key_in_order_within_both_limits() {
        let keys: Vec<Vec<u8>> = (0..300).map(|i| vec![b'k'; 1 + (i * 37) % 250]).collect();
        let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        for verb in [&b"get"[..], b"gets"] {
            for max_keys in [1, 7, 100, 1000] {
                for max_line in [0, 300, 1000, MAX_RETRIEVAL_LINE] {
                    let groups: Vec<_> =
                        retrieval_batches(verb, &keys, max_keys, max_line).collect();
                    assert_eq!(groups.concat(), keys, "every key once, in order");
                    for (i, group) in groups.iter().enumerate() {
                        assert!(!group.is_empty() && group.len() <= max_keys);
                        let len = line_len(verb, group);
                        assert!(len <= max_line || group.len() == 1, "{len} > {max_line}");
                        // Greedy: the next key would not have fitted.
                        if let Some(next) = groups.get(i + 1) {
                            let fuller = len + 1 + next[0].len();
                            assert!(group.len() == max_keys || fuller > max_line);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_hundred_longest_keys_fit_serverless_lines() {
        let key = [b'x'; 250];
        let keys: Vec<&[u8]> = vec![&key[..]; 100];
        let groups: Vec<_> = retrieval_batches(b"gets", &keys, 100, MAX_RETRIEVAL_LINE).collect();
        assert_eq!(groups.len(), 2, "25 KB of keys: two lines");
        assert!(groups
            .iter()
            .all(|g| line_len(b"gets", g) <= MAX_RETRIEVAL_LINE));
        assert_eq!(retrieval_batches(b"get", &[], 100, 10).count(), 0);
    }
}
