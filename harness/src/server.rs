//! The server the harness plays, and the answers it gives. Every call the harness makes names
//! its keys `k<id>` with ids never used twice, and every answer is a pure function of the call's
//! kind and ids, written twice here on purpose: as the bytes a memcached server would send
//! ([`reply_bytes`]) and as the typed result the [`Client`](memcached_autodiscovery::Client)
//! call must return ([`expected`]). A caller that receives anything else got another request's
//! reply, or the client read the bytes wrongly.
//!
//! The bytes the client must write for each call are written out here as well
//! ([`request_bytes`]), independently of the library's encoder; [`read_request`] refuses
//! anything else, and anything that is not a whole request.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use memcached_autodiscovery::{CasOutcome, Item, ServerErrorKind};

/// The node every call goes to, as the client names it.
pub(crate) const NODE: &str = "memory-node:11211";
/// The largest value the harness's client accepts (`ClientBuilder::max_value_size`).
pub(crate) const MAX_VALUE: usize = 4096;
/// The time to live of `gat` and `touch`; stores use none (0).
pub(crate) const TTL: Duration = Duration::from_secs(60);
/// What `incr` and `decr` add or take away.
pub(crate) const DELTA: u64 = 3;

/// The calls the harness makes, each one [`Client`](memcached_autodiscovery::Client) method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `Client::get` of one key.
    Get,
    /// `Client::gets` of one key.
    Gets,
    /// `Client::gat` of one key, time to live 60 s.
    Gat,
    /// `Client::get_many` of 1 to 4 keys: one `get` line.
    GetMany,
    /// `Client::set` (flags 0, no expiry). Some keys are answered `NOT_STORED`, which `set`
    /// turns into an error.
    Set,
    /// `Client::add`.
    Add,
    /// `Client::replace`.
    Replace,
    /// `Client::append`.
    Append,
    /// `Client::prepend`.
    Prepend,
    /// `Client::cas` with the key's CAS token.
    Cas,
    /// `Client::delete`.
    Delete,
    /// `Client::incr` by 3.
    Incr,
    /// `Client::decr` by 3.
    Decr,
    /// `Client::touch`, time to live 60 s.
    Touch,
    /// `Client::flush_all`.
    FlushAll,
    /// `Client::store` in mode set with the key's own flags: `NOT_STORED` is `Ok(false)` here.
    Store,
    /// `Client::stats` without a group.
    Stats,
    /// A call the client must refuse before sending anything: a `get` of a key with a space
    /// (even ids) or a `set` of a value over the maximum size (odd ids).
    Invalid,
}

impl Kind {
    /// Every kind, in the order of the script byte that picks it.
    pub const ALL: [Kind; 18] = [
        Kind::Get,
        Kind::Gets,
        Kind::Gat,
        Kind::GetMany,
        Kind::Set,
        Kind::Add,
        Kind::Replace,
        Kind::Append,
        Kind::Prepend,
        Kind::Cas,
        Kind::Delete,
        Kind::Incr,
        Kind::Decr,
        Kind::Touch,
        Kind::FlushAll,
        Kind::Store,
        Kind::Stats,
        Kind::Invalid,
    ];

    /// The kind a script byte picks; retrievals (the pipelined common case) twice as often.
    pub(crate) fn pick(byte: u8) -> Kind {
        let n = Kind::ALL.len() + 4;
        match usize::from(byte) % n {
            i if i < Kind::ALL.len() => Kind::ALL[i],
            i => Kind::ALL[i - Kind::ALL.len()],
        }
    }

    /// Whether the request may be sent twice (the library's rule, restated): a request that is
    /// not must reach the server at most once, whatever broke.
    pub(crate) fn is_idempotent(self) -> bool {
        matches!(
            self,
            Kind::Get
                | Kind::Gets
                | Kind::Gat
                | Kind::GetMany
                | Kind::Set
                | Kind::Store
                | Kind::Touch
                | Kind::Stats
        )
    }

    /// The script byte that picks this kind.
    pub(crate) fn index(self) -> u8 {
        Kind::ALL.iter().position(|&k| k == self).unwrap_or(0) as u8
    }

