//! The server the harness plays, and the answers it gives. Every request the harness sends
//! names its keys `k<id>` with ids never used twice, and every answer is a pure function of
//! the request's kind and ids, written twice here on purpose: as the bytes a memcached server
//! would send ([`reply_bytes`]) and as the [`Response`] a caller must receive
//! ([`expected_response`]). A caller that receives anything else got another request's reply,
//! or the decoder read the bytes wrongly.
//!
//! [`read_request`] reads what the client wrote back into a kind and ids, independently of the
//! crate's encoder, and refuses anything that is not a whole, well-formed request.

use bytes::{Bytes, BytesMut};

use crate::protocol::{ErrorReply, Expect, Item, Limits, Request, Response, Retrieval, StoreMode};

/// The requests the harness sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Kind {
    Get,
    Gets,
    Gat,
    Gats,
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
    Delete,
    Incr,
    Decr,
    Touch,
    FlushAll,
    Version,
    Stats,
    Config,
}

impl Kind {
    const ALL: [Kind; 18] = [
        Kind::Get,
        Kind::Gets,
        Kind::Gat,
        Kind::Gats,
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
        Kind::Version,
        Kind::Stats,
        Kind::Config,
    ];

    /// The kind a script byte picks; retrievals (the pipelined common case) twice as often.
    pub(crate) fn pick(byte: u8) -> Kind {
        let n = Kind::ALL.len() + 4;
        match usize::from(byte) % n {
            i if i < Kind::ALL.len() => Kind::ALL[i],
            i => Kind::ALL[i - Kind::ALL.len()],
        }
    }

    /// Whether the request may be sent twice (the crate's rule, restated): a request that is
    /// not must reach the server at most once, whatever broke.
    pub(crate) fn is_idempotent(self) -> bool {
        matches!(
            self,
            Kind::Get
                | Kind::Gets
                | Kind::Gat
                | Kind::Gats
                | Kind::Set
                | Kind::Touch
                | Kind::Version
                | Kind::Stats
                | Kind::Config
        )
    }

    /// The script byte that picks this kind.
    pub(crate) fn index(self) -> u8 {
        Kind::ALL.iter().position(|&k| k == self).unwrap_or(0) as u8
    }

    /// How many keys a request of this kind names when a script byte asks for `wanted`.
    pub(crate) fn key_count(self, wanted: u8) -> u8 {
        match self {
            Kind::Get | Kind::Gets | Kind::Gat | Kind::Gats => 1 + wanted % 4,
            Kind::FlushAll | Kind::Version | Kind::Stats | Kind::Config => 0,
            _ => 1,
        }
    }
}

fn key(id: u64) -> Vec<u8> {
    format!("k{id}").into_bytes()
}

/// The value stored under key `id` (empty for some ids).
fn value(id: u64) -> Vec<u8> {
    format!("{id}:").repeat((id % 7) as usize).into_bytes()
}

fn flags(id: u64) -> u32 {
    (id.wrapping_mul(2_654_435_761) >> 7) as u32
}

fn cas(id: u64) -> u64 {
    id + 1_000
}

fn is_hit(id: u64) -> bool {
    id % 4 != 3
}

/// A server error instead of the normal answer, for some ids of keyed requests.
fn server_error(ids: &[u64]) -> Option<&'static str> {
    match ids.first().map(|id| id % 17) {
        Some(12) => Some("SERVER_ERROR out of memory storing object"),
        Some(13) => Some("CLIENT_ERROR bad data chunk"),
        _ => None,
    }
}

const VERSION: &str = "1.6.18";
const CONFIG_BLOCK: &[u8] = b"7\nnode-1|127.0.0.1|11211 node-2|127.0.0.2|11211\n";

