//! Meta request encoding against arbitrary keys, tokens, values and builder calls.
//!
//! Encoding succeeds exactly when the key is valid (text: 1 to 250 bytes, no space, control
//! byte or DEL; binary: 1 to 186 bytes), the opaque token is 1 to 31 printable bytes and a set's
//! value fits the limit; a refused request (or batch) leaves the buffer as it was; an accepted
//! one is one command line that a server splits into exactly the flags the builder calls asked
//! for (each once, last call winning), with the key intact (base64 for a binary key, within 250
//! bytes), followed for `ms` by the value and CRLF. A batch is the same lines, each with `q`,
//! then `mn`.
#![no_main]

use std::collections::BTreeMap;

use bytes::BytesMut;
use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use memcached_autodiscovery_proto::protocol::meta::{
    base64, encode_batch, ArithMode, MetaArithmetic, MetaDelete, MetaGet, MetaKey, MetaRequest,
    MetaSet, SetMode,
};
use memcached_autodiscovery_proto::protocol::{Expect, Limits};

/// Bytes already in the output buffer, as if other requests were batched before this one.
const EARLIER: &[u8] = b"mn\r\n";

type Flags = BTreeMap<u8, Vec<u8>>;

fn blob(u: &mut Unstructured<'_>, max_len: usize) -> Vec<u8> {
    let len = u.int_in_range(0..=max_len).unwrap_or(0);
    match u.int_in_range(0..=2u8).unwrap_or(0) {
        0 => u.bytes(len.min(u.len())).unwrap_or(&[]).to_vec(),
        1 => vec![u.arbitrary::<u8>().unwrap_or(b'k'); len],
        _ => {
            let raw = u.bytes(len.min(u.len())).unwrap_or(&[]);
            let mut text: Vec<u8> = raw.iter().map(|b| b'!' + b % 94).collect();
            text.resize(len, b'k');
            text
        }
    }
}

struct Input {
    command: u8,
    key: Vec<u8>,
    binary: bool,
    value: Vec<u8>,
    opaque: Option<Vec<u8>>,
    ops: Vec<(u8, u64)>,
    limits: Limits,
}

fn read_input(data: &[u8]) -> Input {
    let mut u = Unstructured::new(data);
    let command = u.int_in_range(0..=3u8).unwrap_or(0);
    let binary = u.arbitrary().unwrap_or(false);
    let key = blob(&mut u, 260);
    let value = blob(&mut u, 40);
    let opaque = u
        .arbitrary::<bool>()
        .unwrap_or(false)
        .then(|| blob(&mut u, 34));
    let mut ops = Vec::new();
    for _ in 0..u.int_in_range(0..=12usize).unwrap_or(0) {
        ops.push((u.arbitrary().unwrap_or(0), u.arbitrary().unwrap_or(0)));
    }
    let limits = Limits::with_max_value_size(u.int_in_range(0..=48usize).unwrap_or(16));
    Input {
        command,
        key,
        binary,
        value,
        opaque,
        ops,
        limits,
    }
}

fn text(n: impl ToString) -> Vec<u8> {
    n.to_string().into_bytes()
}