    /// How many keys a call of this kind names when a script byte asks for `wanted`.
    pub(crate) fn key_count(self, wanted: u8) -> u8 {
        match self {
            Kind::GetMany => 1 + wanted % 4,
            Kind::FlushAll | Kind::Stats => 0,
            _ => 1,
        }
    }
}

pub(crate) fn key(id: u64) -> String {
    format!("k{id}")
}

/// The value stored under key `id` (empty for some ids).
pub(crate) fn value(id: u64) -> Vec<u8> {
    format!("{id}:").repeat((id % 7) as usize).into_bytes()
}

pub(crate) fn flags(id: u64) -> u32 {
    (id.wrapping_mul(2_654_435_761) >> 7) as u32
}

pub(crate) fn cas(id: u64) -> u64 {
    id + 1_000
}

fn is_hit(id: u64) -> bool {
    id % 4 != 3
}

/// A server error instead of the normal answer, for some ids of keyed requests.
fn server_error(ids: &[u64]) -> Option<(&'static str, ServerErrorKind)> {
    match ids.first().map(|id| id % 17) {
        Some(12) => Some((
            "SERVER_ERROR out of memory storing object",
            ServerErrorKind::OutOfMemory,
        )),
        Some(13) => Some(("CLIENT_ERROR bad data chunk", ServerErrorKind::ClientError)),
        _ => None,
    }
}

/// Whether a set (or a store in mode set) of `id` is answered `NOT_STORED`.
fn set_refused(id: u64) -> bool {
    id % 5 == 4
}

/// Whether an append or a prepend of `id` is answered `NOT_STORED` (the key is absent).
fn concat_refused(id: u64) -> bool {
    id % 3 == 1
}

/// The bytes the client must write for a call of `kind` on keys `ids` (nothing for
/// [`Kind::Invalid`], which must never be written).
pub(crate) fn request_bytes(kind: Kind, ids: &[u64]) -> Vec<u8> {
    let first = ids.first().copied().unwrap_or(0);
    let storage = |verb: &str, flags: u32, cas: Option<u64>| {
        let v = value(first);
        let cas = cas.map(|c| format!(" {c}")).unwrap_or_default();
        let mut out = format!("{verb} k{first} {flags} 0 {}{cas}\r\n", v.len()).into_bytes();
        out.extend_from_slice(&v);
        out.extend_from_slice(b"\r\n");
        out
    };
    let line = |s: String| format!("{s}\r\n").into_bytes();
    let ttl = TTL.as_secs();
    match kind {
        Kind::Get => line(format!("get k{first}")),
        Kind::Gets => line(format!("gets k{first}")),
        Kind::Gat => line(format!("gat {ttl} k{first}")),
        Kind::GetMany => {
            let keys: Vec<String> = ids.iter().map(|&id| key(id)).collect();
            line(format!("get {}", keys.join(" ")))
        }
        Kind::Set => storage("set", 0, None),
        Kind::Store => storage("set", flags(first), None),
        Kind::Add => storage("add", 0, None),
        Kind::Replace => storage("replace", 0, None),
        Kind::Append => storage("append", 0, None),
        Kind::Prepend => storage("prepend", 0, None),
        Kind::Cas => storage("cas", 0, Some(cas(first))),
        Kind::Delete => line(format!("delete k{first}")),
        Kind::Incr => line(format!("incr k{first} {DELTA}")),
        Kind::Decr => line(format!("decr k{first} {DELTA}")),
        Kind::Touch => line(format!("touch k{first} {ttl}")),
        Kind::FlushAll => line("flush_all".into()),
        Kind::Stats => line("stats".into()),
        Kind::Invalid => Vec::new(),
    }
}

