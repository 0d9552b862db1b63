//! One caller of a script: a task that makes one [`Client`] call, maybe gives up on it, and
//! judges what it got against the model of [`super::server`]. Owns the mapping of each
//! [`Kind`] to its `Client` method and the ways a caller gives up.

use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use memcached_autodiscovery::ProtocolError;
use memcached_autodiscovery::{Client, Error, StoreMode, TlsErrorKind};
use tokio::time::Instant;

use super::script::Cancel;
use super::server::{self, expected, Expected, Kind, Outcome, DELTA, MAX_VALUE, NODE, TTL};

/// How late a caller may finish after its deadline: tokio's timers round up to the next
/// millisecond.
pub(crate) const TIMER_SLACK: Duration = Duration::from_millis(2);

/// How each caller ended, tallied into the report.
#[derive(Debug, Default)]
pub(crate) struct Outcomes {
    pub checked: usize,
    pub errors: usize,
    pub cancelled: usize,
    pub refused: usize,
}

/// The tally shared by the callers of a session.
pub(crate) type Tally = Arc<Mutex<Outcomes>>;

pub(crate) fn lock(tally: &Tally) -> MutexGuard<'_, Outcomes> {
    tally
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One caller of the script: makes its call, maybe gives up, checks what it got.
#[derive(Clone)]
pub(crate) struct Caller {
    pub client: Client,
    pub kind: Kind,
    pub ids: Vec<u64>,
    pub cancel: Cancel,
    pub request_timeout: Duration,
    /// Whether the server has lied (results are then not held to the model).
    pub lied: Arc<AtomicBool>,
    pub outcomes: Tally,
}

impl Caller {
    pub(crate) async fn run(self) {
        let _ = self.run_once().await;
    }

    /// `Err` when the call failed with an error that is not its modelled answer (the error
    /// already judged).
    pub(crate) async fn run_once(self) -> Result<(), Error> {
        let started = Instant::now();
        let whole = call(&self.client, self.kind, &self.ids);
        let outcome = match self.cancel {
            Cancel::Never => Some(whole.await),
            Cancel::AfterPolls(polls) => {
                let mut whole = std::pin::pin!(whole);
                let mut left = polls.max(1);
                poll_fn(|cx| match whole.as_mut().poll(cx) {
                    Poll::Ready(result) => Poll::Ready(Some(result)),
                    Poll::Pending => {
                        left -= 1;
                        if left == 0 {
                            Poll::Ready(None)
                        } else {
                            Poll::Pending
                        }
                    }
                })
                .await
            }
            Cancel::Timeout(ms) => {
                let after = Duration::from_millis(u64::from(ms));
                tokio::time::timeout(after, whole).await.ok()
            }
            Cancel::Race(turns) => {
                tokio::select! {
                    biased;
                    () = yield_times(turns) => None,
                    result = whole => Some(result),
                }
            }
        };
        let waited = started.elapsed();
        assert!(
            waited <= self.request_timeout + TIMER_SLACK,
            "{:?} {:?} waited {waited:?}; the request timeout is {:?}",
            self.kind,
            self.ids,
            self.request_timeout
        );
        let Some(result) = outcome else {
            lock(&self.outcomes).cancelled += 1;
            return Ok(());
        };
        self.judge(result)
    }

