//! The journal's writer thread: group commit, syncing, segment rotation
//! and background compaction.
//!
//! Each turn takes *everything* submitted since the last one (one lock,
//! one swap of buffers), encodes it as one frame, appends it with one
//! `write` and, with `sync = "always"`, one `fdatasync`; only then are the
//! submitters' tickets marked durable and their connections woken. While
//! one turn syncs, the next batch gathers, so the sync cost is shared by
//! every connection that wrote meanwhile.
//!
//! Compaction is a checkpoint: when the segments grow past
//! `max(compact_min_bytes, 2 x the last checkpoint)`, the writer opens a
//! new segment with `CkptBegin` and restates the live state
//! ([`Restatement`]) a chunk per turn, between ordinary commits, so it
//! never holds messages up for longer than writing one chunk. After
//! `CkptEnd` is synced, the segments before the checkpoint are deleted.
//!
//! A failed write or sync is retried in a fresh segment after a pause;
//! acknowledgements wait meanwhile (nothing is acknowledged that is not on
//! disk). A sync that failed may have lost the frame, so it is written again
//! in the new segment: frames are idempotent, a copy is harmless.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::mailbox::Mailbox;
use tracing::{debug, error, info};

use super::model::{Model, Restatement};
use super::record::{Op, Record};
use super::segment::{self, begin_frame, finish_frame, segment_name, SegmentFile};
use super::{Inner, Options};
use crate::config::SyncMode;

/// Pause before retrying a failed write.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// Failed retries after close before giving up on what is left.
const RETRIES_ON_CLOSE: u32 = 3;
/// A turn's records are split into frames of about this size (at
/// submission boundaries: a submission is never split), keeping every
/// frame far below the format's limit however much one turn takes.
const FRAME_SPLIT: usize = 8 << 20;

/// A checkpoint in progress.
struct Checkpoint {
    id: u64,
    /// The segment it began in: older ones go when it ends.
    segment: u64,
    restate: Restatement,
    begun: bool,
    bytes: u64,
}

/// The writer's state; runs on its own thread.
pub(super) struct Writer {
    pub(super) dir: PathBuf,
    pub(super) inner: Arc<Inner>,
    pub(super) model: Model,
    pub(super) seg: Option<SegmentFile>,
    /// Live segments, oldest first, the current one last.
    pub(super) segments: Vec<u64>,
    /// Bytes in live segments.
    pub(super) bytes: u64,
    pub(super) opts: Options,
    pub(super) sync: SyncMode,
    pub(super) sync_interval: Duration,
    pub(super) next_ckpt: u64,
    pub(super) last_ckpt_bytes: u64,
    /// Start a checkpoint at once (recovery found damage).
    pub(super) ckpt_now: bool,
    pub(super) _lock: File,
    ckpt: Option<Checkpoint>,
    buf: Vec<u8>,
    ops: Vec<Op>,
    ends: Vec<usize>,
    wakers: Vec<Arc<Mailbox>>,
    unsynced: bool,
    last_sync: Instant,
}

