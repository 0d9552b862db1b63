//! Micro-benchmarks of the pure protocol core: reply decoding and request encoding, for the
//! text protocol (groups `decode`, `encode`) and the meta protocol (`meta_decode`,
//! `meta_encode`; run them alone with `cargo bench --bench codec -- meta`).
//!
//! What is timed. Decoding consumes its input buffer, so every decode benchmark gets a fresh
//! copy of the reply per iteration, made in an untimed setup step (`batched` below, which works
//! like criterion's `iter_batched`): allocating and filling the input is not timed, and neither
//! is freeing it (the emptied buffer, which still owns the input's storage, is handed back and
//! dropped after the clock is read). The setup also puts the copy in the state of a live
//! connection's read buffer (`live_buffer`): `BytesMut` switches its storage to a shared,
//! reference-counted form on the first split, with one small allocation, and a connection pays
//! that once per buffer, not once per reply.
//!
//! The timed part is `decode` followed by dropping the decoded reply, as a connection hands each
//! reply on and the caller drops it: scanning the header lines, checking sizes, splitting the
//! reply's bytes off the buffer, building the `Response` (its `Vec` of items and zero-copy
//! `Bytes` slices of keys and values), and freeing that `Vec`. Replies are dropped inside the
//! timing rather than kept to the end of the batch because thousands of live replies push the
//! allocator off its fast path, and the benchmark would then measure heap churn that a
//! connection, which frees each reply soon, does not have.
//!
//! Encoding writes into a buffer that is allocated once, outside the timing, and cleared at the
//! start of every iteration, as a connection's write buffer is reused between batches.
//!
//! The clock is wall time. With `BENCH_CLOCK=cpu` it is the benchmark thread's own on-CPU time
//! instead (Linux, `CLOCK_THREAD_CPUTIME_ID`), which time spent running other processes on a busy
//! shared machine does not inflate.

#[path = "support/clock.rs"]
mod clock;

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use clock::{looped, Clock};
use criterion::{criterion_group, criterion_main, Bencher, Criterion, Throughput};
use memcached_autodiscovery_proto::protocol::meta::{encode_batch, MetaGet, MetaRequest, MetaSet};
use memcached_autodiscovery_proto::protocol::{
    decode, Expect, Limits, Request, Response, Retrieval, StoreMode,
};

/// A 10-byte key, as an application might use.
const KEY: &[u8] = b"user:12345";

/// Times `routine` on inputs made by `setup`, `chunk` inputs at a time; only the calls of
/// `routine` are inside the clock readings, and its outputs are dropped after them.
fn batched<I, O>(
    b: &mut Bencher<'_>,
    chunk: u64,
    mut setup: impl FnMut() -> I,
    mut routine: impl FnMut(I) -> O,
) {
    b.iter_custom(|iters| {
        let clock = Clock::from_env();
        let mut timed = 0;
        let mut left = iters;
        while left > 0 {
            let n = left.min(chunk);
            let inputs: Vec<I> = (0..n).map(|_| setup()).collect();
            let mut outputs = Vec::with_capacity(n as usize);
            let start = clock.now();
            for input in inputs {
                outputs.push(routine(input));
            }
            timed += clock.now() - start;
            drop(black_box(outputs));
            left -= n;
        }
        Duration::from_nanos(timed)
    })
}

/// A copy of `template` in the state of a connection's read buffer after its first reply: its
/// storage already shared, so that splitting a reply off does not allocate.
fn live_buffer(template: &BytesMut) -> BytesMut {
    let mut buf = template.clone();
    drop(buf.split_to(0));
    buf
}

fn get_hit_reply(value_len: usize) -> Vec<u8> {
    let mut reply = b"VALUE ".to_vec();
    reply.extend_from_slice(KEY);
    reply.extend_from_slice(format!(" 0 {value_len}\r\n").as_bytes());
    reply.extend((0..value_len).map(|i| b'a' + (i % 26) as u8));
    reply.extend_from_slice(b"\r\nEND\r\n");
    reply
}