    /// Holds a finished call's result to the model; panics on a result no correct client
    /// returns.
    fn judge(&self, result: Result<Outcome, Error>) -> Result<(), Error> {
        let (kind, ids) = (self.kind, &self.ids);
        let honest = !self.lied.load(Ordering::SeqCst);
        let want = expected(kind, ids);
        let mut outcomes = lock(&self.outcomes);
        match (result, &want) {
            (Err(Error::Invalid(e)), Expected::Invalid) => {
                assert!(
                    matches!(
                        e,
                        ProtocolError::InvalidKey(_) | ProtocolError::ValueTooLarge { .. }
                    ),
                    "{kind:?} {ids:?} refused for another reason: {e}"
                );
                outcomes.refused += 1;
                outcomes.checked += 1;
                Ok(())
            }
            (result, Expected::Invalid) => {
                panic!("{kind:?} {ids:?} must be refused before sending; it returned {result:?}")
            }
            (Err(e @ Error::Invalid(_)), _) => panic!("a valid call was refused: {e}"),
            (Ok(got), Expected::Ok(outcome)) if honest => {
                assert_eq!(
                    &got, outcome,
                    "{kind:?} {ids:?} received a reply that is not its own"
                );
                outcomes.checked += 1;
                Ok(())
            }
            (
                Err(Error::Server {
                    node,
                    kind: got,
                    message,
                }),
                Expected::Server {
                    kind: wanted,
                    message: wanted_message,
                },
            ) if honest => {
                assert!(
                    node == NODE && got == *wanted && wanted_message.map_or(true, |m| m == message),
                    "{kind:?} {ids:?} received the server error {got:?} {message:?} from {node}; \
                     its own answer is {want:?}"
                );
                outcomes.checked += 1;
                Ok(())
            }
            (Ok(got), _) if honest => {
                panic!("{kind:?} {ids:?} received {got:?}; its own answer is {want:?}")
            }
            (Err(e @ Error::Server { .. }), _) if honest => {
                panic!("{kind:?} {ids:?} received {e:?}; its own answer is {want:?}")
            }
            // After a lie, any answer may be a lie's.
            (Ok(_), _) => Ok(()),
            (Err(e), _) => {
                match &e {
                    Error::Protocol { .. } | Error::Tls { .. } if honest => {
                        panic!("a protocol error while the server told no lie: {e}")
                    }
                    // A lie that starts like a TLS record is explained as a server that
                    // requires TLS.
                    Error::Tls {
                        kind: TlsErrorKind::ServerRequiresTls,
                        ..
                    } => {}
                    Error::Protocol { .. }
                    | Error::Server { .. }
                    | Error::Timeout { .. }
                    | Error::Io { .. }
                    | Error::NodeDown { .. } => {}
                    other => panic!("{kind:?} {ids:?}: an error no connection gives: {other:?}"),
                }
                if !matches!(e, Error::Server { .. }) {
                    outcomes.errors += 1;
                }
                Err(e)
            }
        }
    }
}

/// Makes the call of `kind` on keys `ids` through the client's public API, and returns its
/// typed result.
async fn call(client: &Client, kind: Kind, ids: &[u64]) -> Result<Outcome, Error> {
    let first = ids.first().copied().unwrap_or(0);
    let key = server::key(first);
    let value = server::value(first);
    let none = Duration::ZERO;
    Ok(match kind {
        Kind::Get => Outcome::Value(client.get(&key).await?),
        Kind::Gets => Outcome::Item(client.gets(&key).await?),
        Kind::Gat => Outcome::Value(client.gat(&key, TTL).await?),
        Kind::GetMany => {
            let keys: Vec<String> = ids.iter().map(|&id| server::key(id)).collect();
            Outcome::Values(client.get_many(keys).await?)
        }
        Kind::Set => {
            client.set(&key, &value, none).await?;
            Outcome::Done
        }
        Kind::Store => {
            let flags = server::flags(first);
            Outcome::Bool(
                client
                    .store(StoreMode::Set, &key, &value, none, flags)
                    .await?,
            )
        }
        Kind::Add => Outcome::Bool(client.add(&key, &value, none).await?),
        Kind::Replace => Outcome::Bool(client.replace(&key, &value, none).await?),
        Kind::Append => Outcome::Bool(client.append(&key, &value).await?),
        Kind::Prepend => Outcome::Bool(client.prepend(&key, &value).await?),
        Kind::Cas => Outcome::Cas(client.cas(&key, &value, none, server::cas(first)).await?),
        Kind::Delete => Outcome::Bool(client.delete(&key).await?),
        Kind::Incr => Outcome::Number(client.incr(&key, DELTA).await?),
        Kind::Decr => Outcome::Number(client.decr(&key, DELTA).await?),
        Kind::Touch => Outcome::Bool(client.touch(&key, TTL).await?),
        Kind::FlushAll => {
            client.flush_all().await?;
            Outcome::Done
        }
        Kind::Stats => Outcome::Stats(client.stats(None).await?),
        Kind::Invalid if first % 2 == 0 => Outcome::Value(client.get(format!("{key} x")).await?),
        Kind::Invalid => {
            client.set(&key, vec![b'v'; MAX_VALUE + 1], none).await?;
            Outcome::Done
        }
    })
}

pub(crate) async fn yield_times(turns: u8) {
    for _ in 0..turns {
        tokio::task::yield_now().await;
    }
}