/// The request the input describes, and the flags its line must carry.
fn build(input: &Input) -> (MetaRequest<'_>, Flags) {
    let key = if input.binary {
        MetaKey::Binary(&input.key)
    } else {
        MetaKey::Text(&input.key)
    };
    let mut want = Flags::new();
    let put = |want: &mut Flags, letter: u8, token: Vec<u8>| {
        want.insert(letter, token);
    };
    let request: MetaRequest<'_> = match input.command {
        0 => {
            let mut r = MetaGet::new(key);
            for &(op, n) in &input.ops {
                r = match op % 13 {
                    0 => {
                        put(&mut want, b'v', vec![]);
                        r.value()
                    }
                    1 => {
                        put(&mut want, b'c', vec![]);
                        r.cas()
                    }
                    2 => {
                        put(&mut want, b'f', vec![]);
                        r.client_flags()
                    }
                    3 => {
                        put(&mut want, b'h', vec![]);
                        r.hit_before()
                    }
                    4 => {
                        put(&mut want, b'k', vec![]);
                        r.return_key()
                    }
                    5 => {
                        put(&mut want, b'l', vec![]);
                        r.last_access()
                    }
                    6 => {
                        put(&mut want, b's', vec![]);
                        r.size()
                    }
                    7 => {
                        put(&mut want, b't', vec![]);
                        r.ttl()
                    }
                    8 => {
                        put(&mut want, b'u', vec![]);
                        r.no_lru_bump()
                    }
                    9 => {
                        put(&mut want, b'E', text(n));
                        r.new_cas(n)
                    }
                    10 => {
                        put(&mut want, b'N', text(n as u32));
                        r.vivify(n as u32)
                    }
                    11 => {
                        put(&mut want, b'R', text(n as u32));
                        r.recache(n as u32)
                    }
                    _ => {
                        put(&mut want, b'T', text(n as u32));
                        r.touch(n as u32)
                    }
                };
            }
            if let Some(o) = &input.opaque {
                put(&mut want, b'O', o.clone());
                r = r.opaque(o);
            }
            r.into()
        }
        1 => {
            let mut r = MetaSet::new(key, &input.value);
            for &(op, n) in &input.ops {
                r = match op % 9 {
                    0 => {
                        let (mode, token) = [
                            (SetMode::Set, None),
                            (SetMode::Add, Some(b'E')),
                            (SetMode::Replace, Some(b'R')),
                            (SetMode::Append, Some(b'A')),
                            (SetMode::Prepend, Some(b'P')),
                        ][(n % 5) as usize];
                        match token {
                            Some(t) => put(&mut want, b'M', vec![t]),
                            None => {
                                want.remove(&b'M');
                            }
                        }
                        r.mode(mode)
                    }
                    1 => {
                        put(&mut want, b'F', text(n as u32));
                        r.client_flags(n as u32)
                    }
                    2 => {
                        put(&mut want, b'T', text(n as u32));
                        r.ttl(n as u32)
                    }
                    3 => {
                        put(&mut want, b'C', text(n));
                        r.compare_cas(n)
                    }
                    4 => {
                        put(&mut want, b'E', text(n));
                        r.new_cas(n)
                    }
                    5 => {
                        put(&mut want, b'I', vec![]);
                        r.invalidate()
                    }
                    6 => {
                        put(&mut want, b'N', text(n as u32));
                        r.vivify(n as u32)
                    }
                    7 => {
                        put(&mut want, b'c', vec![]);
                        r.return_cas()
                    }
                    _ => {
                        put(&mut want, b'k', vec![]);
                        r.return_key()
                    }
                };
            }
            if let Some(o) = &input.opaque {
                put(&mut want, b'O', o.clone());
                r = r.opaque(o);
            }
            r.into()
        }
        2 => {
            let mut r = MetaDelete::new(key);
            for &(op, n) in &input.ops {
                r = match op % 5 {
                    0 => {
                        put(&mut want, b'C', text(n));
                        r.compare_cas(n)
                    }
                    1 => {
                        put(&mut want, b'E', text(n));
                        r.new_cas(n)
                    }
                    2 => {
                        put(&mut want, b'I', vec![]);
                        r.invalidate()
                    }
                    3 => {
                        put(&mut want, b'I', vec![]);
                        put(&mut want, b'T', text(n as u32));
                        r.invalidate_with_ttl(n as u32)
                    }
                    _ => {
                        put(&mut want, b'k', vec![]);
                        r.return_key()
                    }
                };
            }
            if let Some(o) = &input.opaque {
                put(&mut want, b'O', o.clone());
                r = r.opaque(o);
            }
            r.into()
        }
        _ => {
            let mut r = MetaArithmetic::new(key);
            for &(op, n) in &input.ops {
                r = match op % 10 {
                    0 if n % 2 == 0 => {
                        want.remove(&b'M');
                        r.mode(ArithMode::Incr)
                    }
                    0 => {
                        put(&mut want, b'M', b"D".to_vec());
                        r.mode(ArithMode::Decr)
                    }
                    1 => {
                        put(&mut want, b'D', text(n));
                        r.delta(n)
                    }
                    2 => {
                        put(&mut want, b'N', text(n as u32));
                        put(&mut want, b'J', text(n >> 7));
                        r.create_on_miss(n as u32, n >> 7)
                    }
                    3 => {
                        put(&mut want, b'T', text(n as u32));
                        r.ttl(n as u32)
                    }
                    4 => {
                        put(&mut want, b'C', text(n));
                        r.compare_cas(n)
                    }
                    5 => {
                        put(&mut want, b'E', text(n));
                        r.new_cas(n)
                    }
                    6 => {
                        put(&mut want, b'v', vec![]);
                        r.return_value()
                    }
                    7 => {
                        put(&mut want, b'c', vec![]);
                        r.return_cas()
                    }
                    8 => {
                        put(&mut want, b't', vec![]);
                        r.return_ttl()
                    }
                    _ => {
                        put(&mut want, b'k', vec![]);
                        r.return_key()
                    }
                };
            }
            if let Some(o) = &input.opaque {
                put(&mut want, b'O', o.clone());
                r = r.opaque(o);
            }
            r.into()
        }
    };
    if input.binary {
        want.insert(b'b', vec![]);
    }
    (request, want)
}

