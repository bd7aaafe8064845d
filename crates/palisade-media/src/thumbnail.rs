//! Thumbnails: made on first request in one of a few fixed sizes, from PNG, JPEG, GIF (the
//! first frame) and WebP images, with decoding bounded so that a small file announcing huge
//! dimensions (a decompression bomb) is refused before any pixel memory is allocated.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader, Limits, imageops::FilterType};
use palisade_core::{Error, Result};

/// How a thumbnail fits its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Fill the size exactly, cropping what sticks out.
    Crop,
    /// Fit within the size, keeping the whole image.
    Scale,
}

impl Method {
    /// The method a request names (`scale` unless it says `crop`, as Synapse reads it).
    pub fn parse(method: Option<&str>) -> Self {
        match method {
            Some("crop") => Self::Crop,
            _ => Self::Scale,
        }
    }

    /// Its name in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Crop => "crop",
            Self::Scale => "scale",
        }
    }
}

/// The sizes thumbnails are made in (Synapse's defaults); a request gets the nearest.
const SIZES: &[(u32, u32, Method)] = &[
    (32, 32, Method::Crop),
    (96, 96, Method::Crop),
    (320, 240, Method::Scale),
    (640, 480, Method::Scale),
    (800, 600, Method::Scale),
];

/// Largest image decoded, in pixels (Synapse's `max_image_pixels`).
const MAX_PIXELS: u64 = 32_000_000;
/// Most memory one decode may allocate.
const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;
/// Largest source file thumbnailed.
pub(crate) const MAX_SOURCE_BYTES: u64 = 32 * 1024 * 1024;

/// The size made for a request: the smallest of the request's method at least as large as
/// asked, else the largest of that method.
pub(crate) fn select(width: u32, height: u32, method: Method) -> (u32, u32, Method) {
    let of_method = SIZES.iter().filter(|(_, _, m)| *m == method);
    of_method
        .clone()
        .find(|(w, h, _)| *w >= width && *h >= height)
        .or_else(|| of_method.clone().next_back())
        .copied()
        .expect("every method has a size")
}

/// Whether a content type is one thumbnails are made of.
pub(crate) fn thumbnailable(content_type: Option<&str>) -> bool {
    let base = content_type.unwrap_or_default().split(';').next().unwrap_or_default().trim();
    matches!(base, "image/png" | "image/jpeg" | "image/jpg" | "image/gif" | "image/webp")
}

/// Makes a thumbnail of `source`: a JPEG of a JPEG, a PNG of anything else. CPU-bound: run it
/// off the async threads.
pub(crate) fn make(
    source: &[u8],
    width: u32,
    height: u32,
    method: Method,
) -> Result<(Vec<u8>, &'static str)> {
    let refused =
        |e: &dyn std::fmt::Display| Error::bad_json(format!("Cannot thumbnail this media: {e}"));
    let reader =
        || ImageReader::new(Cursor::new(source)).with_guessed_format().map_err(|e| refused(&e));
    let (w, h) = reader()?.into_dimensions().map_err(|e| refused(&e))?;
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(refused(&format!("{w}x{h} is more than {MAX_PIXELS} pixels")));
    }
    let mut reader = reader()?;
    let format = reader.format();
    let mut limits = Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let image = reader.decode().map_err(|e| refused(&e))?;
    let thumbnail = match method {
        // Cut the source to the size's proportions first, then scale: scaling the whole image
        // to cover the size first (`resize_to_fill`) would blow a long, thin image up to
        // gigapixels.
        Method::Crop => {
            let (target_w, target_h) = (u64::from(width), u64::from(height));
            let (source_w, source_h) = (u64::from(w), u64::from(h));
            let (crop_w, crop_h) = if source_w * target_h > source_h * target_w {
                ((source_h * target_w / target_h).max(1), source_h)
            } else {
                (source_w, (source_w * target_h / target_w).max(1))
            };
            let (crop_w, crop_h) = (crop_w.min(source_w) as u32, crop_h.min(source_h) as u32);
            image.crop_imm((w - crop_w) / 2, (h - crop_h) / 2, crop_w, crop_h).resize_exact(
                width,
                height,
                FilterType::Triangle,
            )
        }
        // Never enlarged: a small image is its own thumbnail.
        Method::Scale if w <= width && h <= height => image,
        Method::Scale => image.thumbnail(width, height),
    };
    let (output, content_type) = match format {
        Some(ImageFormat::Jpeg) => (ImageFormat::Jpeg, "image/jpeg"),
        _ => (ImageFormat::Png, "image/png"),
    };
    let thumbnail = match output {
        // JPEG has no alpha channel.
        ImageFormat::Jpeg => DynamicImage::ImageRgb8(thumbnail.to_rgb8()),
        _ => thumbnail,
    };
    let mut bytes = Cursor::new(Vec::new());
    thumbnail
        .write_to(&mut bytes, output)
        .map_err(|e| Error::internal(format!("encoding a thumbnail: {e}")))?;
    Ok((bytes.into_inner(), content_type))
}
