//! The recorder: a named thread fed by a bounded queue, so that recording never blocks the live
//! pipeline (a full queue drops the frame and counts it). Each frame's PNGs are written first,
//! then its rows are appended to `frames.csv` and flushed: a recording cut off by a crash keeps
//! every row written before it, and every row's images exist. The manifest is replaced
//! atomically. A write error (a full disk) stops the recording and keeps what is on disk.
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Sender, TrySendError};

use super::format::{self, FaceRecord, FrameRow, Manifest};
use crate::frame::FrameResult;
use crate::labels::Expression;

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error(
        "session folder {0} already exists: a recording never writes into another one's folder"
    )]
    Exists(PathBuf),
    #[error("creating session {path}: {reason}")]
    Create { path: PathBuf, reason: String },
    #[error("recorder thread: {0}")]
    Thread(String),
}

/// What a recording ended with.
#[derive(Debug, Clone)]
pub struct RecordSummary {
    pub dir: PathBuf,
    pub frames: u64,
    pub rows: u64,
    pub dropped: u64,
    /// Why it stopped early, if it did.
    pub stopped_by: Option<String>,
}

/// One frame to record.
pub struct RecordItem {
    pub result: FrameResult,
    pub label: Option<Expression>,
}

pub struct Recorder {
    dir: PathBuf,
    tx: Option<Sender<RecordItem>>,
    handle: Option<JoinHandle<RecordSummary>>,
    rows: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    failed: Arc<Mutex<Option<String>>>,
}

/// A new, unused folder under `parent`: `session-YYYYMMDD-HHMMSS`, with `-2`, `-3`, … if taken.
pub fn new_session_dir(parent: &Path) -> PathBuf {
    let stamp: String = format::now_rfc3339()
        .chars()
        .filter(|c| c.is_ascii_digit())
        .take(14)
        .collect();
    let base = format!(
        "session-{}-{}",
        stamp.get(..8).unwrap_or("0"),
        stamp.get(8..).unwrap_or("0")
    );
    let mut dir = parent.join(&base);
    let mut n = 2;
    while dir.exists() {
        dir = parent.join(format!("{base}-{n}"));
        n += 1;
    }
    dir
}

/// Writes `value` to `path` through a temporary file and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn write_manifest(dir: &Path, manifest: &Manifest) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(manifest).map_err(std::io::Error::other)?;
    write_atomically(&dir.join(format::MANIFEST_FILE), &json)
}

struct Writer {
    dir: PathBuf,
    csv: csv::Writer<File>,
    record_frames: bool,
    frames: u64,
    /// The own neutral face's frames last written, and where.
    own_frames: Option<(std::sync::Arc<Vec<crate::face::AlignedFace>>, String)>,
}

impl Writer {
    fn write(&mut self, item: &RecordItem) -> Result<u64, String> {
        let r = &item.result;
        let seq = r.frame.seq;
        let err = |path: &Path, e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        if self.record_frames {
            let path = self
                .dir
                .join(format::FRAMES_DIR)
                .join(format!("{seq:06}.jpg"));
            r.frame.rgb.save(&path).map_err(|e| err(&path, &e))?;
        }
        let mut rows = Vec::new();
        for (i, f) in r.faces.iter().enumerate() {
            let name = format!("{seq:06}_{i}.png");
            let query_png = format!("{}/{name}", format::FACES_DIR);
            let reference_png = format!("{}/{name}", format::REFERENCES_DIR);
            for (rel, face) in [
                (&query_png, &f.aligned),
                (&reference_png, &f.prediction.reference),
            ] {
                let path = self.dir.join(rel);
                format::save_face_png(face, &path).map_err(|e| err(&path, &e))?;
            }
            // The own neutral face's frames: written once each time they change.
            let own_frames_png = match &f.prediction.own_crops {
                Some(crops) => {
                    let written = self
                        .own_frames
                        .as_ref()
                        .filter(|(c, _)| std::sync::Arc::ptr_eq(c, crops));
                    match written {
                        Some((_, rel)) => Some(rel.clone()),
                        None => {
                            let rel = format!("{}/own_{name}", format::REFERENCES_DIR);
                            let path = self.dir.join(&rel);
                            format::save_faces_png(crops, &path).map_err(|e| err(&path, &e))?;
                            self.own_frames = Some((crops.clone(), rel.clone()));
                            Some(rel)
                        }
                    }
                }
                None => None,
            };
            rows.push(FrameRow {
                frame: seq,
                time_s: r.frame.time_s,
                label: item.label,
                face: Some(FaceRecord {
                    index: i,
                    bbox: f.detected.bbox,
                    landmarks: f.detected.landmarks,
                    probs: f.prediction.probs,
                    predicted: f.prediction.label,
                    own_reference: f.prediction.own_reference(),
                    query_png,
                    reference_png,
                    intensity: Some(f.prediction.intensity),
                    own_frames_png,
                }),
            });
        }
        if rows.is_empty() {
            rows.push(FrameRow {
                frame: seq,
                time_s: r.frame.time_s,
                label: item.label,
                face: None,
            });
        }
        let csv_path = self.dir.join(format::FRAMES_FILE);
        for row in &rows {
            self.csv
                .write_record(row.to_record())
                .map_err(|e| err(&csv_path, &e))?;
        }
        self.csv.flush().map_err(|e| err(&csv_path, &e))?;
        self.frames += 1;
        Ok(rows.len() as u64)
    }
}

