//! Property tests of the meta protocol:
//!
//! - encoding, checked by a reference parser of the request line written here: every flag set
//!   through the builders is on the line exactly once with its token, nothing else is, the key
//!   (base64 for binary keys) and the data block are intact, and a request is refused, leaving
//!   the buffer as it was, exactly when its key, opaque token or value is invalid;
//! - random replies, written as a server would in random flag order, decode back to the typed
//!   reply, alone, in batches, and cut at any points;
//! - decoding arbitrary and mutated bytes never panics and never consumes more than it was given
//!   (for every meta `Expect`).

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use memcached_autodiscovery_proto::error::ProtocolError;
use memcached_autodiscovery_proto::protocol::meta::{
    base64, encode_batch, ArithMode, MetaArithmetic, MetaDelete, MetaGet, MetaKey, MetaReply,
    MetaRequest, MetaSet, MetaStatus, ReturnFlags, SetMode, Ttl, MAX_BINARY_KEY_LEN,
};
use memcached_autodiscovery_proto::protocol::{
    decode, validate_key, ErrorReply, Expect, Limits, Response,
};
use proptest::prelude::*;
use proptest::sample::Index;

// ---- Requests ----

/// The flags a request line should carry: letter → token.
type Flags = BTreeMap<u8, Vec<u8>>;

/// One builder call: which (modulo the command's count) and a number for those that take one.
type Op = (u8, u64);

fn text(n: impl ToString) -> Vec<u8> {
    n.to_string().into_bytes()
}

fn build_get<'a>(
    key: MetaKey<'a>,
    ops: &[Op],
    opaque: Option<&'a [u8]>,
) -> (MetaRequest<'a>, Flags) {
    let mut r = MetaGet::new(key);
    let mut want = Flags::new();
    for &(op, n) in ops {
        let (letter, token) = match op % 14 {
            0 => (b'v', None),
            1 => (b'c', None),
            2 => (b'f', None),
            3 => (b'h', None),
            4 => (b'k', None),
            5 => (b'l', None),
            6 => (b's', None),
            7 => (b't', None),
            8 => (b'u', None),
            9 => (b'E', Some(text(n))),
            10 => (b'N', Some(text(n as u32))),
            11 => (b'R', Some(text(n as u32))),
            12 => (b'T', Some(text(n as u32))),
            _ => (b'v', None),
        };
        r = match letter {
            b'v' => r.value(),
            b'c' => r.cas(),
            b'f' => r.client_flags(),
            b'h' => r.hit_before(),
            b'k' => r.return_key(),
            b'l' => r.last_access(),
            b's' => r.size(),
            b't' => r.ttl(),
            b'u' => r.no_lru_bump(),
            b'E' => r.new_cas(n),
            b'N' => r.vivify(n as u32),
            b'R' => r.recache(n as u32),
            _ => r.touch(n as u32),
        };
        want.insert(letter, token.unwrap_or_default());
    }
    if let Some(o) = opaque {
        r = r.opaque(o);
        want.insert(b'O', o.to_vec());
    }
    (r.into(), want)
}

