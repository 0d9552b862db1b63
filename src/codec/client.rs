//! The [`Client`] calls that store and read values through a [`Codec`].

use std::time::Duration;

use bytes::Bytes;

use super::Codec;
use crate::error::{Error, ServerErrorKind};
use crate::protocol::StoreMode;
use crate::Client;

impl Client {
    /// The value of `key` decoded by `codec` (decompressed if its flags say so), or `None` on a
    /// miss. A value whose flags `codec` does not read fails with [`Error::Codec`], never
    /// returning the stored bytes as if they were the value. Reads with `gets`.
    pub async fn get_decoded(
        &self,
        codec: &Codec,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<Bytes>, Error> {
        match self.gets(key).await? {
            Some(item) => Ok(Some(codec.decode(item.flags, item.value)?)),
            None => Ok(None),
        }
    }

    /// Stores `value` under `key` encoded by `codec` (compressed above its threshold, with the
    /// flags that say so). A value longer than the codec's `max_size` fails with
    /// [`Error::Codec`] and nothing is sent.
    pub async fn set_encoded(
        &self,
        codec: &Codec,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        ttl: Duration,
    ) -> Result<(), Error> {
        let (flags, stored) = codec.encode(value.as_ref())?;
        let key = key.as_ref();
        if self.store(StoreMode::Set, key, stored, ttl, flags).await? {
            Ok(())
        } else {
            Err(Error::Server {
                node: self.node_for(key).map(|n| n.id()).unwrap_or_default(),
                kind: ServerErrorKind::NotStored,
                message: "NOT_STORED (a set is expected to always store)".into(),
            })
        }
    }
}

#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Client {
    /// The value of `key` read as JSON of type `T` through [`Codec::default`], or `None` on a
    /// miss. Bytes that are not JSON of that type fail with [`CodecError::Json`](super::CodecError::Json).
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<T>, Error> {
        self.get_json_with(&Codec::default(), key).await
    }

    /// As [`Client::get_json`], through `codec`.
    pub async fn get_json_with<T: serde::de::DeserializeOwned>(
        &self,
        codec: &Codec,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<T>, Error> {
        match self.get_decoded(codec, key).await? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(json_error)?)),
            None => Ok(None),
        }
    }

    /// Stores `value` as JSON under `key` through [`Codec::default`]: compressed with zstd
    /// above [`DEFAULT_COMPRESS_ABOVE`](super::DEFAULT_COMPRESS_ABOVE) bytes when the `zstd`
    /// feature is on, plain JSON with flags `0` otherwise.
    pub async fn set_json<T: serde::Serialize + ?Sized>(
        &self,
        key: impl AsRef<[u8]>,
        value: &T,
        ttl: Duration,
    ) -> Result<(), Error> {
        self.set_json_with(&Codec::default(), key, value, ttl).await
    }

    /// As [`Client::set_json`], through `codec`.
    pub async fn set_json_with<T: serde::Serialize + ?Sized>(
        &self,
        codec: &Codec,
        key: impl AsRef<[u8]>,
        value: &T,
        ttl: Duration,
    ) -> Result<(), Error> {
        let json = serde_json::to_vec(value).map_err(json_error)?;
        self.set_encoded(codec, key, json, ttl).await
    }
}

/// serde_json's error without the input: its category and position.
#[cfg(feature = "serde")]
fn json_error(e: serde_json::Error) -> super::CodecError {
    use serde_json::error::Category;
    let message = match e.classify() {
        Category::Io => "an I/O error while writing JSON".to_string(),
        Category::Syntax => format!("not valid JSON (line {}, column {})", e.line(), e.column()),
        Category::Data => format!(
            "JSON of another shape than the type expects (line {}, column {})",
            e.line(),
            e.column()
        ),
        Category::Eof => "the JSON ends early".to_string(),
    };
    super::CodecError::Json { message }
}
