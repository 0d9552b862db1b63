//! Plain sockets, no client library: the preload, and the pipelined probe that shows what the
//! machine can serve. The probe's threads each hold one connection per server; per round they
//! write a batch of requests to every server (one write each), then read back every reply.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::load::{new_histogram, next_op, route, Keyspace, Mix, Op, PhaseResult, Rng};

/// Stores every key on every server (pipelined sets), and checks each reply.
pub fn preload(servers: &[SocketAddr], keys: &Keyspace) -> std::io::Result<()> {
    for &addr in servers {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let mut reader = Replies::new(stream.try_clone()?);
        for chunk in keys.keys.chunks(500) {
            let mut out = Vec::with_capacity(chunk.len() * 140);
            for key in chunk {
                encode_set(&mut out, key, &keys.value);
            }
            stream.write_all(&out)?;
            for _ in chunk {
                if reader.next_reply()? != Reply::Stored {
                    return Err(std::io::Error::other("preload: a set was not stored"));
                }
            }
        }
    }
    Ok(())
}

fn encode_set(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    out.extend_from_slice(b"set ");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(format!(" 0 0 {}\r\n", value.len()).as_bytes());
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[derive(Debug, PartialEq, Eq)]
enum Reply {
    /// `VALUE ...` blocks then `END`: how many values.
    Values(usize),
    Stored,
}

/// A buffered reader of memcached text replies.
struct Replies {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Replies {
    fn new(stream: TcpStream) -> Replies {
        Replies {
            stream,
            buf: vec![0; 256 << 10],
            start: 0,
            end: 0,
        }
    }

    fn fill(&mut self) -> std::io::Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self.stream.read(&mut self.buf[self.end..])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.end += n;
        Ok(())
    }

    /// The next line without its CRLF, as a range of `buf`.
    fn line(&mut self) -> std::io::Result<(usize, usize)> {
        loop {
            let window = &self.buf[self.start..self.end];
            if let Some(i) = window.windows(2).position(|w| w == b"\r\n") {
                let line = (self.start, self.start + i);
                self.start += i + 2;
                return Ok(line);
            }
            self.fill()?;
        }
    }

    fn skip(&mut self, mut n: usize) -> std::io::Result<()> {
        while n > 0 {
            if self.start == self.end {
                self.fill()?;
            }
            let take = n.min(self.end - self.start);
            self.start += take;
            n -= take;
        }
        Ok(())
    }

    fn next_reply(&mut self) -> std::io::Result<Reply> {
        let mut values = 0;
        loop {
            let (a, b) = self.line()?;
            let line = &self.buf[a..b];
            if line == b"END" {
                return Ok(Reply::Values(values));
            }
            if line == b"STORED" {
                return Ok(Reply::Stored);
            }
            if let Some(rest) = line.strip_prefix(b"VALUE ") {
                let len = std::str::from_utf8(rest)
                    .ok()
                    .and_then(|s| s.split(' ').nth(2))
                    .and_then(|s| s.parse::<usize>().ok())
                    .ok_or_else(|| std::io::Error::other("bad VALUE line"))?;
                self.skip(len + 2)?;
                values += 1;
                continue;
            }
            return Err(std::io::Error::other(format!(
                "unexpected reply: {}",
                String::from_utf8_lossy(line)
            )));
        }
    }
}

/// Settings of the pipelined probe.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSpec {
    pub mix: Mix,
    /// Every key to the server the harness routing picks (a multi-get split by server), instead
    /// of each batch's operations whole to one server.
    pub routed: bool,
    pub threads: usize,
    pub batch: usize,
    pub ops: u64,
    pub cap: Duration,
    pub seed: u64,
}

/// Appends one operation to a server's batch, and the number of values its reply should hold
/// (0 for a set) to that server's expected replies.
fn encode(op: Op<'_>, out: &mut Vec<u8>, expected: &mut Vec<usize>, keys: &Keyspace) {
    match op {
        Op::Get(key) => expected.push(encode_get(out, [key])),
        Op::Set(key) => {
            encode_set(out, key, &keys.value);
            expected.push(0);
        }
        Op::Mget(batch) => expected.push(encode_get(out, batch)),
    }
}