fn build_set<'a>(
    key: MetaKey<'a>,
    value: &'a [u8],
    ops: &[Op],
    opaque: Option<&'a [u8]>,
) -> (MetaRequest<'a>, Flags) {
    let mut r = MetaSet::new(key, value);
    let mut want = Flags::new();
    for &(op, n) in ops {
        match op % 10 {
            0 => {
                let (mode, token) = match n % 5 {
                    0 => (SetMode::Set, None),
                    1 => (SetMode::Add, Some(b'E')),
                    2 => (SetMode::Replace, Some(b'R')),
                    3 => (SetMode::Append, Some(b'A')),
                    _ => (SetMode::Prepend, Some(b'P')),
                };
                r = r.mode(mode);
                match token {
                    Some(t) => want.insert(b'M', vec![t]),
                    None => want.remove(&b'M'),
                };
            }
            1 => {
                r = r.client_flags(n as u32);
                want.insert(b'F', text(n as u32));
            }
            2 => {
                r = r.ttl(n as u32);
                want.insert(b'T', text(n as u32));
            }
            3 => {
                r = r.compare_cas(n);
                want.insert(b'C', text(n));
            }
            4 => {
                r = r.new_cas(n);
                want.insert(b'E', text(n));
            }
            5 => {
                r = r.invalidate();
                want.insert(b'I', vec![]);
            }
            6 => {
                r = r.vivify(n as u32);
                want.insert(b'N', text(n as u32));
            }
            7 => {
                r = r.return_cas();
                want.insert(b'c', vec![]);
            }
            _ => {
                r = r.return_key();
                want.insert(b'k', vec![]);
            }
        }
    }
    if let Some(o) = opaque {
        r = r.opaque(o);
        want.insert(b'O', o.to_vec());
    }
    (r.into(), want)
}

fn build_delete<'a>(
    key: MetaKey<'a>,
    ops: &[Op],
    opaque: Option<&'a [u8]>,
) -> (MetaRequest<'a>, Flags) {
    let mut r = MetaDelete::new(key);
    let mut want = Flags::new();
    for &(op, n) in ops {
        match op % 5 {
            0 => {
                r = r.compare_cas(n);
                want.insert(b'C', text(n));
            }
            1 => {
                r = r.new_cas(n);
                want.insert(b'E', text(n));
            }
            2 => {
                r = r.invalidate();
                want.insert(b'I', vec![]);
            }
            3 => {
                r = r.invalidate_with_ttl(n as u32);
                want.insert(b'I', vec![]);
                want.insert(b'T', text(n as u32));
            }
            _ => {
                r = r.return_key();
                want.insert(b'k', vec![]);
            }
        }
    }
    if let Some(o) = opaque {
        r = r.opaque(o);
        want.insert(b'O', o.to_vec());
    }
    (r.into(), want)
}

fn build_arith<'a>(
    key: MetaKey<'a>,
    ops: &[Op],
    opaque: Option<&'a [u8]>,
) -> (MetaRequest<'a>, Flags) {
    let mut r = MetaArithmetic::new(key);
    let mut want = Flags::new();
    for &(op, n) in ops {
        match op % 10 {
            0 => {
                if n % 2 == 0 {
                    r = r.mode(ArithMode::Incr);
                    want.remove(&b'M');
                } else {
                    r = r.mode(ArithMode::Decr);
                    want.insert(b'M', b"D".to_vec());
                }
            }
            1 => {
                r = r.delta(n);
                want.insert(b'D', text(n));
            }
            2 => {
                let (ttl, initial) = (n as u32, n.rotate_left(17));
                r = r.create_on_miss(ttl, initial);
                want.insert(b'N', text(ttl));
                want.insert(b'J', text(initial));
            }
            3 => {
                r = r.ttl(n as u32);
                want.insert(b'T', text(n as u32));
            }
            4 => {
                r = r.compare_cas(n);
                want.insert(b'C', text(n));
            }
            5 => {
                r = r.new_cas(n);
                want.insert(b'E', text(n));
            }
            6 => {
                r = r.return_value();
                want.insert(b'v', vec![]);
            }
            7 => {
                r = r.return_cas();
                want.insert(b'c', vec![]);
            }
            8 => {
                r = r.return_ttl();
                want.insert(b't', vec![]);
            }
            _ => {
                r = r.return_key();
                want.insert(b'k', vec![]);
            }
        }
    }
    if let Some(o) = opaque {
        r = r.opaque(o);
        want.insert(b'O', o.to_vec());
    }
    (r.into(), want)
}

/// A request line (and data block) as the reference parser reads it.
#[derive(Debug, PartialEq)]
struct Parsed {
    command: Vec<u8>,
    key: Vec<u8>,
    flags: Flags,
    value: Option<Vec<u8>>,
}

