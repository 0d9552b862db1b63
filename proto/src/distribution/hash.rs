//! The exact 32-bit hash functions of the peer clients whose placement the modes reproduce.
//!
//! MD5 and SHA-384 come from the `md-5` and `sha2` crates and MurmurHash3 from the `murmur3`
//! crate; what no crate provides is written here: Jenkins' one-at-a-time and the 32-bit FNV-1a
//! of libmemcached and twemproxy (both read the key through a signed `char`, so every byte
//! of 0x80 or more enters sign-extended), Java's `String.hashCode` over UTF-16 code units, and
//! the character-based input that pymemcache gives MurmurHash3.
//!
//! Each function is pinned by the test values of the peers' own test suites (see the tests at
//! the end of this file) and, through the modes, by the placements of the real peers in
//! `tests/interop_vectors.rs`.

use md5::{Digest, Md5};
use sha2::Sha384;

/// Bytes `4j..4j+3` of a digest read as a little-endian `u32`: ketama's way of turning a digest
/// into points on the continuum.
#[inline]
fn le32(digest: &[u8], j: usize) -> u32 {
    u32::from_le_bytes([
        digest[4 * j],
        digest[4 * j + 1],
        digest[4 * j + 2],
        digest[4 * j + 3],
    ])
}

/// The ketama key hash: the first four bytes of MD5, little-endian (libmemcached, twemproxy
/// `hash: md5`, spymemcached `KETAMA_HASH`).
#[inline]
pub fn md5_32(bytes: &[u8]) -> u32 {
    le32(&Md5::digest(bytes), 0)
}

/// The four continuum points of one node string under MD5: bytes 0..16 of the digest as four
/// little-endian `u32`.
#[inline]
pub fn md5_points(bytes: &[u8]) -> [u32; 4] {
    let d = Md5::digest(bytes);
    [le32(&d, 0), le32(&d, 1), le32(&d, 2), le32(&d, 3)]
}

/// The key hash of the AWS ElastiCache Cluster Client for Java (1.2.0 and later): the first four
/// bytes of SHA-384, little-endian.
#[inline]
pub fn sha384_32(bytes: &[u8]) -> u32 {
    le32(&Sha384::digest(bytes), 0)
}

/// The four continuum points of one node string under SHA-384 (AWS Java client): bytes 0..16 of
/// the 48-byte digest as four little-endian `u32`; the other 32 bytes are not used.
#[inline]
pub fn sha384_points(bytes: &[u8]) -> [u32; 4] {
    let d = Sha384::digest(bytes);
    [le32(&d, 0), le32(&d, 1), le32(&d, 2), le32(&d, 3)]
}

/// A byte as C reads it through a signed `char` on x86-64, widened to `uint32_t`: 0x80..=0xFF
/// become 0xFFFFFF80..=0xFFFFFFFF.
#[inline]
fn signed(b: u8) -> u32 {
    b as i8 as i32 as u32
}

/// Jenkins' one-at-a-time hash as libmemcached computes it (the default key hash of
/// php-memcached): signed bytes, then the final avalanche.
pub fn one_at_a_time(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &b in bytes {
        h = h.wrapping_add(signed(b));
        h = h.wrapping_add(h << 10);
        h ^= h >> 6;
    }
    h = h.wrapping_add(h << 3);
    h ^= h >> 11;
    h.wrapping_add(h << 15)
}

/// The "fnv1a_64" key hash of twemproxy (and libmemcached): FNV-1a computed in 32 bits with the
/// 64-bit constants truncated (offset 0x84222325, prime 0x1b3), over signed bytes.
pub fn fnv1a_64_truncated(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x8422_2325;
    for &b in bytes {
        h ^= signed(b);
        h = h.wrapping_mul(0x0000_01b3);
    }
    h
}

/// Java's `String.hashCode()` of the key decoded as UTF-8, as an unsigned 32-bit value:
/// `h = 31 * h + unit` over UTF-16 code units (so a character outside the BMP counts as its two
/// surrogates). Invalid UTF-8 is decoded as Java's `new String(bytes, UTF_8)` would, each bad
/// sequence becoming U+FFFD.
pub fn java_string_hash(key: &[u8]) -> u32 {
    let mut h: u32 = 0;
    if key.is_ascii() {
        for &b in key {
            h = h.wrapping_mul(31).wrapping_add(u32::from(b));
        }
    } else {
        for unit in String::from_utf8_lossy(key).encode_utf16() {
            h = h.wrapping_mul(31).wrapping_add(u32::from(unit));
        }
    }
    h
}

/// The input pymemcache gives MurmurHash3 for a text: one byte per character, the code point
/// masked to its low 8 bits (`ord(ch) & 0xFF`), not the UTF-8 encoding. ASCII text is unchanged.
/// Bytes that are not valid UTF-8 (which a Python `str` cannot hold) are taken one per byte.
pub fn pymemcache_text_bytes(text: &[u8]) -> Vec<u8> {
    match std::str::from_utf8(text) {
        Ok(s) => s.chars().map(|c| (u32::from(c) & 0xFF) as u8).collect(),
        Err(_) => text.to_vec(),
    }
}