/// The encoded request of `kind` for keys `ids`, the reply it expects, and whether it is
/// idempotent.
pub(crate) fn encode(kind: Kind, ids: &[u64], limits: &Limits) -> (Bytes, Expect, bool) {
    let keys: Vec<Vec<u8>> = ids.iter().map(|&id| key(id)).collect();
    let key_refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let first = ids.first().copied().unwrap_or(0);
    let stored = value(first);
    let store = |mode| Request::Store {
        mode,
        key: &keys[0],
        flags: flags(first),
        exptime: 0,
        value: &stored,
    };
    let request = match kind {
        Kind::Get => retrieve(Retrieval::Get, &key_refs),
        Kind::Gets => retrieve(Retrieval::Gets, &key_refs),
        Kind::Gat => retrieve(Retrieval::Gat(60), &key_refs),
        Kind::Gats => retrieve(Retrieval::Gats(60), &key_refs),
        Kind::Set => store(StoreMode::Set),
        Kind::Add => store(StoreMode::Add),
        Kind::Replace => store(StoreMode::Replace),
        Kind::Append => store(StoreMode::Append),
        Kind::Prepend => store(StoreMode::Prepend),
        Kind::Cas => Request::Cas {
            key: &keys[0],
            flags: flags(first),
            exptime: 0,
            value: &stored,
            cas: cas(first),
        },
        Kind::Delete => Request::Delete { key: &keys[0] },
        Kind::Incr => Request::Incr {
            key: &keys[0],
            delta: 3,
        },
        Kind::Decr => Request::Decr {
            key: &keys[0],
            delta: 3,
        },
        Kind::Touch => Request::Touch {
            key: &keys[0],
            exptime: 60,
        },
        Kind::FlushAll => Request::FlushAll { delay: None },
        Kind::Version => Request::Version,
        Kind::Stats => Request::Stats { arg: None },
        Kind::Config => Request::ConfigGetCluster,
    };
    let mut frame = BytesMut::new();
    match request.encode(&mut frame, limits) {
        Ok(expect) => (frame.freeze(), expect, request.is_idempotent()),
        Err(e) => panic!("the harness built an invalid request {kind:?} {ids:?}: {e}"),
    }
}

