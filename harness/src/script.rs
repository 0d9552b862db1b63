//! The byte format of a script: the session [`Setup`] in three bytes, then one [`Op`] per
//! step. Any bytes are a script (a script runs out into zeros), so the fuzzer explores freely;
//! [`ScriptBuilder`] writes the same format from named steps, for regression tests that must
//! read as what they check. Owns the format only; [`super::connection_session`] plays it.

use std::time::Duration;

use super::server::Kind;

/// The session a script sets up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// Whether the server may lie ([`Op::Lie`]); otherwise a lie step serves everything.
    pub lies: bool,
    /// The client's queue depth (`ClientBuilder::queue_depth`), 1 to 8.
    pub queue_depth: u8,
    /// The client's request timeout, 5 to 515 ms (even values are rounded down to odd ones).
    pub timeout_ms: u16,
    /// Bytes each direction of a pipe holds, 1 to 1021 (in steps of 4).
    pub pipe_capacity: u16,
}

impl Setup {
    fn read(reader: &mut Reader<'_>) -> Setup {
        let flags = reader.byte();
        Setup {
            lies: flags & 1 == 1,
            queue_depth: 1 + ((flags >> 1) & 7),
            timeout_ms: 5 + 2 * u16::from(reader.byte()),
            pipe_capacity: 1 + 4 * u16::from(reader.byte()),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        let depth = self.queue_depth.clamp(1, 8) - 1;
        out.push(u8::from(self.lies) | depth << 1);
        out.push(byte_of((self.timeout_ms.saturating_sub(5)) / 2));
        out.push(byte_of(self.pipe_capacity.saturating_sub(1) / 4));
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.timeout_ms))
    }
}

fn byte_of(n: u16) -> u8 {
    u8::try_from(n).unwrap_or(u8::MAX)
}

/// How a caller gives up, if it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// Waits for its reply or its timeout.
    Never,
    /// Its future is dropped when its n-th poll (1 to 4) returns pending; each poll after the
    /// first is one the call's own wake-up asked for. After one poll a caller with room in the
    /// queue has queued its request and left: its reply must be discarded.
    AfterPolls(u8),
    /// `tokio::time::timeout` of 0 to 7 ms around the call.
    Timeout(u8),
    /// A `select!` whose other branch wins after 0 to 15 scheduler turns.
    Race(u8),
}

/// One step of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A caller (a task of its own) makes a call of `kind` on `keys` fresh keys (`get_many`
    /// 1 to 4, others as the call takes).
    Call {
        /// Which call.
        kind: Kind,
        /// How many keys it names.
        keys: u8,
        /// Whether and how the caller gives up.
        cancel: Cancel,
    },
    /// The server queues the answers to the next 1 to 4 requests it has read.
    Answer(u8),
    /// The server writes 1 to 16 bytes of its queued answers (all of them: `None`), as much
    /// as the pipe takes now.
    Flush(Option<u8>),
    /// The clock moves on by 0 to 255 ms while everything runs.
    Sleep(u8),
    /// The script lets the other tasks run 0 to 7 turns, the clock standing still.
    Yield(u8),
    /// The server closes the connection.
    Close,
    /// The next 1 to 3 connects are refused.
    Refuse(u8),
    /// The caller started n-th (modulo the callers so far) is aborted (`JoinHandle::abort`)
    /// wherever it waits.
    Abort(u8),
    /// The server sends these bytes (at most 47), whatever was asked (lying sessions only).
    Lie(Vec<u8>),
    /// The server reads, answers and writes everything there is.
    ServeAll,
}