/// Reads one request from the front of `wire`; returns it and the rest. Panics on anything a
/// server would not parse as one request: a missing CRLF, a CR or LF inside the line, an empty
/// token, a repeated flag, a flag that is not a letter, a data block of the wrong length.
fn parse_request(wire: &[u8]) -> (Parsed, &[u8]) {
    let lf = wire.iter().position(|&b| b == b'\n').expect("a line end");
    assert!(lf > 0 && wire[lf - 1] == b'\r', "line ends with CRLF");
    let line = &wire[..lf - 1];
    assert!(!line.contains(&b'\r'), "no CR inside the line");
    let mut rest = &wire[lf + 1..];
    let mut tokens = line.split(|&b| b == b' ');
    let command = tokens.next().unwrap().to_vec();
    let key = tokens.next().expect("a key").to_vec();
    let len = (command == b"ms").then(|| {
        let t = tokens.next().expect("a data length");
        std::str::from_utf8(t)
            .unwrap()
            .parse::<usize>()
            .expect("a decimal length")
    });
    let mut flags = Flags::new();
    for t in tokens {
        assert!(!t.is_empty(), "empty token in {}", line.escape_ascii());
        assert!(t[0].is_ascii_alphabetic(), "flag letter");
        let dup = flags.insert(t[0], t[1..].to_vec());
        assert!(dup.is_none(), "flag {} repeated", t[0] as char);
    }
    let value = len.map(|n| {
        assert_eq!(&rest[n..n + 2], b"\r\n", "data block ends with CRLF");
        let v = rest[..n].to_vec();
        rest = &rest[n + 2..];
        v
    });
    (
        Parsed {
            command,
            key,
            flags,
            value,
        },
        rest,
    )
}

#[derive(Debug, Clone)]
struct Spec {
    command: u8,
    key: Vec<u8>,
    binary: bool,
    value: Vec<u8>,
    ops: Vec<Op>,
    opaque: Option<Vec<u8>>,
}

impl Spec {
    fn build(&self) -> (MetaRequest<'_>, Flags) {
        let key = if self.binary {
            MetaKey::Binary(&self.key)
        } else {
            MetaKey::Text(&self.key)
        };
        let opaque = self.opaque.as_deref();
        let (r, mut want) = match self.command % 4 {
            0 => build_get(key, &self.ops, opaque),
            1 => build_set(key, &self.value, &self.ops, opaque),
            2 => build_delete(key, &self.ops, opaque),
            _ => build_arith(key, &self.ops, opaque),
        };
        if self.binary {
            want.insert(b'b', vec![]);
        }
        (r, want)
    }

    fn command(&self) -> &'static [u8] {
        [&b"mg"[..], b"ms", b"md", b"ma"][usize::from(self.command % 4)]
    }

    /// The error encoding must give, checked in the order: key, opaque, value size.
    fn refusal(&self, limits: &Limits) -> Option<ProtocolError> {
        let key = if self.binary {
            MetaKey::Binary(&self.key)
        } else {
            MetaKey::Text(&self.key)
        };
        if let Err(e) = key.validate() {
            return Some(e);
        }
        if let Some(o) = &self.opaque {
            if o.is_empty() || o.len() > 31 || !o.iter().all(u8::is_ascii_graphic) {
                return Some(ProtocolError::InvalidOpaque { len: o.len() });
            }
        }
        (self.command % 4 == 1 && self.value.len() > limits.max_value_size).then_some(
            ProtocolError::ValueTooLarge {
                len: self.value.len(),
                max: limits.max_value_size,
            },
        )
    }
}

fn request_key() -> impl Strategy<Value = (Vec<u8>, bool)> {
    prop_oneof![
        4 => "[!-~]{1,30}".prop_map(|k| (k.into_bytes(), false)),
        1 => (249usize..=251).prop_map(|n| (vec![b'k'; n], false)),
        3 => prop::collection::vec(any::<u8>(), 1..40).prop_map(|k| (k, true)),
        1 => (MAX_BINARY_KEY_LEN - 1..=MAX_BINARY_KEY_LEN + 1).prop_map(|n| (vec![0xab; n], true)),
        // Anything, as text or binary: empty, spaces, control bytes.
        1 => (prop::collection::vec(any::<u8>(), 0..8), any::<bool>()),
    ]
}

