//! The files of a data directory: segments of frames, the manifest and the
//! lock, and reading them back whatever state they are in.
//!
//! A segment (`<16 hex digits>.log`) is a 16-byte header (`MIDGELOG`,
//! format version) then frames. A frame is `MGFR`, the payload length and
//! a CRC-32 of length and payload (12 bytes), then the payload: the records
//! of one group commit. [`scan`] walks a segment's bytes and keeps every
//! frame whose CRC holds; after a bad one it searches forward for the next
//! good frame, so damage in the middle of a file costs the damaged frames
//! only, and a torn tail costs the tail only.
//!
//! `MANIFEST` lists the segments that should exist, so a deleted segment is
//! noticed and reported; it is rewritten (temporary file, then rename) only
//! when segments are added or removed. `LOCK` is held with an exclusive
//! advisory lock while a broker uses the directory.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The segment header.
const SEGMENT_MAGIC: &[u8; 8] = b"MIDGELOG";
/// The on-disk format version.
const VERSION: u32 = 1;
/// Bytes before the first frame.
pub const HEADER_LEN: usize = 16;
/// Marks the start of a frame (`MGFR`).
const FRAME_MAGIC: [u8; 4] = *b"MGFR";
/// Frame header: magic, length, CRC.
pub const FRAME_HEADER: usize = 12;
/// The largest frame payload believed when scanning.
const MAX_FRAME: usize = 1 << 30;
/// The manifest's file name.
const MANIFEST: &str = "MANIFEST";
/// The lock file's name.
const LOCK: &str = "LOCK";

/// The file name of segment `n`.
pub fn segment_name(n: u64) -> String {
    format!("{n:016x}.log")
}

/// The segment number of a file name, if it names a segment.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".log")?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

/// Opens a frame in `buf`: call [`finish_frame`] with the returned start
/// once its records are appended.
pub fn begin_frame(buf: &mut Vec<u8>) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME_HEADER]);
    start
}

/// Fills in the header of the frame begun at `start`; false (and the frame
/// removed) if it has no records.
pub fn finish_frame(buf: &mut Vec<u8>, start: usize) -> bool {
    let len = buf.len() - start - FRAME_HEADER;
    if len == 0 {
        buf.truncate(start);
        return false;
    }
    let len32 = (len as u32).to_le_bytes();
    let crc = frame_crc(len32, &buf[start + FRAME_HEADER..]);
    buf[start..start + 4].copy_from_slice(&FRAME_MAGIC);
    buf[start + 4..start + 8].copy_from_slice(&len32);
    buf[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
    true
}

fn frame_crc(len: [u8; 4], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(payload);
    h.finalize()
}

/// What [`scan`] found in a segment's bytes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// The payload ranges of the good frames, in order.
    pub frames: Vec<Range<usize>>,
    /// Byte ranges that held no good frame.
    pub damaged: Vec<Range<usize>>,
    /// Where the last good frame ends: the file can be cut back to here.
    pub good_end: usize,
}

/// Whether `bytes` starts with a segment header this version reads.
pub fn header_ok(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_LEN
        && &bytes[..8] == SEGMENT_MAGIC
        && bytes[8..12] == VERSION.to_le_bytes()
}

/// Finds the good frames of a segment whose header is valid.
pub fn scan(bytes: &[u8]) -> Scan {
    let mut out = Scan {
        good_end: HEADER_LEN.min(bytes.len()),
        ..Scan::default()
    };
    let mut at = HEADER_LEN;
    while at < bytes.len() {
        if let Some(payload) = frame_at(bytes, at) {
            at = payload.end;
            out.frames.push(payload);
            out.good_end = at;
            continue;
        }
        // Damage: the next good frame, if any, is where reading resumes.
        let resume = (at + 1..bytes.len())
            .find(|&i| frame_at(bytes, i).is_some())
            .unwrap_or(bytes.len());
        out.damaged.push(at..resume);
        at = resume;
    }
    out
}

/// The payload range of a good frame starting at `at`.
fn frame_at(bytes: &[u8], at: usize) -> Option<Range<usize>> {
    let head = bytes.get(at..at + FRAME_HEADER)?;
    if head[..4] != FRAME_MAGIC {
        return None;
    }
    let len32: [u8; 4] = head[4..8].try_into().ok()?;
    let len = u32::from_le_bytes(len32) as usize;
    let crc = u32::from_le_bytes(head[8..12].try_into().ok()?);
    let start = at + FRAME_HEADER;
    if len == 0 || len > MAX_FRAME || start + len > bytes.len() {
        return None;
    }
    (frame_crc(len32, &bytes[start..start + len]) == crc).then_some(start..start + len)
}

/// The segment being appended to.
#[derive(Debug)]
pub struct SegmentFile {
    file: File,
    /// Its number.
    pub num: u64,
    /// Bytes written so far, header included.
    pub len: u64,
}