/// Appends `get k1 k2 ...`; returns the number of keys.
fn encode_get<'k>(out: &mut Vec<u8>, keys: impl IntoIterator<Item = &'k str>) -> usize {
    out.extend_from_slice(b"get");
    let mut n = 0;
    for key in keys {
        out.push(b' ');
        out.extend_from_slice(key.as_bytes());
        n += 1;
    }
    out.extend_from_slice(b"\r\n");
    n
}

/// Appends one operation to the batches of the servers its keys route to: a multi-get becomes
/// one `get` per server, with that server's keys.
fn encode_routed(op: Op<'_>, outs: &mut [Vec<u8>], expected: &mut [Vec<usize>], keys: &Keyspace) {
    let servers = outs.len();
    match op {
        Op::Get(key) | Op::Set(key) => {
            let s = route(key, servers);
            encode(op, &mut outs[s], &mut expected[s], keys);
        }
        Op::Mget(batch) => {
            for s in 0..servers {
                let mut mine = batch
                    .iter()
                    .copied()
                    .filter(|key| route(key, servers) == s)
                    .peekable();
                if mine.peek().is_some() {
                    expected[s].push(encode_get(&mut outs[s], mine));
                }
            }
        }
    }
}

/// Runs the pipelined probe. Latency recorded per request is the time of its whole round
/// (write of every batch to the reply of the last), so it is an upper bound.
pub fn probe(
    servers: &[SocketAddr],
    keys: &Keyspace,
    spec: ProbeSpec,
) -> std::io::Result<PhaseResult> {
    let issued = AtomicU64::new(0);
    let start = Instant::now();
    let deadline = start + spec.cap;
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..spec.threads)
            .map(|t| {
                let issued = &issued;
                scope.spawn(move || -> std::io::Result<_> {
                    let mut conns = Vec::new();
                    for &addr in servers {
                        let stream = TcpStream::connect(addr)?;
                        stream.set_nodelay(true)?;
                        conns.push((stream.try_clone()?, Replies::new(stream)));
                    }
                    let mut rng = Rng::new(spec.seed ^ ((t as u64 + 1) * 0x5851_f42d));
                    let mut histogram = new_histogram();
                    let (mut ops, mut misses) = (0u64, 0u64);
                    let per_round = (spec.batch * servers.len()) as u64;
                    let mut outs = vec![Vec::with_capacity(spec.batch * 160); servers.len()];
                    let mut expected: Vec<Vec<usize>> = vec![Vec::new(); servers.len()];
                    while Instant::now() < deadline
                        && issued.fetch_add(per_round, Ordering::Relaxed) < spec.ops
                    {
                        let round = Instant::now();
                        for (out, expected) in outs.iter_mut().zip(&mut expected) {
                            out.clear();
                            expected.clear();
                        }
                        for s in 0..servers.len() {
                            for _ in 0..spec.batch {
                                let op = next_op(spec.mix, &mut rng, keys);
                                if spec.routed {
                                    encode_routed(op, &mut outs, &mut expected, keys);
                                } else {
                                    encode(op, &mut outs[s], &mut expected[s], keys);
                                }
                            }
                        }
                        for ((stream, _), out) in conns.iter_mut().zip(&outs) {
                            stream.write_all(out)?;
                        }
                        for (s, (_, replies)) in conns.iter_mut().enumerate() {
                            for &want in &expected[s] {
                                match replies.next_reply()? {
                                    Reply::Values(n) => misses += want.saturating_sub(n) as u64,
                                    Reply::Stored if want == 0 => {}
                                    Reply::Stored => {
                                        return Err(std::io::Error::other("STORED for a get"))
                                    }
                                }
                            }
                        }
                        let nanos = round.elapsed().as_nanos() as u64;
                        histogram.saturating_record_n(nanos.max(100), per_round);
                        ops += per_round;
                    }
                    Ok((histogram, ops, misses))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("probe thread panicked"))
            .collect::<Vec<_>>()
    });
    let elapsed = start.elapsed();
    let mut histogram = new_histogram();
    let (mut ops, mut misses, mut errors) = (0, 0, 0);
    for result in results {
        match result {
            Ok((h, o, m)) => {
                histogram.add(&h).expect("same histogram bounds");
                ops += o;
                misses += m;
            }
            Err(_) => errors += 1,
        }
    }
    Ok(PhaseResult {
        ops,
        elapsed,
        misses,
        errors,
        histogram,
        capped: ops < spec.ops,
    })
}