fn opaque() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        3 => Just(None),
        4 => "[!-~]{1,31}".prop_map(|o| Some(o.into_bytes())),
        1 => "[!-~]{32}".prop_map(|o| Some(o.into_bytes())),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(Some),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<u8>(),
        request_key(),
        prop::collection::vec(any::<u8>(), 0..24),
        prop::collection::vec((any::<u8>(), any::<u64>()), 0..12),
        opaque(),
    )
        .prop_map(|(command, (key, binary), value, ops, opaque)| Spec {
            command,
            key,
            binary,
            value,
            ops,
            opaque,
        })
}

/// Checks one parsed request against its spec and the flags it should carry.
fn check_parsed(spec: &Spec, want: &Flags, parsed: &Parsed) {
    assert_eq!(parsed.command, spec.command());
    if spec.binary {
        assert_eq!(base64::decode(&parsed.key).as_deref(), Some(&spec.key[..]));
        assert!(parsed.key.len() <= 250);
    } else {
        assert_eq!(parsed.key, spec.key);
    }
    assert_eq!(&parsed.flags, want);
    assert_eq!(
        parsed.value.as_deref(),
        (spec.command % 4 == 1).then_some(&spec.value[..])
    );
}

// ---- Replies ----

/// A typed reply, any status but `MN`, with any return flags.
fn reply() -> impl Strategy<Value = MetaReply> {
    let status = prop::sample::select(vec![
        MetaStatus::Value,
        MetaStatus::Success,
        MetaStatus::Miss,
        MetaStatus::NotFound,
        MetaStatus::NotStored,
        MetaStatus::Exists,
    ]);
    let key = prop_oneof![
        Just(None),
        "[!-~]{1,40}".prop_map(|k| Some((k.into_bytes(), false))),
        prop::collection::vec(any::<u8>(), 1..=MAX_BINARY_KEY_LEN).prop_map(|k| Some((k, true))),
    ];
    let ttl = prop_oneof![Just(Ttl::Never), any::<u32>().prop_map(Ttl::Seconds)];
    let numbers = (
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(ttl),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<u32>()),
    );
    let marks = (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>());
    (
        status,
        numbers,
        key,
        proptest::option::of("[!-~]{0,32}"),
        marks,
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(
            |(status, (cas, cf, ttl, size, hit, la), key, opaque, (w, x, z, b), value)| {
                let mut f = ReturnFlags::default();
                f.cas = cas;
                f.client_flags = cf;
                f.ttl = ttl;
                f.size = size;
                f.hit_before = hit;
                f.last_access = la;
                f.win = w;
                f.stale = x;
                f.win_taken = z;
                match key {
                    Some((k, binary)) => {
                        f.key = Some(Bytes::from(k));
                        f.binary_key = binary;
                    }
                    None => f.binary_key = b,
                }
                f.opaque = opaque.map(|o| Bytes::from(o.into_bytes()));
                let value = (status == MetaStatus::Value).then(|| Bytes::from(value));
                MetaReply::new(status, f, value)
            },
        )
}

