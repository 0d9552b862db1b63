//! Request encoder against arbitrary keys, values and numbers.
//!
//! Encoding succeeds exactly when every key is a valid memcached key, the value fits the limit
//! and a `stats` argument is one printable word; a refused request leaves the buffer as it was;
//! an accepted one is one command line (the expected words separated by single spaces, no CR or
//! LF inside, CRLF at the end), followed for storage commands by the value and CRLF.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use memcached_autodiscovery_proto::protocol::{validate_key, Limits, Request, Retrieval, StoreMode};
use memcached_autodiscovery_proto::error::ProtocolError;

/// Bytes already in the output buffer, as if other requests were batched before this one.
const EARLIER: &[u8] = b"get earlier\r\n";

/// A byte string shaped to reach the interesting cases: raw bytes, one repeated byte (long keys
/// around the 250-byte limit), printable text, or printable text with one arbitrary byte in it.
fn blob(u: &mut Unstructured<'_>, max_len: usize) -> Vec<u8> {
    let len = u.int_in_range(0..=max_len).unwrap_or(0);
    let byte = |u: &mut Unstructured<'_>| u.arbitrary::<u8>().unwrap_or(b'k');
    let printable = |u: &mut Unstructured<'_>| {
        let raw = u.bytes(len.min(u.len())).unwrap_or(&[]);
        let mut text: Vec<u8> = raw.iter().map(|b| b'!' + b % 94).collect();
        text.resize(len, b'k');
        text
    };
    match u.int_in_range(0..=3u8).unwrap_or(0) {
        0 => u.bytes(len.min(u.len())).unwrap_or(&[]).to_vec(),
        1 => vec![byte(u); len],
        2 => printable(u),
        _ => {
            let mut text = printable(u);
            if !text.is_empty() {
                let at = u.int_in_range(0..=text.len() - 1).unwrap_or(0);
                text[at] = byte(u);
            }
            text
        }
    }
}

fn number<T: Default + for<'a> libfuzzer_sys::arbitrary::Arbitrary<'a>>(
    u: &mut Unstructured<'_>,
) -> T {
    u.arbitrary().unwrap_or_default()
}

/// memcached's key rule, written out independently of the crate: 1 to 250 bytes, none of them a
/// space, a control byte or DEL.
fn key_is_valid(key: &[u8]) -> bool {
    (1..=250).contains(&key.len()) && key.iter().all(|&b| b > b' ' && b != 0x7f)
}

fn decimal(n: impl ToString) -> Vec<u8> {
    n.to_string().into_bytes()
}

/// Everything the fuzzer chose; requests borrow from it.
struct Input {
    kind: u8,
    sub: u8,
    keys: Vec<Vec<u8>>,
    value: Vec<u8>,
    arg: Option<Vec<u8>>,
    flags: u32,
    exptime: u32,
    big: u64,
    delay: Option<u32>,
    limits: Limits,
}

fn read_input(data: &[u8]) -> Input {
    let mut u = Unstructured::new(data);
    let kind = u.int_in_range(0..=11u8).unwrap_or(0);
    let sub = number::<u8>(&mut u);
    let key_count = if kind == 0 {
        u.int_in_range(0..=4usize).unwrap_or(1)
    } else {
        1
    };
    let keys = (0..key_count).map(|_| blob(&mut u, 260)).collect();
    let max_value_size = u.int_in_range(0..=300usize).unwrap_or(0);
    let value = blob(&mut u, 320);
    let arg = number::<bool>(&mut u).then(|| blob(&mut u, 24));
    let flags = number(&mut u);
    let exptime = number(&mut u);
    let big = number(&mut u);
    let delay = number(&mut u);
    Input {
        kind,
        sub,
        keys,
        value,
        arg,
        flags,
        exptime,
        big,
        delay,
        limits: Limits::with_max_value_size(max_value_size),
    }
}

