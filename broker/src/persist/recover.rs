//! Reading a data directory back at start-up, whatever state it is in.
//!
//! Every segment is scanned ([`segment::scan`]); good frames are kept,
//! damaged bytes are reported and a damaged tail is cut off the file. A
//! file that is not a segment of this format, or cannot be read, is moved
//! aside. Segments the manifest lists but the directory lacks are reported.
//! Then the records are replayed into a [`Model`], starting at the last
//! checkpoint that was completed (its `CkptEnd` is on disk): everything
//! before it is obsolete, and the segments holding only that are listed
//! for deletion.
//! Nothing here fails because of what the files contain; only the
//! directory itself (unreadable, not writable) stops start-up.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::model::Model;
use super::record::Record;
use super::segment::{self, header_ok, parse_segment_name, scan, segment_name};

/// What recovery had to drop, for the one start-up warning.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// One line per loss.
    pub losses: Vec<String>,
}

impl Report {
    /// Whether nothing was lost.
    pub fn is_clean(&self) -> bool {
        self.losses.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.losses.join("; "))
    }
}

/// The outcome of reading a directory.
#[derive(Debug)]
pub struct Recovery {
    /// The state to restore.
    pub model: Model,
    /// What was lost.
    pub report: Report,
    /// The segments kept, oldest first.
    pub segments: Vec<u64>,
    /// Segments holding only what a completed checkpoint restated: to be
    /// deleted once the manifest no longer lists them.
    pub obsolete: Vec<u64>,
    /// Their total size in bytes.
    pub bytes: u64,
    /// The highest segment number seen (kept, listed or moved aside).
    pub last_segment: u64,
    /// The next checkpoint id.
    pub next_ckpt: u64,
}

/// One good frame: its segment's index in the list and its payload.
struct Frame {
    seg: usize,
    range: std::ops::Range<usize>,
}

