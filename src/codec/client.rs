//! The [`Client`] calls that store and read values through a [`Codec`].

use std::time::Duration;

use bytes::Bytes;

use super::Codec;
use crate::error::Error;
use crate::Client;

impl Client {
    /// The value of `key` decoded by `codec` (decompressed if its flags say so), or `None` on a
    /// miss. A value whose flags `codec` does not read fails with [`Error::Codec`], never
    /// returning the stored bytes as if they were the value. Served from the near cache when
    /// the client has one ([`ClientBuilder::near_cache`](crate::ClientBuilder::near_cache)).
    pub async fn get_decoded(
        &self,
        codec: &Codec,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<Bytes>, Error> {
        let read = self.decoded("get_decoded", codec, key.as_ref());
        crate::metrics::timed("get_decoded", read).await
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
        let store = self.encoded("set_encoded", codec, key.as_ref(), value.as_ref(), ttl);
        crate::metrics::timed("set_encoded", store).await
    }

    /// `get_decoded`'s read, with `op` naming its span (not counted in the metrics).
    async fn decoded(
        &self,
        op: &'static str,
        codec: &Codec,
        key: &[u8],
    ) -> Result<Option<Bytes>, Error> {
        match self.read_value(op, key, true).await? {
            Some((value, flags)) => Ok(Some(codec.decode(flags, value)?)),
            None => Ok(None),
        }
    }

    /// `set_encoded`'s store, with `op` naming its span (not counted in the metrics).
    async fn encoded(
        &self,
        op: &'static str,
        codec: &Codec,
        key: &[u8],
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), Error> {
        let (flags, stored) = codec.encode(value)?;
        self.set_as(op, key, &stored, ttl, flags).await
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

    /// As [`Client::get_json`], through `codec` (counted in the metrics as `get_json`).
    pub async fn get_json_with<T: serde::de::DeserializeOwned>(
        &self,
        codec: &Codec,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<T>, Error> {
        let read = async {
            match self.decoded("get_json", codec, key.as_ref()).await? {
                Some(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(json_error)?)),
                None => Ok(None),
            }
        };
        crate::metrics::timed("get_json", read).await
    }

    /// Stores `value` as JSON under `key` through [`Codec::default`]: compressed with zstd
    /// above [`DEFAULT_COMPRESS_ABOVE`](super::DEFAULT_COMPRESS_ABOVE) bytes when the `zstd`
    /// feature is on, plain JSON with flags `0` otherwise. Read it back with
    /// [`Client::get_json`]: a plain [`Client::get`] returns the stored bytes as they are
    /// (compressed ones included).
    pub async fn set_json<T: serde::Serialize + ?Sized>(
        &self,
        key: impl AsRef<[u8]>,
        value: &T,
        ttl: Duration,
    ) -> Result<(), Error> {
        self.set_json_with(&Codec::default(), key, value, ttl).await
    }

    /// As [`Client::set_json`], through `codec` (counted in the metrics as `set_json`).
    pub async fn set_json_with<T: serde::Serialize + ?Sized>(
        &self,
        codec: &Codec,
        key: impl AsRef<[u8]>,
        value: &T,
        ttl: Duration,
    ) -> Result<(), Error> {
        let store = async {
            let json = serde_json::to_vec(value).map_err(json_error)?;
            self.encoded("set_json", codec, key.as_ref(), &json, ttl)
                .await
        };
        crate::metrics::timed("set_json", store).await
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
