//! The decompressors, each bounded by the codec's limit, and the one compressor.

use bytes::Bytes;

use super::CodecError;

/// Reads at most `limit + 1` bytes from `reader`; more than `limit` is [`CodecError::TooLarge`].
#[cfg(any(feature = "zstd", feature = "gzip"))]
fn read_bounded(
    mut reader: impl std::io::Read,
    limit: usize,
    codec: &'static str,
) -> Result<Bytes, CodecError> {
    use std::io::Read;
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    (&mut reader)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| CodecError::Corrupt {
            codec,
            message: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(CodecError::TooLarge { limit });
    }
    Ok(out.into())
}

/// A zstd frame of `value`, or `None` when the feature is off.
pub(super) fn zstd_compress(value: &[u8], level: i32) -> Result<Option<Vec<u8>>, CodecError> {
    #[cfg(feature = "zstd")]
    {
        zstd::bulk::compress(value, level)
            .map(Some)
            .map_err(|e| CodecError::Corrupt {
                codec: "zstd",
                message: e.to_string(),
            })
    }
    #[cfg(not(feature = "zstd"))]
    {
        let _ = (value, level);
        Ok(None)
    }
}

/// The bytes of the zstd frames in `stored`, at most `limit` of them.
pub(super) fn zstd_decompress(
    flags: u32,
    stored: &[u8],
    limit: usize,
) -> Result<Bytes, CodecError> {
    #[cfg(feature = "zstd")]
    {
        let _ = flags;
        // A frame that declares a larger content size is refused before anything is inflated.
        if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(stored) {
            if size > limit as u64 {
                return Err(CodecError::TooLarge { limit });
            }
        }
        let decoder =
            zstd::stream::read::Decoder::with_buffer(stored).map_err(|e| CodecError::Corrupt {
                codec: "zstd",
                message: e.to_string(),
            })?;
        read_bounded(decoder, limit, "zstd")
    }
    #[cfg(not(feature = "zstd"))]
    {
        let _ = (stored, limit);
        Err(CodecError::FeatureDisabled {
            flags,
            codec: "zstd",
        })
    }
}

/// The bytes of the gzip stream in `stored`, at most `limit` of them.
pub(super) fn gzip_decompress(
    flags: u32,
    stored: &[u8],
    limit: usize,
) -> Result<Bytes, CodecError> {
    #[cfg(feature = "gzip")]
    {
        let _ = flags;
        read_bounded(flate2::read::GzDecoder::new(stored), limit, "gzip")
    }
    #[cfg(not(feature = "gzip"))]
    {
        let _ = (stored, limit);
        Err(CodecError::FeatureDisabled {
            flags,
            codec: "gzip",
        })
    }
}
