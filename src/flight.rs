//! In-process single flight: callers of one client that ask for the same key at the same time
//! share one flight. The first becomes the leader and does the work; the others wait for its
//! outcome. A leader that is cancelled or fails frees the key at once, and each waiter then
//! tries again itself (becoming the next leader, or following one). This module knows nothing of
//! memcached: what a flight does is its caller's business ([`crate::lease`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::Error;

type Outcome<T> = Option<Result<T, Error>>;

/// The flights in progress, by key.
pub(crate) struct Flights<T> {
    leaders: Mutex<HashMap<Bytes, watch::Receiver<Outcome<T>>>>,
}

impl<T> Default for Flights<T> {
    fn default() -> Self {
        Flights {
            leaders: Mutex::default(),
        }
    }
}

/// What a caller is in a flight.
enum Role<T> {
    Leader(watch::Sender<Outcome<T>>),
    Follower(watch::Receiver<Outcome<T>>),
}

/// Removes the leader's entry when the leader finishes or is dropped (cancelled): waiters then
/// see the flight end, with or without an outcome.
struct Leading<'a, T> {
    flights: &'a Flights<T>,
    key: Bytes,
}

impl<T> Drop for Leading<'_, T> {
    fn drop(&mut self) {
        if let Ok(mut leaders) = self.flights.leaders.lock() {
            leaders.remove(&self.key);
        }
    }
}

impl<T: Clone> Flights<T> {
    fn join(&self, key: &Bytes) -> Role<T> {
        let mut leaders = self
            .leaders
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(rx) = leaders.get(key) {
            // A flight whose leader is gone (its sender dropped) is over: lead a new one.
            if rx.has_changed().is_ok() {
                return Role::Follower(rx.clone());
            }
        }
        let (tx, rx) = watch::channel(None);
        leaders.insert(key.clone(), rx);
        Role::Leader(tx)
    }

    /// Runs `lead` for `key` unless another caller of this process already does; then waits
    /// for that caller's value until `deadline`. A follower whose leader failed or was cancelled
    /// tries again, as leader or follower, until `deadline`; `lead` is called at most once.
    /// `timeout` makes the error of a follower that waited in vain.
    pub(crate) async fn run<F, Fut>(
        &self,
        key: Bytes,
        deadline: Instant,
        timeout: impl Fn() -> Error,
        lead: F,
    ) -> Result<T, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut lead = Some(lead);
        loop {
            match self.join(&key) {
                Role::Leader(tx) => {
                    let _leading = Leading {
                        flights: self,
                        key: key.clone(),
                    };
                    // A caller leads once: the branch returns.
                    let Some(lead) = lead.take() else {
                        return Err(timeout());
                    };
                    let outcome = lead().await;
                    let _ = tx.send(Some(outcome.clone()));
                    return outcome;
                }
                Role::Follower(mut rx) => {
                    // Waiting for another caller's flight: on the heap, out of every call's
                    // future.
                    let ended = tokio::time::timeout_at(deadline, rx.wait_for(Option::is_some));
                    match Box::pin(ended).await {
                        Err(_) => return Err(timeout()),
                        Ok(Ok(outcome)) => {
                            if let Some(Ok(value)) = outcome.as_ref() {
                                return Ok(value.clone());
                            }
                            // The leader's load failed: its error is its own; try again.
                        }
                        // The leader was cancelled: try again.
                        Ok(Err(_)) => {}
                    }
                    if Instant::now() >= deadline {
                        return Err(timeout());
                    }
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    fn timeout() -> Error {
        Error::NoNodes
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_flight() {
        let flights: Arc<Flights<Bytes>> = Arc::new(Flights::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (flights, runs) = (flights.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                flights
                    .run(Bytes::from_static(b"k"), deadline, timeout, || async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok(Bytes::from_static(b"v"))
                    })
                    .await
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), "v");
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(flights.leaders.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_leader_hands_over_and_a_cancelled_one_frees_the_key() {
        let flights: Arc<Flights<Bytes>> = Arc::new(Flights::default());
        let deadline = Instant::now() + Duration::from_secs(1);
        // A leader that fails: its follower leads next and succeeds.
        let leader = {
            let flights = flights.clone();
            tokio::spawn(async move {
                flights
                    .run(Bytes::from_static(b"k"), deadline, timeout, || async {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Err(Error::NoNodes)
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        let follower = flights.run(Bytes::from_static(b"k"), deadline, timeout, || async {
            Ok(Bytes::from_static(b"second"))
        });
        assert_eq!(follower.await.unwrap(), "second");
        assert!(leader.await.unwrap().is_err());

        // A leader cancelled mid-flight: the key is free at once, by its guard, whose drop
        // removes the flight (not only because a later caller would find the flight's sender
        // gone and replace it: a flight left behind by each cancelled leader is a leak).
        let cancelled = spawn_leader(&flights, b"c", deadline).await;
        cancelled.abort();
        let _ = cancelled.await;
        assert!(
            !flights.leaders.lock().unwrap().contains_key(&b"c"[..]),
            "a cancelled leader removes its flight as it is dropped"
        );

        // A follower waiting for a leader that is cancelled leads next and loads at once (the
        // clock is paused: no time passes), not at its deadline.
        let cancelled = spawn_leader(&flights, b"d", deadline).await;
        let follower = {
            let flights = flights.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                let value = flights
                    .run(Bytes::from_static(b"d"), deadline, timeout, || async {
                        Ok(Bytes::from_static(b"follower's"))
                    })
                    .await;
                (value, start.elapsed())
            })
        };
        tokio::task::yield_now().await;
        cancelled.abort();
        let (value, waited) = follower.await.unwrap();
        assert_eq!(value.unwrap(), "follower's");
        assert_eq!(waited, Duration::ZERO);

        let after = flights.run(Bytes::from_static(b"c"), deadline, timeout, || async {
            Ok(Bytes::from_static(b"mine"))
        });
        assert_eq!(after.await.unwrap(), "mine");
        assert!(flights.leaders.lock().unwrap().is_empty());
    }

    /// A leader of `key` whose load takes a minute, once its flight is in place.
    async fn spawn_leader(
        flights: &Arc<Flights<Bytes>>,
        key: &'static [u8],
        deadline: Instant,
    ) -> tokio::task::JoinHandle<Result<Bytes, Error>> {
        let leader = {
            let flights = flights.clone();
            tokio::spawn(async move {
                flights
                    .run(Bytes::from_static(key), deadline, timeout, || async {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        Ok(Bytes::new())
                    })
                    .await
            })
        };
        for _ in 0..1000 {
            if flights.leaders.lock().unwrap().contains_key(key) {
                return leader;
            }
            tokio::task::yield_now().await;
        }
        panic!("the leader never started");
    }

    #[tokio::test(start_paused = true)]
    async fn a_follower_waits_no_longer_than_its_deadline() {
        let flights: Arc<Flights<Bytes>> = Arc::new(Flights::default());
        let far = Instant::now() + Duration::from_secs(60);
        let leader = {
            let flights = flights.clone();
            tokio::spawn(async move {
                flights
                    .run(Bytes::from_static(b"k"), far, timeout, || async {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        Ok(Bytes::new())
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        let start = Instant::now();
        let near = start + Duration::from_millis(200);
        let waited = flights
            .run(Bytes::from_static(b"k"), near, timeout, || async {
                Ok(Bytes::from_static(b"not called"))
            })
            .await;
        assert!(matches!(waited, Err(Error::NoNodes)));
        assert_eq!(start.elapsed(), Duration::from_millis(200));
        leader.abort();
    }
}