/// The bytes a memcached server sends for a call of `kind` on keys `ids`.
pub(crate) fn reply_bytes(kind: Kind, ids: &[u64]) -> Vec<u8> {
    let first = ids.first().copied().unwrap_or(0);
    if let Some((line, _)) = server_error(ids) {
        return format!("{line}\r\n").into_bytes();
    }
    let line = |s: &str| format!("{s}\r\n").into_bytes();
    let stored = |refused: bool| line(if refused { "NOT_STORED" } else { "STORED" });
    match kind {
        Kind::Get | Kind::Gets | Kind::Gat | Kind::GetMany => {
            let mut out = Vec::new();
            for &id in ids.iter().filter(|&&id| is_hit(id)) {
                let v = value(id);
                let mut header = format!("VALUE k{id} {} {}", flags(id), v.len());
                if kind == Kind::Gets {
                    header.push_str(&format!(" {}", cas(id)));
                }
                out.extend_from_slice(header.as_bytes());
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(&v);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"END\r\n");
            out
        }
        Kind::Set | Kind::Store => stored(set_refused(first)),
        Kind::Add => stored(first % 2 == 1),
        Kind::Replace => stored(first % 3 == 0),
        Kind::Append | Kind::Prepend => stored(concat_refused(first)),
        Kind::Cas => line(["EXISTS", "NOT_FOUND", "STORED"][(first % 3) as usize]),
        Kind::Delete if first % 2 == 0 => line("DELETED"),
        Kind::Touch if first % 2 == 0 => line("TOUCHED"),
        Kind::Delete | Kind::Touch => line("NOT_FOUND"),
        Kind::Incr | Kind::Decr if first % 5 == 0 => line("NOT_FOUND"),
        Kind::Incr | Kind::Decr => line(&first.to_string()),
        Kind::FlushAll => line("OK"),
        Kind::Stats => b"STAT pid 4242\r\nSTAT curr_items 7\r\nEND\r\n".to_vec(),
        Kind::Invalid => Vec::new(),
    }
}

/// A call's result, as the typed value its `Client` method returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// `get`, `gat`: the value or a miss.
    Value(Option<Bytes>),
    /// `gets`: the item or a miss.
    Item(Option<Item>),
    /// `get_many`: the hits.
    Values(HashMap<Bytes, Bytes>),
    /// `set`, `flush_all`: done.
    Done,
    /// `add`, `replace`, `append`, `prepend`, `store`, `delete`, `touch`.
    Bool(bool),
    /// `cas`.
    Cas(CasOutcome),
    /// `incr`, `decr`: the new value or a miss.
    Number(Option<u64>),
    /// `stats`: the pairs of each node.
    Stats(Vec<(String, Vec<(String, String)>)>),
}

/// What a call must end with, when the connection carries its request and its reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expected {
    /// This result.
    Ok(Outcome),
    /// `Error::Server` of this kind from the node, with this message when given.
    Server {
        kind: ServerErrorKind,
        message: Option<&'static str>,
    },
    /// `Error::Invalid`: refused before anything was sent.
    Invalid,
}

/// What a call of `kind` on keys `ids` must return.
pub(crate) fn expected(kind: Kind, ids: &[u64]) -> Expected {
    if kind == Kind::Invalid {
        return Expected::Invalid;
    }
    let first = ids.first().copied().unwrap_or(0);
    if let Some((message, kind)) = server_error(ids) {
        return Expected::Server {
            kind,
            message: Some(message),
        };
    }
    let hit = |id: u64| is_hit(id).then(|| Bytes::from(value(id)));
    let outcome = match kind {
        Kind::Get | Kind::Gat => Outcome::Value(hit(first)),
        Kind::Gets => Outcome::Item(
            is_hit(first)
                .then(|| Item::new(key(first), flags(first), Some(cas(first)), value(first))),
        ),
        Kind::GetMany => Outcome::Values(
            ids.iter()
                .filter_map(|&id| Some((Bytes::from(key(id)), hit(id)?)))
                .collect(),
        ),
        Kind::Set if set_refused(first) => {
            return Expected::Server {
                kind: ServerErrorKind::NotStored,
                message: None,
            }
        }
        Kind::Set | Kind::FlushAll => Outcome::Done,
        Kind::Store => Outcome::Bool(!set_refused(first)),
        Kind::Add => Outcome::Bool(first % 2 == 0),
        Kind::Replace => Outcome::Bool(first % 3 != 0),
        Kind::Append | Kind::Prepend => Outcome::Bool(!concat_refused(first)),
        Kind::Cas => Outcome::Cas(
            [CasOutcome::Exists, CasOutcome::NotFound, CasOutcome::Stored][(first % 3) as usize],
        ),
        Kind::Delete | Kind::Touch => Outcome::Bool(first % 2 == 0),
        Kind::Incr | Kind::Decr => Outcome::Number((first % 5 != 0).then_some(first)),
        Kind::Stats => Outcome::Stats(vec![(
            NODE.to_string(),
            vec![
                ("pid".into(), "4242".into()),
                ("curr_items".into(), "7".into()),
            ],
        )]),
        Kind::Invalid => unreachable!("answered above"),
    };
    Expected::Ok(outcome)
}