fn bench_decode(c: &mut Criterion) {
    let limits = Limits::default();
    let one_key = Expect::Values { max: 1 };
    let decode_one = |mut buf: BytesMut| {
        let reply = decode(black_box(&mut buf), one_key, &limits).unwrap();
        drop(black_box(reply));
        buf
    };
    let mut group = c.benchmark_group("decode");

    let small = BytesMut::from(&get_hit_reply(100)[..]);
    group.throughput(Throughput::Elements(1));
    group.bench_function("get_hit_100B", |b| {
        batched(b, 100, || live_buffer(&small), decode_one)
    });

    let miss = BytesMut::from(&b"END\r\n"[..]);
    group.bench_function("get_miss", |b| {
        batched(b, 100, || live_buffer(&miss), decode_one)
    });

    // The value is not copied: decode reads the header and the CRLF after the announced
    // length, then hands out a slice of the received buffer. Throughput is the reply's size.
    let large_reply = get_hit_reply(100 << 10);
    let large = BytesMut::from(&large_reply[..]);
    group.throughput(Throughput::Bytes(large_reply.len() as u64));
    group.bench_function("get_hit_100KiB", |b| {
        batched(b, 64, || live_buffer(&large), decode_one)
    });

    // 100 replies back to back in one read buffer, decoded one after the other, as a
    // connection does after one read of a pipelined batch.
    let pipelined = BytesMut::from(&get_hit_reply(100).repeat(100)[..]);
    group.throughput(Throughput::Elements(100));
    group.bench_function("pipelined_100_get_hits", |b| {
        batched(
            b,
            10,
            || live_buffer(&pipelined),
            |mut buf| {
                while let Some(reply) = decode(black_box(&mut buf), one_key, &limits).unwrap() {
                    drop(black_box(reply));
                }
                buf
            },
        )
    });
    group.finish();

    // Outside the timing: the benchmarks decode what they claim to, and values are slices of
    // the received buffer, not copies.
    for (input, len) in [(&small, 100), (&large, 100 << 10)] {
        let mut buf = live_buffer(input);
        let received = buf.as_ptr_range();
        match decode(&mut buf, one_key, &limits) {
            Ok(Some((Response::Values(items), _))) => {
                let value = items[0].value.as_ptr_range();
                assert_eq!(items[0].value.len(), len);
                assert!(received.start <= value.start && value.end <= received.end);
            }
            other => panic!("{other:?}"),
        }
    }
    let mut buf = pipelined.clone();
    let mut count = 0;
    while let Some((Response::Values(items), _)) = decode(&mut buf, one_key, &limits).unwrap() {
        assert_eq!(items.len(), 1);
        count += 1;
    }
    assert_eq!((count, buf.len()), (100, 0));
}

fn bench_encode(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    let mut buf = BytesMut::with_capacity(4096);

    let keys: &[&[u8]] = &[KEY];
    let get = Request::Retrieve {
        kind: Retrieval::Get,
        keys,
    };
    group.bench_function("get", |b| {
        looped(b, || {
            buf.clear();
            black_box(&get).encode(&mut buf, &limits).unwrap();
            buf.len()
        })
    });

    let value = [b'v'; 100];
    let set = Request::Store {
        mode: StoreMode::Set,
        key: KEY,
        flags: 0,
        exptime: 300,
        value: &value,
    };
    group.bench_function("set_100B", |b| {
        looped(b, || {
            buf.clear();
            black_box(&set).encode(&mut buf, &limits).unwrap();
            buf.len()
        })
    });
    group.finish();
}

/// A `VA` hit as memcached sends it to `mg <key> v t c k`, with a value of `value_len` bytes.
fn va_hit_reply(key: &[u8], value_len: usize) -> Vec<u8> {
    let mut reply = format!("VA {value_len} t60 c5 k").into_bytes();
    reply.extend_from_slice(key);
    reply.extend_from_slice(b"\r\n");
    reply.extend((0..value_len).map(|i| b'a' + (i % 26) as u8));
    reply.extend_from_slice(b"\r\n");
    reply
}

