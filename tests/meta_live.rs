//! The meta codec against a real memcached (1.6, started by the test kit on a free loopback
//! port): requests encoded by `protocol::meta` go over a plain `TcpStream`, and the replies are
//! decoded by `protocol::decode`. The lease sequence of `docs`' meta-protocol facts (mg N → W, a
//! second caller Z, ms, md I → X/W and Z/X, R recache, a q + mn batch, b keys) must decode
//! exactly as those facts say; then every command, mode and reply kind is checked once.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use memcached_autodiscovery_proto::protocol::meta::{
    encode_batch, ArithMode, MetaArithmetic, MetaDelete, MetaGet, MetaKey, MetaReply, MetaRequest,
    MetaSet, MetaStatus, SetMode, Ttl, MAX_BINARY_KEY_LEN, MAX_OPAQUE_LEN,
};
use memcached_autodiscovery_proto::protocol::{
    decode, ErrorReply, Expect, Limits, Request, Response,
};
use memcached_autodiscovery_testkit::{MemcachedOptions, MemcachedProcess};

fn start_memcached() -> MemcachedProcess {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime to start memcached")
        .block_on(MemcachedProcess::start(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            &MemcachedOptions::default(),
        ))
        .expect("memcached 1.6 on PATH (apt-get install memcached)")
}

/// One plain, blocking connection: writes frames, decodes replies.
struct Conn {
    stream: TcpStream,
    rbuf: BytesMut,
    limits: Limits,
}

impl Conn {
    fn open(server: &MemcachedProcess) -> Conn {
        let stream = TcpStream::connect(server.addr()).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Conn {
            stream,
            rbuf: BytesMut::new(),
            limits: Limits::default(),
        }
    }

    /// Reads until one reply for `expect` is decoded.
    fn read(&mut self, expect: Expect) -> Response {
        loop {
            if let Some((response, _)) = decode(&mut self.rbuf, expect, &self.limits)
                .unwrap_or_else(|e| panic!("decode: {e}; buffer {:?}", self.rbuf))
            {
                return response;
            }
            let mut chunk = [0u8; 16 << 10];
            let n = self.stream.read(&mut chunk).expect("read a reply");
            assert!(n > 0, "server closed the connection");
            self.rbuf.extend_from_slice(&chunk[..n]);
        }
    }

    fn call(&mut self, request: impl Into<MetaRequest<'static>>) -> Response {
        let mut frame = BytesMut::new();
        let expect = request.into().encode(&mut frame, &self.limits).unwrap();
        self.stream.write_all(&frame).unwrap();
        self.read(expect)
    }

    /// A request whose reply must be a meta reply (not an error line).
    fn meta(&mut self, request: impl Into<MetaRequest<'static>>) -> MetaReply {
        match self.call(request) {
            Response::Meta(r) => *r,
            other => panic!("not a meta reply: {other:?}"),
        }
    }