/// Writes `r` as a server would, its flags in the order `order` gives (a priority per flag).
fn write_reply(r: &MetaReply, order: &[u32], out: &mut Vec<u8>) {
    let f = &r.flags;
    let mut tokens: Vec<Vec<u8>> = Vec::new();
    let mut push = |t: Vec<u8>| tokens.push(t);
    if let Some(c) = f.cas {
        push(format!("c{c}").into_bytes());
    }
    if let Some(v) = f.client_flags {
        push(format!("f{v}").into_bytes());
    }
    match f.ttl {
        Some(Ttl::Never) => push(b"t-1".to_vec()),
        Some(Ttl::Seconds(s)) => push(format!("t{s}").into_bytes()),
        None => {}
    }
    if let Some(s) = f.size {
        push(format!("s{s}").into_bytes());
    }
    if let Some(k) = &f.key {
        let mut t = b"k".to_vec();
        if f.binary_key {
            base64::encode(k, &mut t);
        } else {
            t.extend_from_slice(k);
        }
        push(t);
    }
    if f.binary_key {
        push(b"b".to_vec());
    }
    if let Some(o) = &f.opaque {
        let mut t = b"O".to_vec();
        t.extend_from_slice(o);
        push(t);
    }
    if let Some(h) = f.hit_before {
        push(format!("h{}", u8::from(h)).into_bytes());
    }
    if let Some(l) = f.last_access {
        push(format!("l{l}").into_bytes());
    }
    for (on, letter) in [(f.win, "W"), (f.stale, "X"), (f.win_taken, "Z")] {
        if on {
            push(letter.as_bytes().to_vec());
        }
    }
    let mut keyed: Vec<(u32, Vec<u8>)> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| (order[i % order.len()], t))
        .collect();
    keyed.sort_by_key(|(p, _)| *p);
    out.extend_from_slice(r.status.code().as_bytes());
    if let Some(v) = &r.value {
        out.extend_from_slice(format!(" {}", v.len()).as_bytes());
    }
    for (_, t) in keyed {
        out.push(b' ');
        out.extend_from_slice(&t);
    }
    out.extend_from_slice(b"\r\n");
    if let Some(v) = &r.value {
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
}

fn batch_item() -> impl Strategy<Value = Result<MetaReply, ErrorReply>> {
    prop_oneof![
        6 => reply().prop_map(Ok),
        1 => Just(Err(ErrorReply::Error)),
        1 => "[a-z ]{0,20}".prop_map(|m| Err(ErrorReply::Client(m))),
        1 => "[a-z ]{0,20}".prop_map(|m| Err(ErrorReply::Server(m))),
    ]
}

fn write_item(item: &Result<MetaReply, ErrorReply>, order: &[u32], out: &mut Vec<u8>) {
    match item {
        Ok(r) => write_reply(r, order, out),
        Err(e) => {
            out.extend_from_slice(e.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

// ---- The decoder's contract ----

fn meta_expect() -> impl Strategy<Value = Expect> {
    prop_oneof![
        Just(Expect::Meta),
        (0usize..5).prop_map(|max| Expect::MetaBatch { max }),
    ]
}

fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        Just(Limits::default()),
        (0usize..40, 0usize..60).prop_map(|(v, l)| Limits::new(v, l)),
        Just({
            let mut huge = Limits::default();
            huge.max_value_size = usize::MAX;
            huge.max_line_size = usize::MAX;
            huge
        }),
    ]
}

/// Decodes `input` and checks the buffer contract: a complete reply consumed between 1 and all
/// of the input and exactly its bytes; "need more" and errors consumed nothing.
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
            assert_eq!(&buf[..], &input[*n..]);
        }
        Ok(None) | Err(_) => assert_eq!(&buf[..], input, "the buffer changed"),
    }
    got
}

