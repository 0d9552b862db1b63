//! Standard base64 (RFC 4648 alphabet `A–Z a–z 0–9 + /`, with `=` padding), the encoding of
//! binary keys in the meta protocol (`b` flag).
//!
//! Written here rather than taken from a crate: the meta protocol needs one small, fixed variant
//! (padded, standard alphabet, keys of at most 250 encoded bytes), and the decoder must be
//! strict so that a key read back compares equal to the key sent. Decoding refuses anything
//! memcached would not produce: a length that is not a multiple of 4, a byte outside the
//! alphabet, padding anywhere but at the end, and non-zero bits left over in the last group.
//!
//! ```
//! use memcached_autodiscovery_proto::protocol::meta::base64;
//! let mut out = Vec::new();
//! base64::encode(b"bin\0ry", &mut out);
//! assert_eq!(out, b"YmluAHJ5");
//! assert_eq!(base64::decode(b"YmluAHJ5").as_deref(), Some(&b"bin\0ry"[..]));
//! assert_eq!(base64::decode(b"YmluAHJ"), None);
//! ```

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `INVALID` marks a byte outside the alphabet; `=` is handled apart.
const INVALID: u8 = 0xff;

/// The 6-bit value of each byte of the alphabet.
const VALUES: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// The length of the encoding of `n` bytes: 4 bytes per started group of 3.
pub const fn encoded_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Appends the encoding of `input` to `out`.
pub fn encode(input: &[u8], out: &mut impl Extend<u8>) {
    let mut groups = input.chunks_exact(3);
    for g in &mut groups {
        let n = u32::from(g[0]) << 16 | u32::from(g[1]) << 8 | u32::from(g[2]);
        out.extend([
            ALPHABET[(n >> 18) as usize & 63],
            ALPHABET[(n >> 12) as usize & 63],
            ALPHABET[(n >> 6) as usize & 63],
            ALPHABET[n as usize & 63],
        ]);
    }
    match *groups.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.extend([
                ALPHABET[(n >> 18) as usize & 63],
                ALPHABET[(n >> 12) as usize & 63],
                b'=',
                b'=',
            ]);
        }
        [a, b] => {
            let n = u32::from(a) << 16 | u32::from(b) << 8;
            out.extend([
                ALPHABET[(n >> 18) as usize & 63],
                ALPHABET[(n >> 12) as usize & 63],
                ALPHABET[(n >> 6) as usize & 63],
                b'=',
            ]);
        }
        _ => {}
    }
}

/// The length `input` decodes to, or `None` if it is not strict, padded base64 (see the
/// module docs). Allocates nothing.
pub fn decoded_len(input: &[u8]) -> Option<usize> {
    if input.len() % 4 != 0 {
        return None;
    }
    let Some(last) = input.len().checked_sub(4).map(|at| &input[at..]) else {
        return Some(0);
    };
    let body = &input[..input.len() - 4];
    if body.iter().any(|&b| VALUES[usize::from(b)] == INVALID) {
        return None;
    }
    let v = |b: u8| VALUES[usize::from(b)];
    match *last {
        [a, b, b'=', b'='] => {
            // One byte: 8 of the 12 bits carried; the other 4 must be zero.
            (v(a) != INVALID && v(b) != INVALID && v(b) & 0x0f == 0)
                .then_some(body.len() / 4 * 3 + 1)
        }
        [a, b, c, b'='] => {
            (v(a) != INVALID && v(b) != INVALID && v(c) != INVALID && v(c) & 0x03 == 0)
                .then_some(body.len() / 4 * 3 + 2)
        }
        [a, b, c, d] => (v(a) != INVALID && v(b) != INVALID && v(c) != INVALID && v(d) != INVALID)
            .then_some(body.len() / 4 * 3 + 3),
        _ => None,
    }
}

/// Decodes `input`, or returns `None` if it is not strict, padded base64.
pub fn decode(input: &[u8]) -> Option<Vec<u8>> {
    let len = decoded_len(input)?;
    let mut out = Vec::with_capacity(len);
    for group in input.chunks_exact(4) {
        let v = |i: usize| match group[i] {
            b'=' => 0,
            b => u32::from(VALUES[usize::from(b)]),
        };
        let n = v(0) << 18 | v(1) << 12 | v(2) << 6 | v(3);
        out.extend_from_slice(&n.to_be_bytes()[1..]);
    }
    // Padding decodes as zero bits above; drop the bytes it stands for.
    out.truncate(len);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(input, &mut out);
        out
    }

    #[test]
    fn rfc_4648_test_vectors() {
        for (plain, coded) in [
            (&b""[..], &b""[..]),
            (b"f", b"Zg=="),
            (b"fo", b"Zm8="),
            (b"foo", b"Zm9v"),
            (b"foob", b"Zm9vYg=="),
            (b"fooba", b"Zm9vYmE="),
            (b"foobar", b"Zm9vYmFy"),
            (b"\xff\xfe\xfd", b"//79"),
            (b"missing", b"bWlzc2luZw=="),
        ] {
            assert_eq!(enc(plain), coded, "{plain:?}");
            assert_eq!(decode(coded).as_deref(), Some(plain), "{coded:?}");
            assert_eq!(encoded_len(plain.len()), coded.len());
        }
    }

    #[test]
    fn every_length_and_byte_round_trips() {
        let bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for len in 0..=bytes.len() {
            for start in [0, 1, 2, 100] {
                let plain = &bytes[start.min(bytes.len())..][..len.min(bytes.len() - start)];
                let coded = enc(plain);
                assert_eq!(coded.len(), encoded_len(plain.len()));
                assert_eq!(decoded_len(&coded), Some(plain.len()));
                assert_eq!(decode(&coded).as_deref(), Some(plain));
            }
        }
    }

    #[test]
    fn refuses_what_an_encoder_never_writes() {
        for bad in [
            &b"Zg="[..], // not a multiple of 4
            b"Zg",       // unpadded
            b"Z===",     // too much padding
            b"====",     // padding only
            b"Zg==Zg==", // padding in the middle
            b"Zh==",     // non-zero leftover bits (one byte)
            b"Zm9=",     // non-zero leftover bits (two bytes)
            b"Zm9v\r\n", // a line end
            b"Zm 9",     // a space
            b"Zm-_",     // the URL-safe alphabet
            b"Zm9\x80",  // a byte above ASCII
            b"=m9v",     // padding first
        ] {
            assert_eq!(decoded_len(bad), None, "{bad:?}");
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
