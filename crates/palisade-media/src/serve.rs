//! How media is served to browsers safely: which content types may be shown inline, the
//! `Content-Disposition` with a sanitised file name, and byte ranges (video seeking).

use palisade_core::{Error, ErrorKind, Result};

/// Types a browser may show inline (Synapse's list): images, audio, video and plain text.
/// Anything else (HTML, SVG, scripts) is served as an attachment, so opening a media URL can
/// never run content in the server's origin.
const INLINE_TYPES: &[&str] = &[
    "text/css",
    "text/plain",
    "text/csv",
    "application/json",
    "application/ld+json",
    "image/jpeg",
    "image/gif",
    "image/png",
    "image/apng",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "video/quicktime",
    "audio/mp4",
    "audio/webm",
    "audio/aac",
    "audio/mpeg",
    "audio/ogg",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wav",
    "audio/flac",
    "audio/x-flac",
];

/// The `Content-Type` to serve (as uploaded when it is a well-formed header value) and
/// whether it may be shown inline.
pub(crate) fn served_type(uploaded: Option<&str>) -> (String, bool) {
    // A comma would let a browser read a second type after the one checked here.
    let valid = uploaded.filter(|t| {
        !t.is_empty() && t.len() <= 255 && t.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b',')
    });
    let Some(content_type) = valid else {
        return ("application/octet-stream".to_owned(), false);
    };
    let base = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    (content_type.to_owned(), INLINE_TYPES.contains(&base.as_str()))
}

/// `Content-Disposition`: `inline` or `attachment`, with the file name made safe (no control
/// characters, quotes or path separators; non-token characters percent-encoded, RFC 6266).
pub(crate) fn disposition(inline: bool, file_name: Option<&str>) -> String {
    let kind = if inline { "inline" } else { "attachment" };
    let name: String = file_name
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '\\' | '/'))
        .take(255)
        .collect();
    let name = name.trim();
    if name.is_empty() {
        return kind.to_owned();
    }
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b);
    if name.bytes().all(token) {
        return format!("{kind}; filename={name}");
    }
    let encoded: String = name
        .bytes()
        .map(|b| if token(b) { char::from(b).to_string() } else { format!("%{b:02X}") })
        .collect();
    format!("{kind}; filename*=utf-8''{encoded}")
}

/// The byte range a `Range` header asks for, inclusive, within content of `size` bytes.
/// A header this server does not serve (malformed, several ranges) is ignored (`None`: the
/// whole content); a range past the end is refused (416).
pub(crate) fn requested_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.split_once('-') else { return Ok(None) };
    let (first, last) = (first.trim(), last.trim());
    let unsatisfiable =
        || Error::new(ErrorKind::RangeNotSatisfiable { size }, "Range not satisfiable");
    let range = match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => (start, end.min(size.saturating_sub(1))),
        (Ok(start), Err(_)) if last.is_empty() => (start, size.saturating_sub(1)),
        (Err(_), Ok(suffix)) if first.is_empty() && suffix > 0 => {
            (size.saturating_sub(suffix), size.saturating_sub(1))
        }
        _ => return Ok(None),
    };
    if range.0 >= size {
        return Err(unsatisfiable());
    }
    Ok(Some(range))
}