/// Reads `dir` (which exists and is locked) into a [`Recovery`].
pub fn recover(dir: &Path) -> io::Result<Recovery> {
    let mut report = Report::default();
    let listed = match segment::read_manifest(dir) {
        Ok(listed) => listed,
        Err(why) => {
            let path = dir.join("MANIFEST");
            let moved = segment::move_aside(&path).map(|p| display(&p));
            report.losses.push(format!(
                "MANIFEST unreadable ({why}), moved aside{}",
                moved.map(|p| format!(" to {p}")).unwrap_or_default()
            ));
            None
        }
    };
    let mut found = list_segments(dir)?;
    found.sort_unstable();
    let mut last_segment = found.last().copied().unwrap_or(0);
    for n in listed.iter().flatten() {
        last_segment = last_segment.max(*n);
        if found.binary_search(n).is_err() {
            report.losses.push(format!(
                "segment {} is missing: the changes it held are lost",
                segment_name(*n)
            ));
        }
    }

    // Read and scan every segment, keeping the good frames.
    let mut files: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut frames = Vec::new();
    for n in found {
        let path = dir.join(segment_name(n));
        let bytes = match fs::read(&path) {
            Ok(b) if header_ok(&b) => b,
            Ok(b) if b.is_empty() => {
                // Created, then the broker stopped before the header hit the
                // disk: it held nothing.
                let _ = fs::remove_file(&path);
                continue;
            }
            Ok(_) => {
                set_aside(
                    &path,
                    "not a Midge data segment of this version",
                    &mut report,
                );
                continue;
            }
            Err(e) => {
                set_aside(&path, &format!("unreadable: {e}"), &mut report);
                continue;
            }
        };
        let s = scan(&bytes);
        for bad in &s.damaged {
            report.losses.push(format!(
                "{}: {} damaged bytes at offset {} dropped",
                segment_name(n),
                bad.len(),
                bad.start
            ));
        }
        if s.good_end < bytes.len() {
            // Cut the damaged tail off, so the next start does not report
            // it again and appends (there are none) could not follow it.
            cut_back(&path, s.good_end as u64);
        }
        let seg = files.len();
        frames.extend(s.frames.into_iter().map(|range| Frame { seg, range }));
        let len = bytes.len().min(s.good_end);
        files.push((n, bytes[..len].to_vec()));
    }

    // Decode; find the last completed checkpoint.
    let mut decoded: Vec<(usize, Vec<Record>)> = Vec::with_capacity(frames.len());
    let mut begins = Vec::new();
    let mut reset: Option<(usize, u64)> = None;
    let mut max_ckpt = 0;
    for f in &frames {
        let (num, bytes) = &files[f.seg];
        let mut records = Vec::new();
        if Record::decode_all(&bytes[f.range.clone()], &mut records).is_err() {
            report.losses.push(format!(
                "{}: a frame at offset {} has an unreadable record and was dropped",
                segment_name(*num),
                f.range.start - segment::FRAME_HEADER
            ));
            continue;
        }
        for r in &records {
            match r {
                Record::CkptBegin { id, .. } => {
                    begins.push((*id, decoded.len()));
                    max_ckpt = max_ckpt.max(*id);
                }
                Record::CkptEnd { id } => {
                    if let Some((_, at)) = begins.iter().rev().find(|(b, _)| b == id) {
                        reset = Some((*at, *id));
                    }
                }
                _ => {}
            }
        }
        decoded.push((f.seg, records));
    }

    let mut model = Model::default();
    let start = reset.map_or(0, |(at, _)| at);
    for (i, (_, records)) in decoded.iter().enumerate() {
        if i < start {
            // Obsolete, but the id counters it saw still count.
            for r in records {
                note_ids(&mut model, r);
            }
            continue;
        }
        if i == start && reset.is_some() {
            model.reset();
        }
        for r in records {
            model.apply(r);
        }
    }

    // Segments wholly before the checkpoint are obsolete: delete them.
    let first_kept = decoded.get(start).map_or(0, |(seg, _)| *seg);
    let first_kept = if reset.is_some() { first_kept } else { 0 };
    let (mut segments, mut obsolete) = (Vec::new(), Vec::new());
    let mut bytes = 0;
    for (i, (n, b)) in files.iter().enumerate() {
        if i < first_kept {
            obsolete.push(*n);
        } else {
            segments.push(*n);
            bytes += b.len() as u64;
        }
    }

    let lost_retained = model.retained_lost();
    if lost_retained > 0 {
        report.losses.push(format!(
            "{lost_retained} retained messages whose contents were in damaged records"
        ));
    }
    let (_, lost_entries) = model.sessions();
    if lost_entries > 0 {
        report.losses.push(format!(
            "{lost_entries} queued messages whose contents were in damaged records"
        ));
    }
    Ok(Recovery {
        model,
        report,
        segments,
        obsolete,
        bytes,
        last_segment,
        next_ckpt: max_ckpt + 1,
    })
}

fn note_ids(model: &mut Model, r: &Record) {
    match r {
        Record::Msg(m) => model.next_mid = model.next_mid.max(m.id() + 1),
        Record::SessionNew { sid, .. } => model.next_sid = model.next_sid.max(sid + 1),
        Record::CkptBegin {
            next_sid, next_mid, ..
        } => {
            model.next_sid = model.next_sid.max(*next_sid);
            model.next_mid = model.next_mid.max(*next_mid);
        }
        _ => {}
    }
}

fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(n) = entry.file_name().to_str().and_then(parse_segment_name) {
            out.push(n);
        }
    }
    Ok(out)
}

fn set_aside(path: &Path, why: &str, report: &mut Report) {
    let name = display(path);
    match segment::move_aside(path) {
        Ok(to) => report.losses.push(format!(
            "{name}: {why}; moved aside to {}, the changes it held are lost",
            display(&to)
        )),
        Err(e) => report.losses.push(format!(
            "{name}: {why}; could not be moved aside ({e}) and is ignored"
        )),
    }
}

fn cut_back(path: &Path, len: u64) {
    if let Ok(f) = fs::OpenOptions::new().write(true).open(path) {
        if f.set_len(len).is_ok() {
            let _ = f.sync_all();
        }
    }
}

fn display(path: &Path) -> String {
    path.file_name()
        .map_or_else(|| PathBuf::from(path), PathBuf::from)
        .display()
        .to_string()
}