    fn batch(&mut self, requests: &[MetaRequest<'_>]) -> Response {
        let mut frame = BytesMut::new();
        let expect = encode_batch(requests, &mut frame, &self.limits).unwrap();
        self.stream.write_all(&frame).unwrap();
        self.read(expect)
    }
}

fn ttl_secs(r: &MetaReply) -> u32 {
    match r.flags.ttl {
        Some(Ttl::Seconds(s)) => s,
        other => panic!("no finite ttl: {other:?}"),
    }
}

#[test]
fn the_lease_sequence_decodes_as_the_spec_shows() {
    let server = start_memcached();
    let mut c = Conn::open(&server);

    // mg k1 N30 v c s t -> VA 0 c<n> s0 t30 W: a placeholder, and this caller wins. (The spec's
    // `mg k1 v c t N30 s` gets `t-1`: memcached reads `t` before `N` has made the placeholder;
    // the encoder writes N first.)
    let first = c.meta(MetaGet::new("k1").value().cas().ttl().vivify(30).size());
    assert_eq!(first.status, MetaStatus::Value);
    assert_eq!(first.value.as_deref(), Some(&b""[..]));
    assert!((29..=30).contains(&ttl_secs(&first)));
    assert_eq!(first.flags.size, Some(0));
    assert!(first.flags.win && !first.flags.win_taken && !first.flags.stale);
    let lease_cas = first.flags.cas.expect("c returned");

    // Another caller: the placeholder, the same CAS, and Z: a win was already handed out.
    let second = c.meta(MetaGet::new("k1").value().cas().ttl().vivify(30));
    assert_eq!(second.value.as_deref(), Some(&b""[..]));
    assert_eq!(second.flags.cas, Some(lease_cas));
    assert!((29..=30).contains(&ttl_secs(&second)));
    assert!(second.flags.win_taken && !second.flags.win);

    // The winner stores, passing the CAS of its win.
    let stored = c.meta(MetaSet::new("k1", b"abc").ttl(60).compare_cas(lease_cas));
    assert_eq!(stored.status, MetaStatus::Success);
    assert_eq!(stored.flags, Default::default());

    // Everyone sees the value.
    let hit = c.meta(MetaGet::new("k1").value().ttl().cas());
    assert_eq!(hit.value.as_deref(), Some(&b"abc"[..]));
    assert!((59..=60).contains(&ttl_secs(&hit)));
    assert!(hit.flags.cas.unwrap() > lease_cas);
    assert!(!hit.flags.win && !hit.flags.win_taken && !hit.flags.stale);

    // md I T30: mark stale instead of deleting.
    let invalidated = c.meta(MetaDelete::new("k1").invalidate_with_ttl(30));
    assert_eq!(invalidated.status, MetaStatus::Success);

    // Stale (X), and this caller wins the refresh (W); the value is still served.
    let stale_win = c.meta(MetaGet::new("k1").value().cas().ttl());
    assert_eq!(stale_win.value.as_deref(), Some(&b"abc"[..]));
    assert!(stale_win.flags.stale && stale_win.flags.win && !stale_win.flags.win_taken);
    assert!(ttl_secs(&stale_win) <= 30);
    let stale_cas = stale_win.flags.cas.unwrap();

    // Others: the stale value, the win already taken (Z X).
    let stale_other = c.meta(MetaGet::new("k1").value().cas().ttl());
    assert_eq!(stale_other.value.as_deref(), Some(&b"abc"[..]));
    assert!(stale_other.flags.stale && stale_other.flags.win_taken && !stale_other.flags.win);
    assert_eq!(stale_other.flags.cas, Some(stale_cas));

    // The refresher stores the new value.
    let refreshed = c.meta(MetaSet::new("k1", b"xyz").ttl(60));
    assert_eq!(refreshed.status, MetaStatus::Success);

    // R30: no recache win while the remaining TTL (about 60 s) is above 30.
    let no_win = c.meta(MetaGet::new("k1").value().cas().ttl().recache(30));
    assert_eq!(no_win.value.as_deref(), Some(&b"xyz"[..]));
    assert!(!no_win.flags.win && !no_win.flags.win_taken && !no_win.flags.stale);

    // A quiet batch: R90 wins (the hit is answered, with the key and the opaque), the miss
    // says nothing, and mn closes the batch.
    let batch = [
        MetaRequest::from(
            MetaGet::new("k1")
                .value()
                .cas()
                .ttl()
                .recache(90)
                .return_key()
                .opaque(b"55"),
        ),
        MetaRequest::from(MetaGet::new("missing").value().opaque(b"7")),
    ];
    let Response::MetaBatch(replies) = c.batch(&batch) else {
        panic!("not a batch");
    };
    assert_eq!(replies.len(), 1, "{replies:?}");
    let recache = replies[0].as_ref().unwrap();
    assert_eq!(recache.value.as_deref(), Some(&b"xyz"[..]));
    assert_eq!(recache.flags.key.as_deref(), Some(&b"k1"[..]));
    assert_eq!(recache.flags.opaque.as_deref(), Some(&b"55"[..]));
    assert!(recache.flags.win && !recache.flags.binary_key);
    assert_eq!(recache.flags.cas, no_win.flags.cas);

    // b: a binary key goes out in base64 and comes back decoded.
    let miss = c.meta(
        MetaGet::new(MetaKey::Binary(b"missing"))
            .value()
            .return_key(),
    );
    assert_eq!(miss.status, MetaStatus::Miss);
    assert_eq!(miss.flags.key.as_deref(), Some(&b"missing"[..]));
    assert!(miss.flags.binary_key);
    assert_eq!(miss.value, None);

    // The text protocol still works on the same connection.
    let mut frame = BytesMut::new();
    let expect = Request::Version.encode(&mut frame, &c.limits).unwrap();
    c.stream.write_all(&frame).unwrap();
    let Response::Version(version) = c.read(expect) else {
        panic!("no version");
    };
    assert!(version.starts_with("1.6."), "{version}");
}

#[test]
fn every_command_and_reply_kind_against_memcached() {
    let server = start_memcached();
    let mut c = Conn::open(&server);
    use MetaStatus::*;

    // ms with client flags and return flags; mg of every metadata flag.
    let set = c.meta(
        MetaSet::new("a", b"hi")
            .client_flags(7)
            .ttl(0)
            .return_cas()
            .return_key()
            .opaque(b"1"),
    );
    assert_eq!(set.status, Success);
    assert_eq!(set.flags.key.as_deref(), Some(&b"a"[..]));
    assert_eq!(set.flags.opaque.as_deref(), Some(&b"1"[..]));
    let cas = set.flags.cas.unwrap();
    let all = c.meta(
        MetaGet::new("a")
            .value()
            .client_flags()
            .cas()
            .ttl()
            .size()
            .return_key()
            .hit_before()
            .last_access(),
    );
    assert_eq!(all.value.as_deref(), Some(&b"hi"[..]));
    assert_eq!(all.flags.client_flags, Some(7));
    assert_eq!(all.flags.cas, Some(cas));
    assert_eq!(all.flags.ttl, Some(Ttl::Never));
    assert_eq!(all.flags.size, Some(2));
    assert_eq!(all.flags.hit_before, Some(false));
    assert!(all.flags.last_access.is_some());
    // Without v, a hit is HD.
    let head = c.meta(MetaGet::new("a").hit_before().no_lru_bump());
    assert_eq!(
        (head.status, head.flags.hit_before, head.value),
        (Success, Some(true), None)
    );
    // T on mg touches.
    let touched = c.meta(MetaGet::new("a").touch(100).ttl());
    assert!((99..=100).contains(&ttl_secs(&touched)));

    // Set modes.
    assert_eq!(
        c.meta(MetaSet::new("a", b"x").mode(SetMode::Add).return_cas())
            .status,
        NotStored
    );
    assert_eq!(
        c.meta(MetaSet::new("nope", b"x").mode(SetMode::Replace))
            .status,
        NotStored
    );
    assert_eq!(
        c.meta(MetaSet::new("a", b"!").mode(SetMode::Append)).status,
        Success
    );
    assert_eq!(
        c.meta(MetaSet::new("a", b"<").mode(SetMode::Prepend))
            .status,
        Success
    );
    assert_eq!(
        c.meta(MetaGet::new("a").value()).value.as_deref(),
        Some(&b"<hi!"[..])
    );
    assert_eq!(
        c.meta(MetaSet::new("a", b"y").mode(SetMode::Replace))
            .status,
        Success
    );
    assert_eq!(
        c.meta(MetaSet::new("fresh", b"x").mode(SetMode::Add))
            .status,
        Success
    );
    // CAS: out of date -> EX, absent -> NF.
    assert_eq!(
        c.meta(MetaSet::new("a", b"z").compare_cas(u64::MAX)).status,
        Exists
    );
    assert_eq!(
        c.meta(MetaSet::new("absent", b"z").compare_cas(1)).status,
        NotFound
    );
    // memcached 1.6.18 answers NS to an append with N on a miss (no auto-vivify).
    let vivify = c.meta(
        MetaSet::new("absent", b"z")
            .mode(SetMode::Append)
            .vivify(30),
    );
    assert!(matches!(vivify.status, NotStored | Success), "{vivify:?}");

    // Deletes.
    assert_eq!(
        c.meta(MetaDelete::new("fresh").compare_cas(u64::MAX))
            .status,
        Exists
    );
    assert_eq!(
        c.meta(MetaDelete::new("fresh").return_key()).status,
        Success
    );
    let gone = c.meta(MetaDelete::new("fresh").opaque(b"x"));
    assert_eq!(
        (gone.status, gone.flags.opaque.as_deref()),
        (NotFound, Some(&b"x"[..]))
    );
    assert_eq!(c.meta(MetaGet::new("fresh").value()).status, Miss);

    // Arithmetic.
    assert_eq!(c.meta(MetaArithmetic::new("cnt")).status, NotFound);
    let created = c.meta(
        MetaArithmetic::new("cnt")
            .create_on_miss(0, 13)
            .return_value(),
    );
    assert_eq!(
        (created.status, created.value.as_deref()),
        (Value, Some(&b"13"[..]))
    );
    let up = c.meta(
        MetaArithmetic::new("cnt")
            .delta(10)
            .return_value()
            .return_ttl()
            .return_cas()
            .return_key()
            .opaque(b"3"),
    );
    assert_eq!(up.value.as_deref(), Some(&b"23"[..]));
    assert_eq!(up.flags.ttl, Some(Ttl::Never));
    assert_eq!(up.flags.key.as_deref(), Some(&b"cnt"[..]));
    assert!(up.flags.cas.is_some());
    let down = c.meta(
        MetaArithmetic::new("cnt")
            .mode(ArithMode::Decr)
            .delta(100)
            .return_value(),
    );
    assert_eq!(down.value.as_deref(), Some(&b"0"[..]));
    assert_eq!(c.meta(MetaArithmetic::new("cnt")).status, Success);
    assert_eq!(
        c.meta(MetaArithmetic::new("cnt").compare_cas(u64::MAX))
            .status,
        Exists
    );
    assert_eq!(
        c.call(MetaArithmetic::new("a")),
        Response::Error(ErrorReply::Client(
            "cannot increment or decrement non-numeric value".into()
        ))
    );

    // E (new CAS) is not known to memcached 1.6.18; later versions take it.
    match c.call(MetaSet::new("e", b"v").new_cas(12345)) {
        Response::Error(ErrorReply::Client(m)) => assert_eq!(m, "invalid flag"),
        Response::Meta(r) => {
            assert_eq!(r.status, Success);
            assert_eq!(c.meta(MetaGet::new("e").cas()).flags.cas, Some(12345));
        }
        other => panic!("{other:?}"),
    }

    // Quiet batches: HD is silenced, NS and NF are not.
    let batch: Vec<MetaRequest<'_>> = vec![
        MetaSet::new("q1", b"v").into(),
        MetaSet::new("q1", b"v")
            .mode(SetMode::Add)
            .opaque(b"ns")
            .into(),
        MetaDelete::new("q1").into(),
        MetaDelete::new("q1").opaque(b"nf").into(),
        MetaArithmetic::new("cnt").into(),
        MetaGet::new("q1").value().into(),
    ];
    let Response::MetaBatch(replies) = c.batch(&batch) else {
        panic!("not a batch");
    };
    let got: Vec<(MetaStatus, Option<Bytes>)> = replies
        .into_iter()
        .map(|r| r.map(|r| (r.status, r.flags.opaque)).unwrap())
        .collect();
    assert_eq!(
        got,
        vec![
            (NotStored, Some(Bytes::from_static(b"ns"))),
            (NotFound, Some(Bytes::from_static(b"nf")))
        ]
    );
    // A lone mn.
    assert_eq!(c.batch(&[]), Response::MetaBatch(vec![]));