fn bench_meta_decode(c: &mut Criterion) {
    let limits = Limits::default();
    let decode_with = |expect: Expect| {
        move |mut buf: BytesMut| {
            let reply = decode(black_box(&mut buf), expect, &limits).unwrap();
            drop(black_box(reply));
            buf
        }
    };
    let mut group = c.benchmark_group("meta_decode");
    group.throughput(Throughput::Elements(1));

    // The reply of the goal: `VA 3 t60 c5 kfoo` + `abc`.
    let small = BytesMut::from(&va_hit_reply(b"foo", 3)[..]);
    assert_eq!(&small[..], b"VA 3 t60 c5 kfoo\r\nabc\r\n");
    group.bench_function("va_hit_small", |b| {
        batched(b, 100, || live_buffer(&small), decode_with(Expect::Meta))
    });

    let hit_100 = BytesMut::from(&va_hit_reply(KEY, 100)[..]);
    group.bench_function("va_hit_100B", |b| {
        batched(b, 100, || live_buffer(&hit_100), decode_with(Expect::Meta))
    });

    let miss = BytesMut::from(&b"EN\r\n"[..]);
    group.bench_function("en_miss", |b| {
        batched(b, 100, || live_buffer(&miss), decode_with(Expect::Meta))
    });

    // A quiet batch of 10 gets: 5 hits of 100 B (the misses say nothing), then MN.
    let mut batch_wire = Vec::new();
    for i in 0..5 {
        batch_wire.extend_from_slice(&va_hit_reply(format!("user:1234{i}").as_bytes(), 100));
    }
    batch_wire.extend_from_slice(b"MN\r\n");
    let batch = BytesMut::from(&batch_wire[..]);
    group.throughput(Throughput::Elements(5));
    group.bench_function("batch_5_hits_of_10", |b| {
        batched(
            b,
            50,
            || live_buffer(&batch),
            decode_with(Expect::MetaBatch { max: 10 }),
        )
    });
    group.finish();

    // Outside the timing: the benchmarks decode what they claim to, and the value is a slice
    // of the received buffer.
    let mut buf = live_buffer(&small);
    let received = buf.as_ptr_range();
    match decode(&mut buf, Expect::Meta, &limits) {
        Ok(Some((Response::Meta(r), 23))) => {
            let value = r.value.unwrap();
            assert_eq!(&value[..], b"abc");
            assert!(received.contains(&value.as_ptr()));
            assert_eq!(r.flags.key.as_deref(), Some(&b"foo"[..]));
        }
        other => panic!("{other:?}"),
    }
    let mut buf = live_buffer(&batch);
    match decode(&mut buf, Expect::MetaBatch { max: 10 }, &limits) {
        Ok(Some((Response::MetaBatch(replies), _))) => assert_eq!(replies.len(), 5),
        other => panic!("{other:?}"),
    }
}

fn bench_meta_encode(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("meta_encode");
    group.throughput(Throughput::Elements(1));
    let mut buf = BytesMut::with_capacity(4096);

    // A lease get: `mg user:12345 N30 v c t`.
    let get = MetaRequest::from(MetaGet::new(KEY).value().cas().ttl().vivify(30));
    group.bench_function("mg", |b| {
        looped(b, || {
            buf.clear();
            black_box(&get).encode(&mut buf, &limits).unwrap();
            buf.len()
        })
    });

    let value = [b'v'; 100];
    let set = MetaRequest::from(MetaSet::new(KEY, &value).ttl(300).compare_cas(12345));
    group.bench_function("ms_100B", |b| {
        looped(b, || {
            buf.clear();
            black_box(&set).encode(&mut buf, &limits).unwrap();
            buf.len()
        })
    });

    let keys: Vec<String> = (0..10).map(|i| format!("user:1234{i}")).collect();
    let gets: Vec<MetaRequest<'_>> = keys
        .iter()
        .map(|k| MetaGet::new(k.as_str()).value().return_key().into())
        .collect();
    group.throughput(Throughput::Elements(10));
    group.bench_function("batch_10_mg", |b| {
        looped(b, || {
            buf.clear();
            encode_batch(black_box(&gets), &mut buf, &limits).unwrap();
            buf.len()
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_decode,
    bench_encode,
    bench_meta_decode,
    bench_meta_encode
);
criterion_main!(benches);
