//! Property tests of the pure core: the config block round-trips, the decoder and the parser never
//! panic and keep their buffer contract on any input, and request encoding accepts exactly the
//! keys `validate_key` accepts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::BytesMut;
use memcached_autodiscovery::ProtocolError;
use memcached_autodiscovery::{ClusterConfig, Node};
use memcached_autodiscovery_proto::protocol::{
    decode, validate_key, Expect, Limits, Request, Response, Retrieval, StoreMode,
};
use memcached_autodiscovery_testkit::{encode_reply, ReplyKind};
use proptest::prelude::*;
use proptest::sample::Index;

// ---- Strategies ----

fn hostname() -> impl Strategy<Value = String> {
    prop_oneof![
        // Anything of letters, digits, `-` and `.`.
        "[A-Za-z0-9.-]{1,63}",
        // TLS-style names that begin with digits, like `0001.mycluster.xkf84q.use1...`.
        "[0-9]{1,4}(\\.[a-z0-9-]{1,12}){1,4}",
        // Memorystore puts the IP address in the hostname field.
        any::<Ipv4Addr>().prop_map(|ip| ip.to_string()),
    ]
}

fn ip() -> impl Strategy<Value = Option<IpAddr>> {
    prop_oneof![
        Just(None),
        any::<Ipv4Addr>().prop_map(|a| Some(IpAddr::V4(a))),
        any::<Ipv6Addr>().prop_map(|a| Some(IpAddr::V6(a))),
    ]
}

fn node() -> impl Strategy<Value = Node> {
    (hostname(), ip(), 1..=u16::MAX).prop_map(|(h, ip, port)| Node::new(h, ip, port))
}

fn cluster_config() -> impl Strategy<Value = ClusterConfig> {
    (any::<u64>(), prop::collection::vec(node(), 1..50))
        .prop_map(|(version, nodes)| ClusterConfig::new(version, nodes))
}

fn expect() -> impl Strategy<Value = Expect> {
    prop_oneof![
        (0usize..4).prop_map(|max| Expect::Values { max }),
        Just(Expect::Store),
        Just(Expect::Delete),
        Just(Expect::Arith),
        Just(Expect::Touch),
        Just(Expect::Ok),
        Just(Expect::Version),
        Just(Expect::Stats),
        Just(Expect::Config),
        Just(Expect::Meta),
        (0usize..4).prop_map(|max| Expect::MetaBatch { max }),
    ]
}

/// The default limits, small ones that the inputs actually reach, and limits set by hand to
/// their largest values.
fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        Just(Limits::default()),
        (0usize..40, 0usize..40)
            .prop_map(
                |(max_value_size, max_line_size)| Limits::new(max_value_size, max_line_size,)
            ),
        Just({
            let mut huge = Limits::default();
            huge.max_value_size = usize::MAX;
            huge.max_line_size = usize::MAX;
            huge
        }),
    ]
}

/// Well-formed replies, each with the `Expect` it answers.
fn valid_reply() -> impl Strategy<Value = (Vec<u8>, Expect)> {
    let fixed: Vec<(&'static [u8], Expect)> = vec![
        (b"VALUE k 5 3\r\nabc\r\nEND\r\n", Expect::Values { max: 1 }),
        (
            b"VALUE a 0 1 7\r\nx\r\nVALUE b 1 2 8\r\nyz\r\nEND\r\n",
            Expect::Values { max: 2 },
        ),
        (b"END\r\n", Expect::Values { max: 3 }),
        (b"STORED\r\n", Expect::Store),
        (b"NOT_STORED\r\n", Expect::Store),
        (b"EXISTS\r\n", Expect::Store),
        (b"NOT_FOUND\r\n", Expect::Delete),
        (b"DELETED\r\n", Expect::Delete),
        (b"TOUCHED\r\n", Expect::Touch),
        (b"18446744073709551615\r\n", Expect::Arith),
        (b"OK\r\n", Expect::Ok),
        (b"VERSION 1.6.18\r\n", Expect::Version),
        (b"STAT pid 1\r\nSTAT uptime 20\r\nEND\r\n", Expect::Stats),
        (
            b"CONFIG cluster 0 26\r\n2\nh1|10.0.0.1|1 h2||11211\n\r\nEND\r\n",
            Expect::Config,
        ),
        (b"END\r\n", Expect::Config),
        (b"ERROR\r\n", Expect::Config),
        (b"CLIENT_ERROR bad command line format\r\n", Expect::Store),
        (b"SERVER_ERROR out of memory\r\n", Expect::Values { max: 1 }),
        (b"VA 3 t60 c5 kfoo\r\nabc\r\n", Expect::Meta),
        (b"VA 0 c1 t-1 s0 W\r\n\r\n", Expect::Meta),
        (b"HD c5 ka O1\r\n", Expect::Meta),
        (b"EN kbWlzc2luZw== b\r\n", Expect::Meta),
        (b"NS\r\n", Expect::Meta),
        (b"CLIENT_ERROR invalid flag\r\n", Expect::Meta),
        (b"MN\r\n", Expect::MetaBatch { max: 0 }),
        (
            b"VA 2 kk2 O1\r\nhi\r\nNF O2\r\nMN\r\n",
            Expect::MetaBatch { max: 2 },
        ),
        (b"ERROR\r\nERROR\r\n", Expect::MetaBatch { max: 1 }),
    ];
    prop::sample::select(fixed).prop_map(|(w, e)| (w.to_vec(), e))
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Insert(Index, u8),
    Delete(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Mutation::Flip(i, bit)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        match *m {
            Mutation::Flip(i, bit) if !bytes.is_empty() => {
                let at = i.index(bytes.len());
                bytes[at] ^= 1 << bit;
            }
            Mutation::Insert(i, b) => {
                let at = i.index(bytes.len() + 1);
                bytes.insert(at, b);
            }
            Mutation::Delete(i) if !bytes.is_empty() => {
                let at = i.index(bytes.len());
                bytes.remove(at);
            }
            _ => {}
        }
    }
    bytes
}