impl SegmentFile {
    /// Creates segment `num` in `dir` with its header, durably.
    pub fn create(dir: &Path, num: u64) -> io::Result<SegmentFile> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join(segment_name(num)))?;
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(SEGMENT_MAGIC);
        header[8..12].copy_from_slice(&VERSION.to_le_bytes());
        file.write_all(&header)?;
        file.sync_all()?;
        sync_dir(dir)?;
        Ok(SegmentFile {
            file,
            num,
            len: HEADER_LEN as u64,
        })
    }

    /// Appends whole frames. On failure the file is cut back to where it
    /// was, as far as that is possible.
    pub fn append(&mut self, frames: &[u8]) -> io::Result<()> {
        if let Err(e) = self.file.write_all(frames) {
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        self.len += frames.len() as u64;
        Ok(())
    }

    /// Forces what was appended to the disk (`fdatasync`).
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// Makes renames, creations and deletions in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    // Directories cannot be opened for syncing on every platform; where
    // they cannot, the rename itself is all there is.
    match File::open(dir) {
        Ok(d) => d.sync_all().or(Ok(())),
        Err(_) => Ok(()),
    }
}

/// Holds `LOCK` in `dir` exclusively: one broker per directory.
pub fn lock(dir: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK))?;
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => Ok(file),
        Err(fs4::TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            "another broker is using this data directory",
        )),
        Err(fs4::TryLockError::Error(e)) => Err(e),
    }
}

/// The manifest as read: the listed segments, or why it could not be read.
pub fn read_manifest(dir: &Path) -> Result<Option<Vec<u64>>, String> {
    let text = match std::fs::read_to_string(dir.join(MANIFEST)) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let mut lines = text.lines();
    if lines.next() != Some("midge-manifest 1") {
        return Err("not a manifest".into());
    }
    let mut listed = Vec::new();
    for line in lines {
        match line.strip_prefix("segment ").and_then(parse_segment_name) {
            Some(n) => listed.push(n),
            None if line == "end" => return Ok(Some(listed)),
            None => return Err(format!("bad line {line:?}")),
        }
    }
    Err("incomplete".into())
}

/// Replaces the manifest with one listing `segments`, durably.
pub fn write_manifest(dir: &Path, segments: &[u64]) -> io::Result<()> {
    let mut text = String::from("midge-manifest 1\n");
    for n in segments {
        text.push_str("segment ");
        text.push_str(&segment_name(*n));
        text.push('\n');
    }
    text.push_str("end\n");
    let tmp = dir.join("MANIFEST.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(MANIFEST))?;
    sync_dir(dir)
}

/// Renames an unreadable file out of the way (`NAME.damaged`, or
/// `NAME.damaged.N` if that exists); returns the new name.
pub fn move_aside(path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut target = path.with_file_name(format!("{name}.damaged"));
    let mut n = 1;
    while target.exists() {
        target = path.with_file_name(format!("{name}.damaged.{n}"));
        n += 1;
    }
    std::fs::rename(path, &target)?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(frames: &[&[u8]]) -> Vec<u8> {
        let mut buf = vec![0u8; HEADER_LEN];
        buf[..8].copy_from_slice(SEGMENT_MAGIC);
        buf[8..12].copy_from_slice(&VERSION.to_le_bytes());
        for f in frames {
            let start = begin_frame(&mut buf);
            buf.extend_from_slice(f);
            assert!(finish_frame(&mut buf, start));
        }
        buf
    }

    #[test]
    fn a_torn_tail_is_cut_back_to_the_last_whole_frame() {
        let bytes = segment(&[b"one", b"two", b"three"]);
        for cut in HEADER_LEN..bytes.len() {
            let s = scan(&bytes[..cut]);
            let whole = s.frames.len();
            let expect_end = [HEADER_LEN, HEADER_LEN + 15, HEADER_LEN + 30, bytes.len()][whole];
            assert_eq!(s.good_end, expect_end, "cut at {cut}");
            assert_eq!(s.damaged.is_empty(), cut == expect_end, "cut at {cut}");
        }
    }

    #[test]
    fn damage_in_the_middle_costs_only_the_damaged_frame() {
        let mut bytes = segment(&[b"one", b"two", b"three"]);
        bytes[HEADER_LEN + 15 + 13] ^= 0xff;
        let s = scan(&bytes);
        let payloads: Vec<&[u8]> = s.frames.iter().map(|r| &bytes[r.clone()]).collect();
        assert_eq!(payloads, vec![&b"one"[..], b"three"]);
        assert_eq!(s.damaged, vec![HEADER_LEN + 15..HEADER_LEN + 30]);
    }

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_segment_name("42.log"), None);
        assert_eq!(parse_segment_name("000000000000002a.log.damaged"), None);
    }

    #[test]
    fn the_manifest_round_trips_and_a_garbled_one_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_manifest(dir.path()), Ok(None));
        write_manifest(dir.path(), &[1, 7]).expect("write");
        assert_eq!(read_manifest(dir.path()), Ok(Some(vec![1, 7])));
        std::fs::write(dir.path().join(MANIFEST), "midge-manifest 1\nsegment 00").expect("w");
        assert!(read_manifest(dir.path()).is_err());
    }
}