    // Limits memcached shares with the codec: 250-byte text keys, 186-byte binary keys (248
    // in base64), 31-byte opaque tokens (memcached's 32 count the letter O).
    let long_text = [b'k'; 250];
    let long_binary: Vec<u8> = (0..MAX_BINARY_KEY_LEN).map(|i| (i * 7) as u8).collect();
    let long_opaque = [b'~'; MAX_OPAQUE_LEN];
    let mut frame = BytesMut::new();
    let requests = [
        MetaRequest::from(MetaSet::new(&long_text[..], b"t")),
        MetaRequest::from(MetaSet::new(MetaKey::Binary(&long_binary), b"\0b\r\n")),
        MetaRequest::from(
            MetaGet::new(MetaKey::Binary(&long_binary))
                .value()
                .return_key()
                .opaque(&long_opaque),
        ),
        MetaRequest::from(MetaGet::new(&long_text[..]).value()),
    ];
    // Four frames in one write; the replies are decoded back to back.
    let expects: Vec<Expect> = requests
        .iter()
        .map(|r| r.encode(&mut frame, &c.limits).unwrap())
        .collect();
    c.stream.write_all(&frame).unwrap();
    let replies: Vec<Response> = expects.into_iter().map(|e| c.read(e)).collect();
    assert!(matches!(&replies[0], Response::Meta(r) if r.status == Success));
    assert!(matches!(&replies[1], Response::Meta(r) if r.status == Success));
    let Response::Meta(binary) = &replies[2] else {
        panic!("{:?}", replies[2]);
    };
    assert_eq!(binary.value.as_deref(), Some(&b"\0b\r\n"[..]));
    assert_eq!(binary.flags.key.as_deref(), Some(&long_binary[..]));
    assert!(binary.flags.binary_key);
    assert_eq!(binary.flags.opaque.as_deref(), Some(&long_opaque[..]));
    assert!(matches!(&replies[3], Response::Meta(r) if r.value.as_deref() == Some(&b"t"[..])));