/// The validity rule, written out independently of the crate.
fn accepted(input: &Input) -> bool {
    let key_ok = if input.binary {
        (1..=186).contains(&input.key.len())
    } else {
        (1..=250).contains(&input.key.len()) && input.key.iter().all(|&b| b > b' ' && b != 0x7f)
    };
    let opaque_ok = input.opaque.as_ref().is_none_or(|o| {
        (1..=31).contains(&o.len()) && o.iter().all(|&b| (b'!'..=b'~').contains(&b))
    });
    let value_ok = input.command != 1 || input.value.len() <= input.limits.max_value_size;
    key_ok && opaque_ok && value_ok
}

/// Reads one request from the front of `wire` as a server splits it, checks it against the
/// input and the flags it must carry, and returns the rest.
fn check_request<'w>(wire: &'w [u8], input: &Input, want: &Flags) -> &'w [u8] {
    let lf = wire.iter().position(|&b| b == b'\n').expect("a line end");
    assert!(lf > 0 && wire[lf - 1] == b'\r');
    let line = &wire[..lf - 1];
    assert!(!line.contains(&b'\r'));
    let mut rest = &wire[lf + 1..];
    let mut tokens = line.split(|&b| b == b' ');
    let command = tokens.next().unwrap();
    assert_eq!(
        command,
        [&b"mg"[..], b"ms", b"md", b"ma"][usize::from(input.command)]
    );
    let key = tokens.next().expect("a key");
    assert!(key.len() <= 250);
    if input.binary {
        assert_eq!(base64::decode(key).as_deref(), Some(&input.key[..]));
    } else {
        assert_eq!(key, &input.key[..]);
    }
    if input.command == 1 {
        let len = tokens.next().expect("a length");
        assert_eq!(len, input.value.len().to_string().as_bytes());
    }
    let mut flags = Flags::new();
    for t in tokens {
        assert!(!t.is_empty() && t[0].is_ascii_alphabetic());
        assert!(
            flags.insert(t[0], t[1..].to_vec()).is_none(),
            "flag repeated"
        );
    }
    assert_eq!(&flags, want);
    if input.command == 1 {
        let n = input.value.len();
        assert_eq!(&rest[..n], &input.value[..]);
        assert_eq!(&rest[n..n + 2], b"\r\n");
        rest = &rest[n + 2..];
    }
    rest
}

fuzz_target!(|data: &[u8]| {
    let input = read_input(data);
    let (request, want) = build(&input);
    let ok = accepted(&input);

    let mut buf = BytesMut::from(EARLIER);
    match request.encode(&mut buf, &input.limits) {
        Ok(expect) => {
            assert!(ok, "accepted an invalid request");
            assert_eq!(expect, Expect::Meta);
            let rest = check_request(&buf[EARLIER.len()..], &input, &want);
            assert!(rest.is_empty());
        }
        Err(_) => {
            assert!(!ok, "refused a valid request");
            assert_eq!(&buf[..], EARLIER);
        }
    }

    // The same request twice in a quiet batch.
    let mut buf = BytesMut::from(EARLIER);
    match encode_batch(&[request, request], &mut buf, &input.limits) {
        Ok(expect) => {
            assert!(ok);
            assert_eq!(expect, Expect::MetaBatch { max: 2 });
            let mut quiet = want.clone();
            quiet.insert(b'q', vec![]);
            let mut rest = &buf[EARLIER.len()..];
            for _ in 0..2 {
                rest = check_request(rest, &input, &quiet);
            }
            assert_eq!(rest, b"mn\r\n");
        }
        Err(_) => {
            assert!(!ok);
            assert_eq!(&buf[..], EARLIER);
        }
    }
});