impl Recorder {
    /// Creates the session folder `dir` (which must not exist) and starts the recorder thread.
    pub fn start(
        dir: &Path,
        manifest: Manifest,
        record_frames: bool,
    ) -> Result<Recorder, RecorderError> {
        let create = |path: &Path, e: std::io::Error| RecorderError::Create {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| create(parent, e))?;
        }
        match std::fs::create_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(RecorderError::Exists(dir.to_path_buf()))
            }
            Err(e) => return Err(create(dir, e)),
        }
        let mut subdirs = vec![format::FACES_DIR, format::REFERENCES_DIR];
        if record_frames {
            subdirs.push(format::FRAMES_DIR);
        }
        for sub in subdirs {
            std::fs::create_dir(dir.join(sub)).map_err(|e| create(&dir.join(sub), e))?;
        }
        write_manifest(dir, &manifest).map_err(|e| create(dir, e))?;
        let csv_path = dir.join(format::FRAMES_FILE);
        let mut csv = csv::Writer::from_path(&csv_path).map_err(|e| RecorderError::Create {
            path: csv_path.clone(),
            reason: e.to_string(),
        })?;
        csv.write_record(format::header())
            .and_then(|_| csv.flush().map_err(csv::Error::from))
            .map_err(|e| RecorderError::Create {
                path: csv_path.clone(),
                reason: e.to_string(),
            })?;

        let (tx, rx) = bounded::<RecordItem>(64);
        let rows = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(Mutex::new(None));
        let (rows_t, dropped_t, failed_t) = (rows.clone(), dropped.clone(), failed.clone());
        let dir_t = dir.to_path_buf();
        let handle = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || {
                let mut writer = Writer {
                    dir: dir_t.clone(),
                    csv,
                    record_frames,
                    frames: 0,
                    own_frames: None,
                };
                let mut stopped_by = None;
                for item in rx.iter() {
                    match writer.write(&item) {
                        Ok(n) => {
                            rows_t.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(e) => {
                            let message = format!(
                                "recording stopped: {e}; the {} rows written before are kept in {}",
                                rows_t.load(Ordering::Relaxed),
                                dir_t.display()
                            );
                            tracing::error!("{message}");
                            if let Ok(mut f) = failed_t.lock() {
                                *f = Some(message.clone());
                            }
                            stopped_by = Some(message);
                            break;
                        }
                    }
                }
                let summary = RecordSummary {
                    dir: dir_t.clone(),
                    frames: writer.frames,
                    rows: rows_t.load(Ordering::Relaxed),
                    dropped: dropped_t.load(Ordering::Relaxed),
                    stopped_by: stopped_by.clone(),
                };
                let mut manifest = manifest;
                manifest.ended_at = Some(format::now_rfc3339());
                manifest.frames = Some(summary.frames);
                manifest.rows = Some(summary.rows);
                manifest.dropped = Some(summary.dropped);
                manifest.stopped_by = stopped_by;
                if let Err(e) = write_manifest(&dir_t, &manifest) {
                    tracing::warn!(error = %e, "could not update the session manifest");
                }
                summary
            })
            .map_err(|e| RecorderError::Thread(e.to_string()))?;
        Ok(Recorder {
            dir: dir.to_path_buf(),
            tx: Some(tx),
            handle: Some(handle),
            rows,
            dropped,
            failed,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Queues a frame. `wait`: block while the queue is full (file sources); otherwise a full
    /// queue drops the frame and counts it (live sources). `false` once the recording stopped.
    pub fn record(&self, item: RecordItem, wait: bool) -> bool {
        if self.failure().is_some() {
            return false;
        }
        let Some(tx) = &self.tx else { return false };
        if wait {
            return tx.send(item).is_ok();
        }
        match tx.try_send(item) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Why the recording stopped, once it has.
    pub fn failure(&self) -> Option<String> {
        self.failed.lock().ok().and_then(|f| f.clone())
    }

    /// Writes what is queued, updates the manifest and returns the summary.
    pub fn finish(mut self) -> Result<RecordSummary, RecorderError> {
        self.tx.take();
        match self.handle.take() {
            Some(h) => h
                .join()
                .map_err(|_| RecorderError::Thread("the recorder thread panicked".into())),
            None => Err(RecorderError::Thread("already finished".into())),
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