    // A 512 KiB value arrives in many reads and decodes without a copy.
    let big: Vec<u8> = (0..512 << 10).map(|i| (i % 251) as u8).collect();
    let big: &'static [u8] = Box::leak(big.into_boxed_slice());
    assert_eq!(c.meta(MetaSet::new("big", big)).status, Success);
    let got = c.meta(MetaGet::new("big").value().size());
    assert_eq!(got.flags.size, Some(big.len() as u64));
    assert_eq!(got.value.as_deref(), Some(big));
}

#[test]
fn the_spec_lines_sent_verbatim_decode_as_the_spec_shows() {
    let server = start_memcached();
    let mut c = Conn::open(&server);
    let mut send = |line: &[u8], expect: Expect| {
        c.stream.write_all(line).unwrap();
        c.read(expect)
    };
    let meta = |r: Response| match r {
        Response::Meta(r) => *r,
        other => panic!("{other:?}"),
    };
    // Each reply: status, value, the flags present. CAS values are compared with each other
    // (the spec's absolute numbers depend on what the server did before).
    let r1 = meta(send(b"mg k1 v c t N30 s\r\n", Expect::Meta));
    assert_eq!(
        (r1.status, r1.value.as_deref()),
        (MetaStatus::Value, Some(&b""[..]))
    );
    assert_eq!((r1.flags.ttl, r1.flags.size), (Some(Ttl::Never), Some(0)));
    assert!(r1.flags.win && !r1.flags.win_taken);
    let r2 = meta(send(b"mg k1 v c t N30\r\n", Expect::Meta));
    assert_eq!(r2.flags.cas, r1.flags.cas);
    assert_eq!(r2.flags.ttl, Some(Ttl::Seconds(30)));
    assert!(r2.flags.win_taken && !r2.flags.win);
    let r3 = meta(send(b"ms k1 3 T60\r\nabc\r\n", Expect::Meta));
    assert_eq!(
        r3,
        MetaReply::new(MetaStatus::Success, Default::default(), None)
    );
    let r4 = meta(send(b"mg k1 v t c\r\n", Expect::Meta));
    assert_eq!(r4.value.as_deref(), Some(&b"abc"[..]));
    assert_eq!(r4.flags.ttl, Some(Ttl::Seconds(60)));
    assert!(r4.flags.cas > r1.flags.cas);
    let r5 = meta(send(b"md k1 I T30\r\n", Expect::Meta));
    assert_eq!(r5.status, MetaStatus::Success);
    let r6 = meta(send(b"mg k1 v c t\r\n", Expect::Meta));
    assert_eq!(r6.value.as_deref(), Some(&b"abc"[..]));
    assert!(r6.flags.stale && r6.flags.win && !r6.flags.win_taken);
    assert!((29..=30).contains(&ttl_secs(&r6)));
    assert!(r6.flags.cas > r4.flags.cas);
    let r7 = meta(send(b"mg k1 v c t\r\n", Expect::Meta));
    assert!(r7.flags.stale && r7.flags.win_taken && !r7.flags.win);
    assert_eq!(r7.flags.cas, r6.flags.cas);
    meta(send(b"ms k1 3 T60\r\nxyz\r\n", Expect::Meta));
    let r8 = meta(send(b"mg k1 v c t R30\r\n", Expect::Meta));
    assert_eq!(r8.value.as_deref(), Some(&b"xyz"[..]));
    assert!(!r8.flags.win && !r8.flags.win_taken);
    assert!((59..=60).contains(&ttl_secs(&r8)));
    // `q` on a hit does not silence it; it is answered on its own.
    let r9 = meta(send(b"mg k1 v c t R90 k O55 q\r\n", Expect::Meta));
    assert_eq!(r9.value.as_deref(), Some(&b"xyz"[..]));
    assert_eq!(
        (r9.flags.key.as_deref(), r9.flags.opaque.as_deref()),
        (Some(&b"k1"[..]), Some(&b"55"[..]))
    );
    assert!(r9.flags.win);
    assert_eq!(r9.flags.cas, r8.flags.cas);
    assert_eq!(
        send(b"mg missing v q O7\r\nmn\r\n", Expect::MetaBatch { max: 1 }),
        Response::MetaBatch(vec![])
    );
    let r10 = meta(send(b"mg bWlzc2luZw== b v k\r\n", Expect::Meta));
    assert_eq!(r10.status, MetaStatus::Miss);
    assert_eq!(r10.flags.key.as_deref(), Some(&b"missing"[..]));
    assert!(r10.flags.binary_key);
    let version = send(b"version\r\n", Expect::Version);
    assert!(
        matches!(&version, Response::Version(v) if v.starts_with("1.6.")),
        "{version:?}"
    );
}
