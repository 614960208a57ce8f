//! Reader for IDX files (the MNIST / Fashion-MNIST container), gzipped or plain.
//!
//! Layout: a big-endian magic number `0x0000TTDD` (`TT` = 0x08 for unsigned bytes, `DD` =
//! number of dimensions), then `DD` big-endian u32 dimensions, then the data. Byte offsets in
//! error messages count from the start of the (decompressed) IDX stream.

use crate::error::{Error, Result};
use flate2::read::MultiGzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Magic number of an unsigned-byte IDX file with 3 dimensions (images: N×H×W).
pub const MAGIC_IMAGES: u32 = 0x0000_0803;
/// Magic number of an unsigned-byte IDX file with 1 dimension (labels: N).
pub const MAGIC_LABELS: u32 = 0x0000_0801;

/// A decoded IDX file.
#[derive(Clone, Debug)]
pub struct IdxFile {
    /// The file it was read from.
    pub path: PathBuf,
    /// Whether the file was gzip-compressed (offsets then refer to the decompressed stream).
    pub gzipped: bool,
    /// The dimensions from the header.
    pub dims: Vec<usize>,
    /// The payload bytes after the header (exactly the product of `dims`).
    pub data: Vec<u8>,
    /// Offset of `data[0]` in the (decompressed) stream.
    pub data_offset: usize,
}

impl IdxFile {
    /// "byte offset N" (plus "of the decompressed data" for gzipped files), for messages.
    pub fn describe_offset(&self, offset: usize) -> String {
        describe_offset(offset, self.gzipped)
    }
}

fn describe_offset(offset: usize, gzipped: bool) -> String {
    if gzipped {
        format!("byte offset {offset} of the decompressed data")
    } else {
        format!("byte offset {offset}")
    }
}

/// Looks for `<name>.gz` in `dir`, then `<name>` (uncompressed); `None` if neither is a file.
pub fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    [dir.join(format!("{name}.gz")), dir.join(name)]
        .into_iter()
        .find(|p| p.is_file())
}

/// Reads a whole file and gunzips it if it starts with the gzip magic bytes (a file whose
/// name ends in `.gz` must be gzip). Returns the bytes and whether they were compressed.
pub fn read_maybe_gzip(path: &Path) -> Result<(Vec<u8>, bool)> {
    let raw = super::read_file(path)?;
    let is_gz = raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b;
    if !is_gz {
        if path.extension().is_some_and(|e| e == "gz") {
            return Err(Error::data(
                path,
                format!(
                    "corrupt gzip file: does not start with the gzip magic bytes 1f 8b \
                     (found {:02x?} at byte offset 0, file is {} bytes)",
                    &raw[..raw.len().min(2)],
                    raw.len()
                ),
            ));
        }
        return Ok((raw, false));
    }
    let mut out = Vec::with_capacity(raw.len().saturating_mul(4));
    let mut dec = MultiGzDecoder::new(&raw[..]);
    if let Err(e) = dec.read_to_end(&mut out) {
        return Err(Error::data(
            path,
            format!(
                "corrupt or truncated gzip stream: {e} (decompression failed after {} \
                 decompressed bytes, i.e. at byte offset {} of the decompressed data; the \
                 compressed file is {} bytes)",
                out.len(),
                out.len(),
                raw.len()
            ),
        ));
    }
    Ok((out, true))
}

/// Reads an unsigned-byte IDX file whose magic number must be `magic`
/// ([`MAGIC_IMAGES`] or [`MAGIC_LABELS`]), checking that the payload is exactly as long as
/// the header says.
pub fn read(path: &Path, magic: u32) -> Result<IdxFile> {
    let (bytes, gzipped) = read_maybe_gzip(path)?;
    parse(path, bytes, gzipped, magic)
}