impl Op {
    pub(crate) fn read(reader: &mut Reader<'_>, setup: &Setup) -> Op {
        let op = reader.byte();
        let arg = reader.byte();
        match op % 12 {
            0..=2 => {
                let kind = Kind::pick(arg);
                let keys = kind.key_count(reader.byte());
                let how = reader.byte();
                let cancel_arg = reader.byte();
                let cancel = match how % 6 {
                    0 | 1 => Cancel::Never,
                    2 => Cancel::AfterPolls(1 + cancel_arg % 4),
                    3 => Cancel::Timeout(cancel_arg % 8),
                    _ => Cancel::Race(cancel_arg % 16),
                };
                Op::Call { kind, keys, cancel }
            }
            3 => Op::Answer(1 + arg % 4),
            4 if arg < 128 => Op::Flush(Some(1 + arg % 16)),
            4 => Op::Flush(None),
            5 => Op::Sleep(arg),
            6 => Op::Yield(arg % 8),
            7 => Op::Close,
            8 => Op::Refuse(1 + arg % 3),
            9 => Op::Abort(arg),
            11 if setup.lies => Op::Lie(reader.take(usize::from(arg % 48)).to_vec()),
            _ => Op::ServeAll,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Op::Call { kind, keys, cancel } => {
                let (how, arg) = match cancel {
                    Cancel::Never => (0, 0),
                    Cancel::AfterPolls(polls) => (2, polls.saturating_sub(1) % 4),
                    Cancel::Timeout(ms) => (3, *ms),
                    Cancel::Race(turns) => (4, *turns),
                };
                out.extend([0, kind.index(), keys.saturating_sub(1), how, arg]);
            }
            Op::Answer(n) => out.extend([3, n.saturating_sub(1)]),
            Op::Flush(Some(n)) => out.extend([4, n.saturating_sub(1) % 16]),
            Op::Flush(None) => out.extend([4, 255]),
            Op::Sleep(ms) => out.extend([5, *ms]),
            Op::Yield(turns) => out.extend([6, *turns]),
            Op::Close => out.extend([7, 0]),
            Op::Refuse(n) => out.extend([8, n.saturating_sub(1)]),
            Op::Abort(i) => out.extend([9, *i]),
            Op::Lie(bytes) => {
                let bytes = &bytes[..bytes.len().min(47)];
                out.extend([11, bytes.len() as u8]);
                out.extend_from_slice(bytes);
            }
            Op::ServeAll => out.extend([10, 0]),
        }
    }
}

/// A script read a byte at a time; past its end every byte is 0.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// The reader and the setup the script starts with.
    pub(crate) fn new(bytes: &'a [u8]) -> (Reader<'a>, Setup) {
        let mut reader = Reader { bytes };
        let setup = Setup::read(&mut reader);
        (reader, setup)
    }

    fn byte(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&b, rest)) => {
                self.bytes = rest;
                b
            }
            None => 0,
        }
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let (taken, rest) = self.bytes.split_at(n.min(self.bytes.len()));
        self.bytes = rest;
        taken
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Writes a script from named steps.
#[derive(Debug, Clone)]
pub struct ScriptBuilder {
    bytes: Vec<u8>,
}

impl ScriptBuilder {
    /// A script that starts with `setup`.
    pub fn new(setup: Setup) -> ScriptBuilder {
        let mut bytes = Vec::new();
        setup.write(&mut bytes);
        ScriptBuilder { bytes }
    }

    /// Appends one step.
    pub fn then(mut self, op: Op) -> ScriptBuilder {
        op.write(&mut self.bytes);
        self
    }

    /// Appends a step `times` times.
    pub fn repeat(mut self, times: usize, op: Op) -> ScriptBuilder {
        for _ in 0..times {
            op.write(&mut self.bytes);
        }
        self
    }

    /// The script's bytes.
    pub fn build(self) -> Vec<u8> {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_steps_read_back_as_written() {
        let setup = Setup {
            lies: true,
            queue_depth: 3,
            timeout_ms: 45,
            pipe_capacity: 9,
        };
        let ops = vec![
            Op::Call {
                kind: Kind::GetMany,
                keys: 3,
                cancel: Cancel::Race(5),
            },
            Op::Call {
                kind: Kind::Incr,
                keys: 1,
                cancel: Cancel::Timeout(2),
            },
            Op::Call {
                kind: Kind::Stats,
                keys: 0,
                cancel: Cancel::AfterPolls(4),
            },
            Op::Answer(2),
            Op::Flush(Some(7)),
            Op::Flush(None),
            Op::Sleep(200),
            Op::Yield(3),
            Op::Close,
            Op::Refuse(2),
            Op::Abort(9),
            Op::Lie(b"END\r\n".to_vec()),
            Op::ServeAll,
        ];
        let script = ops
            .iter()
            .fold(ScriptBuilder::new(setup), |b, op| b.then(op.clone()))
            .build();
        let (mut reader, read_setup) = Reader::new(&script);
        assert_eq!(read_setup, setup);
        for op in &ops {
            assert_eq!(&Op::read(&mut reader, &read_setup), op);
        }
        assert!(reader.is_empty());
    }
}