/// One call as the harness made it, and as the server read its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Asked {
    pub kind: Kind,
    pub ids: Vec<u64>,
}

/// Reads one whole request from the front of `buf`: `Ok(None)` when more bytes are needed,
/// `Err` when the bytes are not exactly the request of a call the harness made. `issued` holds
/// the calls made, by their first key's id (keyless calls are told by their line).
pub(crate) fn read_request(
    buf: &[u8],
    issued: &HashMap<u64, Asked>,
) -> Result<Option<(Asked, usize)>, String> {
    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() > 1024 || buf.contains(&b'\n') {
            return Err(format!("no request line: {:?}", excerpt(buf)));
        }
        return Ok(None);
    };
    let line = std::str::from_utf8(&buf[..eol]).map_err(|_| "a request line that is not UTF-8")?;
    let asked = match line {
        "flush_all" => Asked {
            kind: Kind::FlushAll,
            ids: Vec::new(),
        },
        "stats" => Asked {
            kind: Kind::Stats,
            ids: Vec::new(),
        },
        _ => {
            let id = line
                .split(' ')
                .find_map(|w| w.strip_prefix('k').and_then(|n| n.parse::<u64>().ok()))
                .ok_or_else(|| format!("malformed request line {line:?}"))?;
            issued
                .get(&id)
                .cloned()
                .ok_or_else(|| format!("{line:?} does not start a call the harness made"))?
        }
    };
    if asked.kind == Kind::Invalid {
        return Err(format!(
            "{line:?}: the client sent a call it must refuse ({:?})",
            asked.ids
        ));
    }
    let frame = request_bytes(asked.kind, &asked.ids);
    let whole = buf.len() >= frame.len();
    let agrees = if whole {
        buf.starts_with(&frame)
    } else {
        frame.starts_with(buf)
    };
    match (agrees, whole) {
        (true, true) => Ok(Some((asked, frame.len()))),
        (true, false) => Ok(None),
        (false, _) => Err(format!(
            "{:?} {:?} was written as {:?}, not as {:?}",
            asked.kind,
            asked.ids,
            excerpt(&buf[..buf.len().min(frame.len() + 16)]),
            excerpt(&frame)
        )),
    }
}

fn excerpt(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(160)];
    cut.escape_ascii().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// For every kind and a spread of ids: the request reads back as the call that made it,
    /// whole and not before its last byte; the reply and the expected result agree on what a
    /// miss, a refusal and a server error are.
    #[test]
    fn the_model_agrees_with_itself() {
        for kind in Kind::ALL {
            for first in 0..40u64 {
                let ids: Vec<u64> = (first..first + u64::from(kind.key_count(3))).collect();
                let asked = Asked {
                    kind,
                    ids: ids.clone(),
                };
                let mut issued = HashMap::new();
                issued.insert(first, asked.clone());
                let frame = request_bytes(kind, &ids);
                if kind == Kind::Invalid {
                    assert!(frame.is_empty());
                    assert_eq!(expected(kind, &ids), Expected::Invalid);
                    continue;
                }
                assert_eq!(
                    read_request(&frame, &issued),
                    Ok(Some((asked, frame.len()))),
                    "{kind:?}"
                );
                for cut in 0..frame.len() {
                    assert_eq!(
                        read_request(&frame[..cut], &issued),
                        Ok(None),
                        "{kind:?} cut at {cut}"
                    );
                }
                let reply = reply_bytes(kind, &ids);
                assert!(reply.ends_with(b"\r\n"), "{kind:?}");
                let is_error = reply.starts_with(b"SERVER_ERROR") || reply.starts_with(b"CLIENT");
                assert_eq!(
                    is_error,
                    matches!(
                        expected(kind, &ids),
                        Expected::Server {
                            message: Some(_),
                            ..
                        }
                    ),
                    "{kind:?} {ids:?}"
                );
            }
        }
        let issued = HashMap::new();
        assert!(read_request(b"get k1\r\n", &issued).is_err());
        assert!(read_request(b"version\r\n", &issued).is_err());
    }
}