/// The request, the words its command line must hold, and its data block if it has one.
fn build<'a>(
    input: &'a Input,
    key_slices: &'a [&'a [u8]],
) -> (Request<'a>, Vec<Vec<u8>>, Option<&'a [u8]>) {
    // Only a retrieval may have no key at all.
    let key = input.keys.first().map_or(&[][..], Vec::as_slice);
    let word = |w: &str| w.as_bytes().to_vec();
    match input.kind {
        0 => {
            let (kind, verb, touch) = match input.sub % 4 {
                0 => (Retrieval::Get, "get", None),
                1 => (Retrieval::Gets, "gets", None),
                2 => (Retrieval::Gat(input.exptime), "gat", Some(input.exptime)),
                _ => (Retrieval::Gats(input.exptime), "gats", Some(input.exptime)),
            };
            let mut words = vec![word(verb)];
            words.extend(touch.map(decimal));
            words.extend(key_slices.iter().map(|k| k.to_vec()));
            let request = Request::Retrieve {
                kind,
                keys: key_slices,
            };
            (request, words, None)
        }
        1 | 2 => {
            let (request, verb, cas) = if input.kind == 2 {
                let request = Request::Cas {
                    key,
                    flags: input.flags,
                    exptime: input.exptime,
                    value: &input.value,
                    cas: input.big,
                };
                (request, "cas", Some(input.big))
            } else {
                let (mode, verb) = match input.sub % 5 {
                    0 => (StoreMode::Set, "set"),
                    1 => (StoreMode::Add, "add"),
                    2 => (StoreMode::Replace, "replace"),
                    3 => (StoreMode::Append, "append"),
                    _ => (StoreMode::Prepend, "prepend"),
                };
                let request = Request::Store {
                    mode,
                    key,
                    flags: input.flags,
                    exptime: input.exptime,
                    value: &input.value,
                };
                (request, verb, None)
            };
            let mut words = vec![
                word(verb),
                key.to_vec(),
                decimal(input.flags),
                decimal(input.exptime),
                decimal(input.value.len()),
            ];
            words.extend(cas.map(decimal));
            (request, words, Some(&input.value[..]))
        }
        3 => (
            Request::Delete { key },
            vec![word("delete"), key.to_vec()],
            None,
        ),
        4 | 5 => {
            let delta = input.big;
            let (request, verb) = if input.kind == 4 {
                (Request::Incr { key, delta }, "incr")
            } else {
                (Request::Decr { key, delta }, "decr")
            };
            (
                request,
                vec![word(verb), key.to_vec(), decimal(delta)],
                None,
            )
        }
        6 => (
            Request::Touch {
                key,
                exptime: input.exptime,
            },
            vec![word("touch"), key.to_vec(), decimal(input.exptime)],
            None,
        ),
        7 => {
            let mut words = vec![word("flush_all")];
            words.extend(input.delay.map(decimal));
            (Request::FlushAll { delay: input.delay }, words, None)
        }
        8 => (Request::Version, vec![word("version")], None),
        9 => {
            let arg = input.arg.as_deref();
            let mut words = vec![word("stats")];
            words.extend(arg.map(<[u8]>::to_vec));
            (Request::Stats { arg }, words, None)
        }
        10 => (
            Request::ConfigGetCluster,
            vec![word("config"), word("get"), word("cluster")],
            None,
        ),
        _ => (
            Request::LegacyConfigGet,
            vec![word("get"), word("AmazonElastiCache:cluster")],
            None,
        ),
    }
}

/// Why the request must be refused, if it must.
fn expected_refusal(request: &Request<'_>, limits: &Limits) -> Option<&'static str> {
    let keys: Vec<&[u8]> = match *request {
        Request::Retrieve { keys, .. } => keys.to_vec(),
        Request::Store { key, .. }
        | Request::Cas { key, .. }
        | Request::Delete { key }
        | Request::Incr { key, .. }
        | Request::Decr { key, .. }
        | Request::Touch { key, .. } => vec![key],
        _ => Vec::new(),
    };
    for key in &keys {
        assert_eq!(
            validate_key(key).is_ok(),
            key_is_valid(key),
            "validate_key disagrees with the key rule on {key:?}"
        );
    }
    if matches!(request, Request::Retrieve { .. }) && keys.is_empty() {
        return Some("key");
    }
    if !keys.iter().all(|k| key_is_valid(k)) {
        return Some("key");
    }
    match *request {
        Request::Store { value, .. } | Request::Cas { value, .. }
            if value.len() > limits.max_value_size =>
        {
            Some("value")
        }
        // A stats group is one printable word of any length.
        Request::Stats { arg: Some(arg) }
            if arg.is_empty() || arg.iter().any(|&b| b <= b' ' || b == 0x7f) =>
        {
            Some("argument")
        }
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let input = read_input(data);
    let key_slices: Vec<&[u8]> = input.keys.iter().map(Vec::as_slice).collect();
    let (request, words, body) = build(&input, &key_slices);
    let refusal = expected_refusal(&request, &input.limits);

    let mut buf = BytesMut::from(EARLIER);
    let result = request.encode(&mut buf, &input.limits);
    let expect = match (result, refusal) {
        (Err(e), Some(why)) => {
            let fits = match e {
                ProtocolError::InvalidKey(_) => why == "key",
                ProtocolError::ValueTooLarge { len, max } => {
                    why == "value" && len == input.value.len() && max == input.limits.max_value_size
                }
                ProtocolError::InvalidArgument => why == "argument",
                _ => false,
            };
            assert!(
                fits,
                "refused for the wrong reason: {e:?}, expected a bad {why}"
            );
            assert_eq!(&buf[..], EARLIER, "a refused request changed the buffer");
            return;
        }
        (Err(e), None) => panic!("{request:?} refused: {e:?}"),
        (Ok(_), Some(why)) => panic!("{request:?} accepted with a bad {why}"),
        (Ok(expect), None) => expect,
    };
    assert_eq!(expect, request.expect());

    assert!(buf.starts_with(EARLIER), "earlier bytes changed");
    let out = &buf[EARLIER.len()..];
    let line_end = out
        .windows(2)
        .position(|w| w == b"\r\n")
        .expect("no CRLF after the command line");
    let line = &out[..line_end];
    assert!(
        !line.iter().any(|&b| b == b'\r' || b == b'\n'),
        "CR or LF inside the command line {line:?}"
    );
    let got: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let want: Vec<&[u8]> = words.iter().map(Vec::as_slice).collect();
    assert_eq!(got, want, "command line words");

    let rest = &out[line_end + 2..];
    match body {
        Some(value) => {
            assert_eq!(rest.len(), value.len() + 2, "data block length");
            assert_eq!(&rest[..value.len()], value);
            assert_eq!(&rest[value.len()..], b"\r\n");
        }
        None => assert!(
            rest.is_empty(),
            "bytes after a command without a data block"
        ),
    }
});
