//! The in-memory transport: a [`Dial`] whose every connect opens a fresh pipe
//! ([`tokio::io::duplex`]) and leaves its server end where the session picks it up. Owns the
//! pipes, the refusals and the record of where the client dialed; what is said over the pipes
//! belongs to [`super::server`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use memcached_autodiscovery::transport::{Dial, DialFuture, Io, Target};
use tokio::io::DuplexStream;

/// Opens pipes for the client and queues their server ends. Clones share the queue.
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
    /// The first target dialed that is not the harness's node.
    stray: Option<String>,
}

impl MemoryDialer {
    pub(crate) fn new(capacity: usize) -> MemoryDialer {
        MemoryDialer {
            state: Arc::new(Mutex::new(DialerState {
                capacity: capacity.max(1),
                refuse: 0,
                accepted: VecDeque::new(),
                stray: None,
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
    fn open(&self, target: &Target) -> std::io::Result<DuplexStream> {
        self.with(|state| {
            if target.to_string() != super::server::NODE && state.stray.is_none() {
                state.stray = Some(target.to_string());
            }
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

    /// A target the client dialed that is not the harness's node, if it dialed one.
    pub(crate) fn stray(&self) -> Option<String> {
        self.with(|state| state.stray.clone())
    }
}

impl Dial for MemoryDialer {
    fn dial<'a>(&'a self, target: &'a Target) -> DialFuture<'a> {
        let opened = self.open(target);
        Box::pin(async move { opened.map(|pipe| Box::new(pipe) as Box<dyn Io>) })
    }
}