impl Writer {
    /// A writer over a recovered directory whose current segment is open.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        dir: PathBuf,
        inner: Arc<Inner>,
        model: Model,
        seg: SegmentFile,
        segments: Vec<u64>,
        bytes: u64,
        opts: Options,
        sync: SyncMode,
        sync_interval: Duration,
        next_ckpt: u64,
        ckpt_now: bool,
        lock: File,
    ) -> Writer {
        Writer {
            dir,
            inner,
            model,
            seg: Some(seg),
            segments,
            bytes,
            opts,
            sync,
            sync_interval,
            next_ckpt,
            last_ckpt_bytes: 0,
            ckpt_now,
            _lock: lock,
            ckpt: None,
            buf: Vec::new(),
            ops: Vec::new(),
            ends: Vec::new(),
            wakers: Vec::new(),
            unsynced: false,
            last_sync: Instant::now(),
        }
    }

    /// Runs until the journal is closed and everything submitted is written.
    pub(super) fn run(mut self) {
        if self.ckpt_now {
            self.start_checkpoint();
        }
        loop {
            let (last, closing) = self.take_work();
            let had_ops = !self.ops.is_empty();
            self.buf.clear();
            let mut frame = begin_frame(&mut self.buf);
            // Taken and put back: the buffers swap with the queue's, so
            // their allocations are reused turn after turn.
            let mut ops = std::mem::take(&mut self.ops);
            let mut all_ends = std::mem::take(&mut self.ends);
            let mut ends = all_ends.iter().copied().peekable();
            for (i, op) in ops.drain(..).enumerate() {
                self.write_op(op);
                if ends.next_if(|end| *end == i + 1).is_some()
                    && self.buf.len() - frame > FRAME_SPLIT
                {
                    finish_frame(&mut self.buf, frame);
                    frame = begin_frame(&mut self.buf);
                }
            }
            self.ops = ops;
            all_ends.clear();
            self.ends = all_ends;
            finish_frame(&mut self.buf, frame);
            // Frames of its own, after this turn's: it restates the model
            // as the ops just left it.
            let ckpt_done = self.step_checkpoint();
            if ckpt_done {
                if let Some(c) = &self.ckpt {
                    let start = begin_frame(&mut self.buf);
                    Record::CkptEnd { id: c.id }.encode(&mut self.buf);
                    finish_frame(&mut self.buf, start);
                }
            }
            let sync_now = match self.sync {
                SyncMode::Always => had_ops,
                SyncMode::Periodic => self.last_sync.elapsed() >= self.sync_interval,
                SyncMode::Off => false,
            } || ckpt_done
                || closing;
            let pending = !self.buf.is_empty() || (sync_now && self.unsynced);
            if pending && !self.write_out(sync_now, closing) {
                error!(
                    dir = %self.dir.display(),
                    "journal stopped: the last changes could not be written"
                );
                return;
            }
            self.acknowledge(last);
            if ckpt_done {
                self.finish_checkpoint();
            }
            self.maybe_rotate();
            if closing && self.inner.lock().ops.is_empty() {
                info!(dir = %self.dir.display(), "journal flushed and closed");
                return;
            }
        }
    }

    /// Waits for submissions (or chunks to write, or a sync to do), then
    /// takes them; returns the last ticket taken and whether the journal is
    /// closing.
    fn take_work(&mut self) -> (u64, bool) {
        let mut q = self.inner.lock();
        loop {
            if !q.ops.is_empty() || q.closed || self.ckpt.is_some() {
                break;
            }
            if self.unsynced && self.sync == SyncMode::Periodic {
                let left = self.sync_interval.saturating_sub(self.last_sync.elapsed());
                if left.is_zero() {
                    break;
                }
                q = match self.inner.work.wait_timeout(q, left) {
                    Ok((q, _)) => q,
                    Err(poisoned) => poisoned.into_inner().0,
                };
            } else {
                q = self.inner.work.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        }
        while self.inner.hold.load(Ordering::Acquire) {
            drop(q);
            std::thread::sleep(Duration::from_millis(1));
            q = self.inner.lock();
        }
        std::mem::swap(&mut q.ops, &mut self.ops);
        std::mem::swap(&mut q.ends, &mut self.ends);
        std::mem::swap(&mut q.wakers, &mut self.wakers);
        let was_backlogged = q.bytes > self.inner.max_backlog;
        q.bytes = 0;
        self.inner.backlog.store(0, Ordering::Relaxed);
        if was_backlogged {
            self.inner.backlog_taken.notify_waiters();
        }
        (q.last, q.closed)
    }

    /// Encodes `op` (after its message, the first time that is referred
    /// to) and applies it to the model.
    fn write_op(&mut self, op: Op) {
        let rec = match op {
            Op::Retain(msg) => {
                self.ensure_msg(&msg);
                let topic = msg.topic().to_owned();
                Record::RetainSet {
                    topic,
                    mid: msg.id(),
                }
            }
            Op::Unretain(topic) => Record::RetainClear { topic },
            Op::SessionNew { sid, client_id } => Record::SessionNew {
                sid,
                client_id: client_id.to_string(),
            },
            Op::SessionDel { sid } => Record::SessionDel { sid },
            Op::Sub { sid, filter, qos } => Record::Sub { sid, filter, qos },
            Op::Unsub { sid, filter } => Record::Unsub { sid, filter },
            Op::Enqueue {
                sid,
                seq,
                msg,
                qos,
                retain,
            } => {
                if !self.model.sessions.contains_key(&sid) {
                    // The session ended while this was on its way.
                    return;
                }
                self.ensure_msg(&msg);
                Record::Enqueue {
                    sid,
                    seq,
                    mid: msg.id(),
                    qos,
                    retain,
                }
            }
            Op::Sent { sid, seq, pkid } => Record::Sent { sid, seq, pkid },
            Op::Released { sid, seq } => Record::Released { sid, seq },
            Op::Done { sid, seq } => Record::Done { sid, seq },
            Op::In2Add { sid, pkid } => Record::In2Add { sid, pkid },
            Op::In2Del { sid, pkid } => Record::In2Del { sid, pkid },
        };
        rec.encode(&mut self.buf);
        self.model.apply(&rec);
    }

    fn ensure_msg(&mut self, msg: &Arc<crate::message::Message>) {
        if !self.model.has_msg(msg.id()) {
            let rec = Record::Msg(msg.clone());
            rec.encode(&mut self.buf);
            self.model.apply(&rec);
        }
    }

    /// Writes `buf` (and syncs if asked), retrying in a new segment until it
    /// works; false if it gave up (only when closing).
    fn write_out(&mut self, sync: bool, closing: bool) -> bool {
        let mut failures = 0;
        loop {
            match self.try_write(sync) {
                Ok(()) => {
                    if failures > 0 {
                        info!(dir = %self.dir.display(), "journal writes work again");
                    }
                    return true;
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures % 50 == 0 {
                        error!(
                            dir = %self.dir.display(), error = %e, failures,
                            "journal write failed; acknowledgements wait, retrying"
                        );
                    }
                    // The current segment may have lost what it was given.
                    self.seg = None;
                    if closing && failures > RETRIES_ON_CLOSE {
                        return false;
                    }
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
        }
    }

    fn try_write(&mut self, sync: bool) -> std::io::Result<()> {
        if self.seg.is_none() {
            self.open_segment()?;
        }
        let Some(seg) = self.seg.as_mut() else {
            return Err(std::io::ErrorKind::NotFound.into());
        };
        if !self.buf.is_empty() {
            seg.append(&self.buf)?;
            self.bytes += self.buf.len() as u64;
            if let Some(c) = &mut self.ckpt {
                c.bytes += self.buf.len() as u64;
            }
            self.buf.clear();
            self.unsynced = true;
        }
        if sync {
            seg.sync()?;
            self.unsynced = false;
            self.last_sync = Instant::now();
        }
        Ok(())
    }

    /// Opens the next segment and lists it in the manifest.
    fn open_segment(&mut self) -> std::io::Result<()> {
        let num = self.segments.last().map_or(1, |n| n + 1);
        let seg = SegmentFile::create(&self.dir, num)?;
        self.segments.push(num);
        self.bytes += seg.len;
        segment::write_manifest(&self.dir, &self.segments)?;
        debug!(segment = %segment_name(num), "journal segment opened");
        self.seg = Some(seg);
        Ok(())
    }

    /// Marks everything up to `last` durable and wakes who waits for it.
    fn acknowledge(&mut self, last: u64) {
        let inner = &self.inner;
        if inner.durable.load(Ordering::Acquire) < last {
            inner.durable.store(last, Ordering::Release);
            inner.durable_tx.send_replace(last);
        }
        let mut prev: Option<&Arc<Mailbox>> = None;
        for w in &self.wakers {
            if !prev.is_some_and(|p| Arc::ptr_eq(p, w)) {
                w.waker().notify_one();
            }
            prev = Some(w);
        }
        self.wakers.clear();
    }

    /// Rotates past `segment_bytes`, and starts a checkpoint when the
    /// segments grew past the compaction threshold.
    fn maybe_rotate(&mut self) {
        let full = self
            .seg
            .as_ref()
            .is_some_and(|s| s.len >= self.opts.segment_bytes);
        if full {
            self.rotate();
        }
        let threshold = self.opts.compact_min_bytes.max(2 * self.last_ckpt_bytes);
        if self.ckpt.is_none() && self.bytes > threshold {
            self.start_checkpoint();
        }
    }

    /// Closes the current segment (synced) and opens the next.
    fn rotate(&mut self) {
        if let Some(seg) = &self.seg {
            if seg.sync().is_err() {
                // Its unsynced frames were acknowledged only in the modes
                // that allow loss; nothing to redo.
                debug!("sync on rotation failed");
            }
        }
        self.unsynced = false;
        self.seg = None;
        if let Err(e) = self.open_segment() {
            // The next write retries.
            error!(dir = %self.dir.display(), error = %e, "cannot open a new journal segment");
        }
    }

    fn start_checkpoint(&mut self) {
        // Begin first in its segment; a segment still empty will do.
        let empty = self
            .seg
            .as_ref()
            .is_some_and(|s| s.len == segment::HEADER_LEN as u64);
        if !empty {
            self.rotate();
        }
        let Some(segment) = self.seg.as_ref().map(|s| s.num) else {
            return;
        };
        let id = self.next_ckpt;
        self.next_ckpt += 1;
        debug!(id, bytes = self.bytes, "checkpoint started");
        self.ckpt = Some(Checkpoint {
            id,
            segment,
            restate: Restatement::new(&self.model),
            begun: false,
            bytes: 0,
        });
    }

    /// Adds the next chunk of the checkpoint to `buf` (after this turn's
    /// ops, so it restates the model as they left it); true when the
    /// checkpoint has nothing left to write.
    fn step_checkpoint(&mut self) -> bool {
        let Some(c) = &mut self.ckpt else {
            return false;
        };
        if !c.begun {
            c.begun = true;
            // Its own frame, first in its segment: recovery finds it there.
            let start = begin_frame(&mut self.buf);
            Record::CkptBegin {
                id: c.id,
                next_sid: self.model.next_sid,
                next_mid: self.model.next_mid,
            }
            .encode(&mut self.buf);
            finish_frame(&mut self.buf, start);
        }
        let start = begin_frame(&mut self.buf);
        let done = c
            .restate
            .step(&self.model, self.opts.chunk_bytes, &mut self.buf);
        finish_frame(&mut self.buf, start);
        done
    }

    /// The checkpoint's end is synced: older segments go.
    fn finish_checkpoint(&mut self) {
        let Some(c) = self.ckpt.take() else { return };
        let (old, keep): (Vec<u64>, Vec<u64>) = self.segments.iter().partition(|n| **n < c.segment);
        if let Err(e) = segment::write_manifest(&self.dir, &keep) {
            error!(error = %e, "cannot update the journal manifest; old segments kept");
            return;
        }
        self.segments = keep;
        for n in &old {
            let path = self.dir.join(segment_name(*n));
            if let Ok(meta) = std::fs::metadata(&path) {
                self.bytes = self.bytes.saturating_sub(meta.len());
            }
            let _ = std::fs::remove_file(&path);
        }
        let _ = segment::sync_dir(&self.dir);
        self.last_ckpt_bytes = c.bytes;
        debug!(
            id = c.id,
            restated = c.bytes,
            removed = old.len(),
            "checkpoint done"
        );
    }
}
