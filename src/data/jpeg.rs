//! JPEG files: the cheap structural check done when an image folder is scanned, and full
//! decoding to 8-bit RGB.
//!
//! Decoding uses the `zune-jpeg` crate: pure Rust (no system libjpeg to install), SIMD
//! accelerated (SSE/AVX2 IDCT and colour conversion, chosen at run time), actively
//! maintained, fuzzed, and the JPEG decoder the `image` crate itself now uses; it decodes
//! baseline and progressive JPEGs, grayscale and CMYK/YCCK ones included, straight to RGB.
//! It runs in its tolerant mode, as PIL does for torchvision: recoverable damage (extraneous
//! bytes before a marker, a premature end of the entropy data) is decoded as far as it goes,
//! so the truncation check is the scan's [`check_structure`].

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use crate::error::{Error, Result};

/// Bytes at the end of a file searched for the end-of-image marker (encoders and cameras may
/// pad a JPEG after it).
pub const TAIL: u64 = 1024;

/// A decoded image: interleaved 8-bit RGB, `height` rows of `width` pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct Rgb {
    /// Pixels, `height × width × 3` bytes.
    pub pixels: Vec<u8>,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

/// Checks that `path` looks like a complete JPEG without decoding it (two small reads): it
/// must start with the start-of-image marker `FF D8 FF` and its last [`TAIL`] bytes must hold
/// the end-of-image marker `FF D9` (inside entropy-coded data `FF` is always followed by `00`
/// or a restart marker, so `FF D9` near the end marks the image's end). Catches files of
/// another format and truncated downloads; the error says which.
pub fn check_structure(path: &Path) -> Result<()> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut head = [0u8; 3];
    if len < 4 || f.read_exact(&mut head).is_err() {
        return Err(Error::data(
            path,
            format!("not a JPEG file: only {len} bytes"),
        ));
    }
    if head != [0xFF, 0xD8, 0xFF] {
        return Err(Error::data(
            path,
            format!(
                "not a JPEG file: starts with {:02X} {:02X} {:02X}{}, not the JPEG start marker \
                 FF D8 FF",
                head[0],
                head[1],
                head[2],
                sniff(&head)
            ),
        ));
    }
    let start = len.saturating_sub(TAIL).max(3);
    f.seek(SeekFrom::Start(start))
        .map_err(|e| Error::io(path, e))?;
    let mut tail = Vec::with_capacity((len - start) as usize);
    f.read_to_end(&mut tail).map_err(|e| Error::io(path, e))?;
    if !tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
        return Err(Error::data(
            path,
            format!(
                "truncated JPEG: no end-of-image marker (FF D9) in the last {} of its {len} bytes",
                len - start
            ),
        ));
    }
    Ok(())
}

/// A hint at the real format of a file that is not a JPEG.
fn sniff(head: &[u8; 3]) -> &'static str {
    match head {
        [0x89, b'P', b'N'] => " (a PNG file)",
        [b'G', b'I', b'F'] => " (a GIF file)",
        [b'B', b'M', _] => " (a BMP file)",
        [b'R', b'I', b'F'] => " (a RIFF/WebP file)",
        _ => "",
    }
}

/// Decodes the JPEG bytes `data` (read from `path`, which errors name) to RGB.
pub fn decode(data: &[u8], path: &Path) -> Result<Rgb> {
    let opts = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut d = JpegDecoder::new_with_options(ZCursor::new(data), opts);
    let pixels = d
        .decode()
        .map_err(|e| Error::data(path, format!("cannot decode the JPEG: {e}")))?;
    let (width, height) = d
        .dimensions()
        .ok_or_else(|| Error::data(path, "cannot decode the JPEG: no frame header"))?;
    if width == 0 || height == 0 || pixels.len() != width * height * 3 {
        return Err(Error::data(
            path,
            format!(
                "cannot decode the JPEG: {} bytes for {width}×{height} RGB",
                pixels.len()
            ),
        ));
    }
    Ok(Rgb {
        pixels,
        width,
        height,
    })
}

/// Reads and decodes the JPEG file `path`.
pub fn read(path: &Path) -> Result<Rgb> {
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode(&data, path)
}