fn retrieve<'a>(kind: Retrieval, keys: &'a [&'a [u8]]) -> Request<'a> {
    Request::Retrieve { kind, keys }
}

/// The bytes a memcached server sends for `kind` on keys `ids`.
pub(crate) fn reply_bytes(kind: Kind, ids: &[u64]) -> Vec<u8> {
    let first = ids.first().copied().unwrap_or(0);
    if let Some(line) = server_error(ids) {
        return format!("{line}\r\n").into_bytes();
    }
    let line = |s: &str| format!("{s}\r\n").into_bytes();
    match kind {
        Kind::Get | Kind::Gets | Kind::Gat | Kind::Gats => {
            let with_cas = matches!(kind, Kind::Gets | Kind::Gats);
            let mut out = Vec::new();
            for &id in ids.iter().filter(|&&id| is_hit(id)) {
                let v = value(id);
                let mut header = format!("VALUE k{id} {} {}", flags(id), v.len());
                if with_cas {
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
        Kind::Set | Kind::Append | Kind::Prepend => line("STORED"),
        Kind::Add if first % 2 == 0 => line("STORED"),
        Kind::Add => line("NOT_STORED"),
        Kind::Replace if first % 3 == 0 => line("NOT_STORED"),
        Kind::Replace => line("STORED"),
        Kind::Cas => line(["EXISTS", "NOT_FOUND", "STORED"][(first % 3) as usize]),
        Kind::Delete if first % 2 == 0 => line("DELETED"),
        Kind::Touch if first % 2 == 0 => line("TOUCHED"),
        Kind::Delete | Kind::Touch => line("NOT_FOUND"),
        Kind::Incr | Kind::Decr if first % 5 == 0 => line("NOT_FOUND"),
        Kind::Incr | Kind::Decr => line(&first.to_string()),
        Kind::FlushAll => line("OK"),
        Kind::Version => line(&format!("VERSION {VERSION}")),
        Kind::Stats => b"STAT pid 4242\r\nSTAT curr_items 7\r\nEND\r\n".to_vec(),
        Kind::Config => {
            let mut out = format!("CONFIG cluster 0 {}\r\n", CONFIG_BLOCK.len()).into_bytes();
            out.extend_from_slice(CONFIG_BLOCK);
            out.extend_from_slice(b"\r\nEND\r\n");
            out
        }
    }
}

/// What a caller must receive for `kind` on keys `ids`.
pub(crate) fn expected_response(kind: Kind, ids: &[u64]) -> Response {
    let first = ids.first().copied().unwrap_or(0);
    match server_error(ids) {
        Some(line) if line.starts_with("SERVER_ERROR") => {
            return Response::Error(ErrorReply::Server("out of memory storing object".into()))
        }
        Some(_) => return Response::Error(ErrorReply::Client("bad data chunk".into())),
        None => {}
    }
    match kind {
        Kind::Get | Kind::Gets | Kind::Gat | Kind::Gats => {
            let with_cas = matches!(kind, Kind::Gets | Kind::Gats);
            let items = ids
                .iter()
                .filter(|&&id| is_hit(id))
                .map(|&id| Item {
                    key: Bytes::from(key(id)),
                    flags: flags(id),
                    cas: with_cas.then(|| cas(id)),
                    value: Bytes::from(value(id)),
                })
                .collect();
            Response::Values(items)
        }
        Kind::Set | Kind::Append | Kind::Prepend => Response::Stored,
        Kind::Add if first % 2 == 0 => Response::Stored,
        Kind::Add => Response::NotStored,
        Kind::Replace if first % 3 == 0 => Response::NotStored,
        Kind::Replace => Response::Stored,
        Kind::Cas => {
            [Response::Exists, Response::NotFound, Response::Stored][(first % 3) as usize].clone()
        }
        Kind::Delete if first % 2 == 0 => Response::Deleted,
        Kind::Touch if first % 2 == 0 => Response::Touched,
        Kind::Delete | Kind::Touch => Response::NotFound,
        Kind::Incr | Kind::Decr if first % 5 == 0 => Response::NotFound,
        Kind::Incr | Kind::Decr => Response::Number(first),
        Kind::FlushAll => Response::Ok,
        Kind::Version => Response::Version(VERSION.into()),
        Kind::Stats => Response::Stats(vec![
            ("pid".into(), "4242".into()),
            ("curr_items".into(), "7".into()),
        ]),
        Kind::Config => Response::Config(Some(Bytes::from_static(CONFIG_BLOCK))),
    }
}

/// One request as the server read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Asked {
    pub kind: Kind,
    pub ids: Vec<u64>,
}

/// Reads one whole request from the front of `buf`: `Ok(None)` when more bytes are needed,
/// `Err` when the bytes are not a request the harness sent.
pub(crate) fn read_request(buf: &[u8]) -> Result<Option<(Asked, usize)>, String> {
    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() > 1024 || buf.contains(&b'\n') {
            return Err(format!(
                "no request line: {:?}",
                String::from_utf8_lossy(buf)
            ));
        }
        return Ok(None);
    };
    let line = std::str::from_utf8(&buf[..eol]).map_err(|_| "a request line that is not UTF-8")?;
    let words: Vec<&str> = line.split(' ').collect();
    let bad = || format!("malformed request line {line:?}");
    let id_of = |word: &str| -> Result<u64, String> {
        word.strip_prefix('k')
            .and_then(|n| n.parse().ok())
            .ok_or_else(bad)
    };
    let one = |kind: Kind, words_needed: usize| -> Result<Option<(Asked, usize)>, String> {
        if words.len() != words_needed {
            return Err(bad());
        }
        let ids = vec![id_of(words[1])?];
        Ok(Some((Asked { kind, ids }, eol + 2)))
    };
    let none = |kind: Kind| {
        Ok(Some((
            Asked {
                kind,
                ids: Vec::new(),
            },
            eol + 2,
        )))
    };
    let keys = |kind: Kind, from: usize| -> Result<Option<(Asked, usize)>, String> {
        if words.len() <= from {
            return Err(bad());
        }
        let ids = words[from..]
            .iter()
            .map(|w| id_of(w))
            .collect::<Result<_, _>>()?;
        Ok(Some((Asked { kind, ids }, eol + 2)))
    };
    match words[0] {
        "get" => keys(Kind::Get, 1),
        "gets" => keys(Kind::Gets, 1),
        "gat" if words.len() > 1 && words[1] == "60" => keys(Kind::Gat, 2),
        "gats" if words.len() > 1 && words[1] == "60" => keys(Kind::Gats, 2),
        "set" | "add" | "replace" | "append" | "prepend" | "cas" => {
            let kind = match words[0] {
                "set" => Kind::Set,
                "add" => Kind::Add,
                "replace" => Kind::Replace,
                "append" => Kind::Append,
                "prepend" => Kind::Prepend,
                _ => Kind::Cas,
            };
            let expected_words = if kind == Kind::Cas { 6 } else { 5 };
            if words.len() != expected_words {
                return Err(bad());
            }
            let id = id_of(words[1])?;
            let len: usize = words[4].parse().map_err(|_| bad())?;
            if words[2] != flags(id).to_string()
                || words[3] != "0"
                || (kind == Kind::Cas && words[5] != cas(id).to_string())
            {
                return Err(bad());
            }
            let data = eol + 2;
            let Some(block) = buf.get(data..data + len + 2) else {
                return Ok(None);
            };
            if block[..len] != value(id)[..] || &block[len..] != b"\r\n" {
                return Err(format!("{line:?}: the data block is not the value sent"));
            }
            Ok(Some((
                Asked {
                    kind,
                    ids: vec![id],
                },
                data + len + 2,
            )))
        }
        "delete" => one(Kind::Delete, 2),
        "incr" if words.get(2) == Some(&"3") => one(Kind::Incr, 3),
        "decr" if words.get(2) == Some(&"3") => one(Kind::Decr, 3),
        "touch" if words.get(2) == Some(&"60") => one(Kind::Touch, 3),
        "flush_all" if words.len() == 1 => none(Kind::FlushAll),
        "version" if words.len() == 1 => none(Kind::Version),
        "stats" if words.len() == 1 => none(Kind::Stats),
        "config" if line == "config get cluster" => none(Kind::Config),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::decode;

    /// For every kind and a spread of ids: the request reads back as sent, and the reply bytes
    /// decode to the expected response and nothing else.
    #[test]
    fn model_agrees_with_itself_and_with_the_codec() {
        let limits = Limits::default();
        for kind in Kind::ALL {
            for first in 0..40u64 {
                let ids: Vec<u64> = (first..first + u64::from(kind.key_count(3))).collect();
                let (frame, expect, idempotent) = encode(kind, &ids, &limits);
                assert_eq!(idempotent, kind.is_idempotent(), "{kind:?}");
                let (asked, used) = read_request(&frame).unwrap().unwrap();
                assert_eq!(used, frame.len(), "{kind:?}");
                assert_eq!(
                    asked,
                    Asked {
                        kind,
                        ids: ids.clone()
                    }
                );
                for cut in 0..frame.len() {
                    assert_eq!(
                        read_request(&frame[..cut]),
                        Ok(None),
                        "{kind:?} cut at {cut}"
                    );
                }
                let mut reply = BytesMut::from(&reply_bytes(kind, &ids)[..]);
                let total = reply.len();
                let (response, used) = decode(&mut reply, expect, &limits).unwrap().unwrap();
                assert_eq!(used, total, "{kind:?} {ids:?}");
                assert_eq!(response, expected_response(kind, &ids), "{kind:?} {ids:?}");
            }
        }
    }
}
