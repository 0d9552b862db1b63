//! The in-memory transport: each connect of a [`Target::Memory`](crate::connection::Target)
//! opens a fresh pipe and leaves its server end where the harness picks it up. Owns the pipes
//! and the refusals; what is said over them belongs to [`super::server`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{DuplexStream, ReadHalf, WriteHalf};

use crate::connection::{ReadSide, WriteSide};
use crate::error::Error;

/// Opens pipes for a connection task and queues their server ends. Clones share the queue.
#[derive(Clone, Debug)]
pub(crate) struct MemoryDialer {
    state: Arc<Mutex<DialerState>>,
}

#[derive(Debug)]
struct DialerState {
    /// Bytes each direction of a pipe holds before a write has to wait for the reader.
    capacity: usize,
    /// How many of the next connects fail, as a node that refuses connections.
    refuse: u32,
    accepted: VecDeque<DuplexStream>,
}

impl MemoryDialer {
    pub(crate) fn new(capacity: usize) -> MemoryDialer {
        MemoryDialer {
            state: Arc::new(Mutex::new(DialerState {
                capacity: capacity.max(1),
                refuse: 0,
                accepted: VecDeque::new(),
            })),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut DialerState) -> T) -> T {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut state)
    }

    /// The client's side of a new pipe, or a refusal.
    pub(crate) fn dial(&self) -> std::io::Result<DuplexStream> {
        self.with(|state| {
            if state.refuse > 0 {
                state.refuse -= 1;
                return Err(std::io::ErrorKind::ConnectionRefused.into());
            }
            let (client, server) = tokio::io::duplex(state.capacity);
            state.accepted.push_back(server);
            Ok(client)
        })
    }

    /// Makes the next `count` connects fail.
    pub(crate) fn refuse(&self, count: u32) {
        self.with(|state| state.refuse = count);
    }

    /// The server end of the oldest connection not yet taken.
    pub(crate) fn accept(&self) -> Option<DuplexStream> {
        self.with(|state| state.accepted.pop_front())
    }
}

impl PartialEq for MemoryDialer {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.state, &other.state)
    }
}

impl Eq for MemoryDialer {}

impl ReadSide for ReadHalf<DuplexStream> {
    const PLAINTEXT: bool = true;

    /// A pipe cannot be peeked at; a closed one is found by the next read.
    fn peer_closed(&self) -> bool {
        false
    }

    fn failure(&self, e: &std::io::Error, node: &str) -> Error {
        crate::connection::io_error(node, e)
    }
}

impl WriteSide for WriteHalf<DuplexStream> {
    const NEEDS_FLUSH: bool = false;
}