/// Bytes that look like a config block often enough to reach deep into the parser.
fn config_like() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(b"0123456789|.:-_ \t\r\nabcxyz\xff".to_vec()),
        0..120,
    )
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Valid keys: printable, no space.
        "[!-~]{1,40}".prop_map(String::into_bytes),
        // UTF-8 keys are valid too.
        "[a-zé€]{1,20}".prop_map(String::into_bytes),
        // Around the 250-byte limit.
        (249usize..=251).prop_map(|n| vec![b'k'; n]),
        // Anything, including empty, control bytes, spaces and DEL.
        prop::collection::vec(any::<u8>(), 0..12),
    ]
}

// ---- The decoder's contract, checked on one input ----

/// Decodes `input` and checks the buffer contract; returns the outcome.
fn decode_checked(
    input: &[u8],
    expect: Expect,
    limits: &Limits,
) -> Result<Option<(Response, usize)>, ProtocolError> {
    let mut buf = BytesMut::from(input);
    let got = decode(&mut buf, expect, limits);
    match &got {
        Ok(Some((_, n))) => {
            assert!(
                *n > 0 && *n <= input.len(),
                "consumed {n} of {}",
                input.len()
            );
            assert_eq!(
                &buf[..],
                &input[*n..],
                "the buffer did not shrink by exactly {n}"
            );
        }
        Ok(None) | Err(_) => assert_eq!(&buf[..], input, "the buffer changed"),
    }
    got
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // (a) Round trips.

    #[test]
    fn encoded_block_parses_back(c in cluster_config()) {
        prop_assert_eq!(ClusterConfig::parse(&c.encode_block()), Ok(c));
    }

    #[test]
    fn encoded_replies_decode_and_parse_back(c in cluster_config()) {
        for (kind, expect) in [
            (ReplyKind::ConfigGet, Expect::Config),
            (ReplyKind::LegacyGet, Expect::Values { max: 1 }),
        ] {
            let wire = encode_reply(&c, kind);
            let got = decode_checked(&wire, expect, &Limits::default());
            let block = match got {
                Ok(Some((Response::Config(Some(b)), n))) if n == wire.len() => b,
                Ok(Some((Response::Values(mut items), n))) if n == wire.len() && items.len() == 1 => {
                    items.remove(0).value
                }
                other => panic!("{kind:?}: {other:?}"),
            };
            prop_assert_eq!(ClusterConfig::parse(&block), Ok(c.clone()));
        }
    }

    // (b) The decoder never panics and keeps its buffer contract.

    #[test]
    fn decode_survives_arbitrary_bytes(
        input in prop::collection::vec(any::<u8>(), 0..300),
        expect in expect(),
        limits in limits(),
    ) {
        let _ = decode_checked(&input, expect, &limits);
    }

    #[test]
    fn decode_survives_mutated_replies(
        (reply, right) in valid_reply(),
        other in expect(),
        mutations in prop::collection::vec(mutation(), 1..6),
        limits in limits(),
    ) {
        let input = mutate(reply, &mutations);
        for expect in [right, other] {
            let _ = decode_checked(&input, expect, &limits);
        }
    }

    #[test]
    fn decode_answers_from_the_bytes_of_its_reply_alone(
        (reply, expect) in valid_reply(),
        mutations in prop::collection::vec(mutation(), 0..3),
        tail in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        // Whatever follows a complete reply does not change it, and no shorter prefix of it is
        // complete.
        let input = mutate(reply, &mutations);
        let limits = Limits::default();
        if let Ok(Some((response, n))) = decode_checked(&input, expect, &limits) {
            let mut longer = input[..n].to_vec();
            longer.extend_from_slice(&tail);
            prop_assert_eq!(
                decode_checked(&longer, expect, &limits),
                Ok(Some((response, n)))
            );
            for cut in 0..n {
                prop_assert_eq!(decode_checked(&input[..cut], expect, &limits), Ok(None));
            }
        }
    }

    #[test]
    fn unmutated_replies_decode_whole((reply, expect) in valid_reply()) {
        let got = decode_checked(&reply, expect, &Limits::default());
        prop_assert!(matches!(got, Ok(Some((_, n))) if n == reply.len()), "{:?}", got);
    }

    // (c) The config parser never panics.

    #[test]
    fn parse_survives_arbitrary_bytes(input in prop::collection::vec(any::<u8>(), 0..300)) {
        check_parse(&input);
    }

    #[test]
    fn parse_survives_config_like_bytes(input in config_like()) {
        check_parse(&input);
    }

    #[test]
    fn parse_survives_mutated_blocks(
        c in cluster_config(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        check_parse(&mutate(c.encode_block(), &mutations));
    }

    // (d) Request encoding accepts exactly the keys validate_key accepts.

    #[test]
    fn retrieval_encodes_iff_every_key_is_valid(
        keys in prop::collection::vec(key(), 0..5),
        gets in any::<bool>(),
    ) {
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let all_valid = !keys.is_empty() && keys.iter().all(|k| validate_key(k).is_ok());
        let kind = if gets { Retrieval::Gets } else { Retrieval::Get };
        let request = Request::Retrieve { kind, keys: &refs };
        let mut buf = BytesMut::from(&b"version\r\n"[..]);
        let got = request.encode(&mut buf, &Limits::default());
        prop_assert_eq!(got.is_ok(), all_valid, "{:?}", got);
        if all_valid {
            let mut want = b"version\r\n".to_vec();
            want.extend_from_slice(if gets { b"gets" } else { b"get" });
            for k in &keys {
                want.push(b' ');
                want.extend_from_slice(k);
            }
            want.extend_from_slice(b"\r\n");
            prop_assert_eq!(&buf[..], &want[..]);
            prop_assert_eq!(got, Ok(Expect::Values { max: keys.len() }));
        } else {
            prop_assert_eq!(&buf[..], b"version\r\n");
        }
    }

    #[test]
    fn single_key_requests_encode_iff_the_key_is_valid(
        key in key(),
        value_len in 0usize..24,
        which in 0usize..6,
    ) {
        let limits = Limits::with_max_value_size(16);
        let value = vec![b'v'; value_len];
        let request = match which {
            0 => Request::Delete { key: &key },
            1 => Request::Touch { key: &key, exptime: 5 },
            2 => Request::Incr { key: &key, delta: 1 },
            3 => Request::Decr { key: &key, delta: 1 },
            4 => Request::Store { mode: StoreMode::Add, key: &key, flags: 0, exptime: 0, value: &value },
            _ => Request::Cas { key: &key, flags: 0, exptime: 0, value: &value, cas: 3 },
        };
        let key_ok = validate_key(&key).is_ok();
        let value_ok = which < 4 || value_len <= 16;
        let mut buf = BytesMut::from(&b"get a\r\n"[..]);
        let got = request.encode(&mut buf, &limits);
        prop_assert_eq!(got.is_ok(), key_ok && value_ok, "{:?}", got);
        match got {
            Ok(expect) => {
                prop_assert_eq!(expect, request.expect());
                prop_assert!(buf.len() > 7 && buf.ends_with(b"\r\n"));
                // The key goes on the wire exactly as given, right after the verb.
                let line = &buf[7..];
                let at = line.iter().position(|&b| b == b' ').unwrap() + 1;
                prop_assert_eq!(&line[at..at + key.len()], &key[..]);
            }
            Err(e) => {
                prop_assert_eq!(&buf[..], b"get a\r\n");
                if !key_ok {
                    prop_assert_eq!(Err(e), validate_key(&key));
                } else {
                    prop_assert_eq!(e, ProtocolError::ValueTooLarge { len: value_len, max: 16 });
                }
            }
        }
    }
}

/// Parses `input`; an error must point inside the input.
fn check_parse(input: &[u8]) {
    match ClusterConfig::parse(input) {
        Ok(c) => assert!(!c.nodes().is_empty()),
        Err(ProtocolError::ClusterConfig { offset, .. }) => {
            assert!(
                offset <= input.len(),
                "offset {offset} past {}",
                input.len()
            )
        }
        Err(other) => panic!("parse returned a non-config error: {other:?}"),
    }
}