/// Parses IDX bytes already in memory (`path` and `gzipped` only feed error messages).
pub fn parse(path: &Path, bytes: Vec<u8>, gzipped: bool, magic: u32) -> Result<IdxFile> {
    let what = if gzipped { "decompressed size" } else { "size" };
    let ndims = (magic & 0xff) as usize;
    let header_len = 4 + 4 * ndims;
    let short_header = |what_part: &str| {
        Error::data(
            path,
            format!(
                "truncated IDX header: expected at least {header_len} bytes ({what_part}), \
                 {what} is {}; data ran out at {}",
                bytes.len(),
                describe_offset(bytes.len(), gzipped)
            ),
        )
    };
    if bytes.len() < 4 {
        return Err(short_header("magic number"));
    }
    let be = |o: usize| u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
    let found = be(0);
    if found != magic {
        return Err(Error::data(
            path,
            format!(
                "wrong magic number 0x{found:08x} at byte offset 0: expected 0x{magic:08x} \
                 (IDX unsigned bytes, {ndims} dimension{}){}",
                if ndims == 1 { "" } else { "s" },
                if found == MAGIC_IMAGES || found == MAGIC_LABELS {
                    " - images and labels files swapped?"
                } else {
                    ""
                }
            ),
        ));
    }
    if bytes.len() < header_len {
        return Err(short_header(&format!("magic + {ndims} dimensions")));
    }
    let dims: Vec<usize> = (0..ndims).map(|d| be(4 + 4 * d) as usize).collect();
    let payload = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .and_then(|p| p.checked_add(header_len))
        .ok_or_else(|| Error::data(path, format!("IDX dimensions {dims:?} overflow")))?;
    if bytes.len() < payload {
        return Err(Error::data(
            path,
            format!(
                "truncated: header dimensions {dims:?} need {payload} bytes, {what} is {}; \
                 data ran out at {}",
                bytes.len(),
                describe_offset(bytes.len(), gzipped)
            ),
        ));
    }
    if bytes.len() > payload {
        return Err(Error::data(
            path,
            format!(
                "{} unexpected trailing bytes from {} on: header dimensions {dims:?} need \
                 {payload} bytes, {what} is {}",
                bytes.len() - payload,
                describe_offset(payload, gzipped),
                bytes.len()
            ),
        ));
    }
    let mut data = bytes;
    data.drain(..header_len);
    Ok(IdxFile {
        path: path.to_path_buf(),
        gzipped,
        dims,
        data,
        data_offset: header_len,
    })
}

/// Reads an IDX images file (magic 0x00000803): returns the file with dims `[n, h, w]`.
pub fn read_images(path: &Path) -> Result<IdxFile> {
    read(path, MAGIC_IMAGES)
}

/// Reads an IDX labels file (magic 0x00000801), checking every label is `< num_classes`.
pub fn read_labels(path: &Path, num_classes: usize) -> Result<Vec<u16>> {
    let f = read(path, MAGIC_LABELS)?;
    if let Some(i) = f.data.iter().position(|&l| usize::from(l) >= num_classes) {
        return Err(Error::data(
            path,
            format!(
                "label {} of example {i} at {} is out of range (expected < {num_classes})",
                f.data[i],
                f.describe_offset(f.data_offset + i)
            ),
        ));
    }
    Ok(f.data.iter().map(|&l| u16::from(l)).collect())
}

/// Encodes an unsigned-byte IDX file (header + `data`); the inverse of [`parse`], used by
/// tests and tools that write IDX files.
pub fn encode(dims: &[usize], data: &[u8]) -> Vec<u8> {
    assert_eq!(
        dims.iter().product::<usize>(),
        data.len(),
        "IDX dims vs data"
    );
    assert!(dims.len() < 256);
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    out.extend_from_slice(&(0x0800u32 | dims.len() as u32).to_be_bytes());
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_memory() {
        let data: Vec<u8> = (0..24).collect();
        let bytes = encode(&[2, 3, 4], &data);
        assert_eq!(&bytes[..4], &[0, 0, 8, 3]);
        let f = parse(Path::new("x"), bytes, false, MAGIC_IMAGES).unwrap();
        assert_eq!(f.dims, vec![2, 3, 4]);
        assert_eq!(f.data, data);
        assert_eq!(f.data_offset, 16);
    }

    #[test]
    fn errors_name_offsets() {
        let mut bytes = encode(&[2, 3, 4], &(0..24).collect::<Vec<u8>>());
        bytes.truncate(30);
        let e = parse(Path::new("imgs"), bytes, false, MAGIC_IMAGES)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("imgs") && e.contains("byte offset 30") && e.contains("40"),
            "{e}"
        );
        let bytes = encode(&[3], &[1, 2, 3]);
        let e = parse(Path::new("lbl"), bytes, true, MAGIC_IMAGES)
            .unwrap_err()
            .to_string();
        assert!(e.contains("wrong magic") && e.contains("0x00000801"), "{e}");
        let mut bytes = encode(&[3], &[1, 2, 3]);
        bytes.push(0);
        let e = parse(Path::new("lbl"), bytes, false, MAGIC_LABELS)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("trailing") && e.contains("byte offset 11"),
            "{e}"
        );
    }
}