/// Bytes that look like meta replies often enough to reach deep into the decoder.
fn meta_like() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            prop::sample::select(vec![
                &b"VA "[..],
                b"HD",
                b"EN",
                b"NF",
                b"NS",
                b"EX",
                b"MN",
                b"\r\n",
                b" ",
                b"c1",
                b"t-1",
                b"kfoo",
                b"kYQ==",
                b"b",
                b"W",
                b"X",
                b"Z",
                b"O7",
                b"3",
                b"0",
                b"abc",
                b"ERROR",
                b"CLIENT_ERROR x",
            ])
            .prop_map(<[u8]>::to_vec),
            any::<u8>().prop_map(|b| vec![b]),
        ],
        0..24,
    )
    .prop_map(|parts| parts.concat())
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn requests_encode_as_the_reference_parser_reads_them(spec in spec()) {
        let limits = Limits::with_max_value_size(16);
        let (request, want) = spec.build();
        let mut buf = BytesMut::from(&b"mn\r\n"[..]);
        match (request.encode(&mut buf, &limits), spec.refusal(&limits)) {
            (Ok(expect), None) => {
                prop_assert_eq!(expect, Expect::Meta);
                let (parsed, rest) = parse_request(&buf[4..]);
                prop_assert!(rest.is_empty());
                check_parsed(&spec, &want, &parsed);
            }
            (Err(got), Some(refusal)) => {
                prop_assert_eq!(got, refusal);
                prop_assert_eq!(&buf[..], b"mn\r\n");
            }
            (got, refusal) => prop_assert!(false, "encode {:?}, expected refusal {:?}", got, refusal),
        }
    }

    #[test]
    fn batches_encode_every_request_quiet_then_mn(specs in prop::collection::vec(spec(), 0..6)) {
        let limits = Limits::with_max_value_size(16);
        let built: Vec<(MetaRequest<'_>, Flags)> = specs.iter().map(Spec::build).collect();
        let requests: Vec<MetaRequest<'_>> = built.iter().map(|(r, _)| *r).collect();
        let refusal = specs.iter().find_map(|s| s.refusal(&limits));
        let mut buf = BytesMut::new();
        match encode_batch(&requests, &mut buf, &limits) {
            Ok(expect) => {
                prop_assert!(refusal.is_none());
                prop_assert_eq!(expect, Expect::MetaBatch { max: specs.len() });
                let mut rest = &buf[..];
                for (spec, (_, want)) in specs.iter().zip(&built) {
                    let (parsed, after) = parse_request(rest);
                    let mut want = want.clone();
                    want.insert(b'q', vec![]);
                    check_parsed(spec, &want, &parsed);
                    rest = after;
                }
                prop_assert_eq!(rest, b"mn\r\n");
            }
            Err(e) => {
                prop_assert_eq!(Some(e), refusal);
                prop_assert!(buf.is_empty());
            }
        }
    }

    #[test]
    fn random_replies_round_trip(r in reply(), order in prop::collection::vec(any::<u32>(), 16)) {
        let mut wire = Vec::new();
        write_reply(&r, &order, &mut wire);
        let got = decode_checked(&wire, Expect::Meta, &Limits::default());
        prop_assert_eq!(got, Ok(Some((Response::Meta(Box::new(r)), wire.len()))));
    }

    #[test]
    fn random_batches_round_trip_cut_anywhere(
        items in prop::collection::vec(batch_item(), 0..6),
        spare in 0usize..3,
        order in prop::collection::vec(any::<u32>(), 16),
        cuts in prop::collection::vec(any::<Index>(), 0..4),
    ) {
        let mut wire = Vec::new();
        for item in &items {
            write_item(item, &order, &mut wire);
        }
        wire.extend_from_slice(b"MN\r\n");
        let expect = Expect::MetaBatch { max: items.len() + spare };
        let want = Response::MetaBatch(items.clone());
        prop_assert_eq!(
            decode_checked(&wire, expect, &Limits::default()),
            Ok(Some((want.clone(), wire.len())))
        );
        // Fed in pieces: "need more" until the last byte, then the same batch.
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len())).collect();
        points.sort_unstable();
        let mut buf = BytesMut::new();
        let mut from = 0;
        for to in points.into_iter().chain([wire.len()]) {
            buf.extend_from_slice(&wire[from..to]);
            from = to;
            let got = decode(&mut buf, expect, &Limits::default());
            if to < wire.len() {
                prop_assert_eq!(got, Ok(None));
            } else {
                prop_assert_eq!(got, Ok(Some((want.clone(), wire.len()))));
            }
        }
        // One reply more than the batch holds is refused.
        if !items.is_empty() {
            let short = Expect::MetaBatch { max: items.len() - 1 };
            let got = decode_checked(&wire, short, &Limits::default());
            prop_assert!(
                matches!(got, Err(ProtocolError::TooManyReplies { .. }))
                    || (matches!(items.last(), Some(Err(ErrorReply::Error)))
                        && matches!(got, Ok(Some((Response::Error(ErrorReply::Error), _))))),
                "{:?}", got
            );
        }
    }

    #[test]
    fn a_value_block_not_followed_by_crlf_is_refused(
        r in reply(),
        order in prop::collection::vec(any::<u32>(), 16),
        end in any::<[u8; 2]>().prop_filter("not CRLF", |e| e != b"\r\n"),
        batch in any::<bool>(),
    ) {
        let Some(value) = r.value.clone() else {
            return Ok(());
        };
        let mut wire = Vec::new();
        write_reply(&r, &order, &mut wire);
        let at = wire.len() - 2;
        wire[at..].copy_from_slice(&end);
        let expect = if batch { Expect::MetaBatch { max: 1 } } else { Expect::Meta };
        prop_assert_eq!(
            decode_checked(&wire, expect, &Limits::default()),
            Err(ProtocolError::BadBlockEnd { len: value.len() })
        );
    }

    #[test]
    fn strict_prefixes_of_random_replies_need_more(
        r in reply(),
        order in prop::collection::vec(any::<u32>(), 16),
    ) {
        let mut wire = Vec::new();
        write_reply(&r, &order, &mut wire);
        for cut in 0..wire.len() {
            prop_assert_eq!(decode_checked(&wire[..cut], Expect::Meta, &Limits::default()), Ok(None));
        }
    }

    #[test]
    fn decode_survives_arbitrary_bytes(
        input in prop::collection::vec(any::<u8>(), 0..200),
        expect in meta_expect(),
        limits in limits(),
    ) {
        let _ = decode_checked(&input, expect, &limits);
    }

    #[test]
    fn decode_survives_meta_like_bytes(
        input in meta_like(),
        expect in meta_expect(),
        limits in limits(),
    ) {
        let _ = decode_checked(&input, expect, &limits);
    }

    #[test]
    fn decode_survives_mutated_replies(
        items in prop::collection::vec(batch_item(), 1..4),
        order in prop::collection::vec(any::<u32>(), 16),
        mutations in prop::collection::vec(mutation(), 1..6),
        expect in meta_expect(),
        limits in limits(),
    ) {
        let mut wire = Vec::new();
        for item in &items {
            write_item(item, &order, &mut wire);
        }
        wire.extend_from_slice(b"MN\r\n");
        let input = mutate(wire, &mutations);
        // Whatever it decodes, a longer input (more bytes after it) decodes the same way, and
        // no strict prefix of it is complete.
        if let Ok(Some((response, n))) = decode_checked(&input, expect, &limits) {
            for cut in 0..n {
                prop_assert_eq!(decode_checked(&input[..cut], expect, &limits), Ok(None));
            }
            let mut longer = input[..n].to_vec();
            longer.extend_from_slice(b"HD\r\n");
            prop_assert_eq!(decode_checked(&longer, expect, &limits), Ok(Some((response, n))));
        }
    }
}

#[test]
fn text_keys_accepted_are_exactly_those_validate_key_accepts() {
    // A sweep of every single byte as a one-byte key, text and binary.
    for b in 0..=255u8 {
        let key = [b];
        let mut buf = BytesMut::new();
        let text = MetaRequest::from(MetaGet::new(MetaKey::Text(&key)))
            .encode(&mut buf, &Limits::default());
        assert_eq!(text.is_ok(), validate_key(&key).is_ok(), "{b:#x}");
        let binary = MetaRequest::from(MetaGet::new(MetaKey::Binary(&key)))
            .encode(&mut buf, &Limits::default());
        assert!(binary.is_ok(), "{b:#x}");
    }
}