/// MurmurHash3 x86_32 with seed 0 of `first` followed by `second` (the `murmur3` crate).
#[inline]
pub fn murmur3_32_of(first: &[u8], second: &[u8]) -> u32 {
    use std::io::Read;
    // Reading from slices cannot fail.
    if second.is_empty() {
        murmur3::murmur3_32(&mut &first[..], 0).unwrap_or(0)
    } else {
        murmur3::murmur3_32(&mut first.chain(second), 0).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// pymemcache's `murmur3_32` of a text (seed 0), with the character masking of
    /// [`pymemcache_text_bytes`].
    fn pymemcache_murmur3(text: &[u8]) -> u32 {
        murmur3_32_of(&pymemcache_text_bytes(text), &[])
    }

    #[test]
    fn md5_matches_the_values_in_the_peers_test_suites() {
        assert_eq!(md5_32(b"dustin"), 1_781_780_484);
        assert_eq!(md5_32("é".as_bytes()), 2_546_851_174);
        // libketama's test value, also in spymemcached's unit tests.
        assert_eq!(md5_32(b"26"), 3_979_113_294);
        assert_eq!(md5_points(b"26")[0], 3_979_113_294);
    }

    #[test]
    fn sha384_matches_the_aws_java_client() {
        assert_eq!(sha384_32(b"26"), 1_576_085_614);
        assert_eq!(sha384_points(b"26")[0], 1_576_085_614);
    }

    #[test]
    fn one_at_a_time_and_fnv_read_signed_bytes() {
        // Reference: the unsigned-byte form gives other values for bytes >= 0x80 only.
        fn oaat_unsigned(bytes: &[u8]) -> u32 {
            let mut h: u32 = 0;
            for &b in bytes {
                h = h.wrapping_add(u32::from(b));
                h = h.wrapping_add(h << 10);
                h ^= h >> 6;
            }
            h = h.wrapping_add(h << 3);
            h ^= h >> 11;
            h.wrapping_add(h << 15)
        }
        assert_eq!(one_at_a_time(b"user:1"), oaat_unsigned(b"user:1"));
        assert_ne!(one_at_a_time("é".as_bytes()), oaat_unsigned("é".as_bytes()));
        assert_eq!(one_at_a_time(b""), 0);
        // Jenkins' published value for "a" (unsigned and signed agree on ASCII).
        assert_eq!(one_at_a_time(b"a"), 0xca2e_9442);
        assert_eq!(fnv1a_64_truncated(b""), 0x8422_2325);
        // 0x84222325 ^ 0x61 = 0x84222344, times 0x1b3 mod 2^32.
        assert_eq!(fnv1a_64_truncated(b"a"), 0x8422_2344u32.wrapping_mul(0x1b3));
        // A high byte enters as 0xFFFFFFxx.
        assert_eq!(
            fnv1a_64_truncated(&[0xE9]),
            (0x8422_2325u32 ^ 0xFFFF_FFE9).wrapping_mul(0x1b3)
        );
    }

    #[test]
    fn java_hash_uses_utf16_units() {
        assert_eq!(java_string_hash(b""), 0);
        // "hello".hashCode() == 99162322
        assert_eq!(java_string_hash(b"hello"), 99_162_322);
        // "é".hashCode() == 233 (one UTF-16 unit), not a sum over its two UTF-8 bytes.
        assert_eq!(java_string_hash("é".as_bytes()), 233);
        // U+1F600 is the surrogate pair D83D DE00: 31 * 0xD83D + 0xDE00.
        assert_eq!(java_string_hash("😀".as_bytes()), 31 * 0xD83D + 0xDE00);
        // Negative Java ints come out as their unsigned 32-bit value:
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE.
        assert_eq!(java_string_hash(b"polygenelubricants"), 0x8000_0000);
    }

    #[test]
    fn pymemcache_murmur3_masks_code_points() {
        assert_eq!(pymemcache_murmur3(b"127.0.0.1:11211-dustin"), 2_848_086_011);
        assert_eq!(pymemcache_text_bytes("é".as_bytes()), vec![0xE9]);
        assert_eq!(pymemcache_text_bytes("😀".as_bytes()), vec![0x00]);
        assert_eq!(pymemcache_text_bytes(&[0xFF, 0x41]), vec![0xFF, 0x41]);
        // Reference values of MurmurHash3 x86_32 with seed 0.
        assert_eq!(murmur3_32_of(b"", b""), 0);
        assert_eq!(murmur3_32_of(b"hello", b""), 0x248b_fa47);
        assert_eq!(murmur3_32_of(b"hel", b"lo"), 0x248b_fa47);
    }
}
