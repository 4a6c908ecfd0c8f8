//! The pipeline's threads: capture → detect and align → inference (tch) → results. Each stage is
//! a named thread owned by [`Pipeline`]; stages are joined by bounded channels. Live sources use
//! newest-wins channels (stale frames are dropped and counted); recorded sources can ask for
//! every frame (`lossless`), where a full channel makes the reader wait instead.
pub mod channel;
mod own_reference;
pub mod setup;

pub use own_reference::{
    AutoNeutral, AutoNeutralRule, OwnNeutral, OwnReference, DEFAULT_MIN_NEUTRAL, DEFAULT_OWN_FRAMES,
};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::capture::FrameSource;
use crate::face::{
    aligned_from_image, AlignedFace, DetectedFace, Detector, FaceTracker, TrackConfig,
};
use crate::frame::{FaceResult, FacesFrame, Frame, FrameResult};
use crate::infer::{FacePrediction, Predictor};

/// Sends either newest-wins or blocking, as the pipeline was asked.
enum StageSender<T> {
    Newest(channel::NewestSender<T>),
    Blocking(Sender<T>),
}

impl<T> StageSender<T> {
    fn send(&self, item: T) -> bool {
        match self {
            StageSender::Newest(s) => s.send(item),
            StageSender::Blocking(s) => s.send(item).is_ok(),
        }
    }
}

fn stage_channel<T>(
    lossless: bool,
    cap: usize,
    dropped: &Arc<AtomicU64>,
) -> (StageSender<T>, Receiver<T>) {
    if lossless {
        let (tx, rx) = bounded(cap);
        (StageSender::Blocking(tx), rx)
    } else {
        let (tx, rx) = channel::newest_wins_counted(cap, dropped.clone());
        (StageSender::Newest(tx), rx)
    }
}

/// What the UI can ask of the running inference thread.
#[derive(Debug, Clone)]
pub enum Control {
    /// Compare the tracked face with this neutral face instead of its generated reference (the
    /// face is refined by averaging its track's crops on the model's next frames,
    /// [`PipelineConfig::own_frames`] in all); `None` returns to the generated one and stops
    /// taking the own face automatically (the user chose the generated reference).
    OwnReference(Option<OwnReference>),
    /// Take the own neutral face automatically by this rule from now on (`None`: do not).
    AutoNeutral(Option<AutoNeutralRule>),
}

/// The predictions of the frame before (and the crops they were made on), kept for a frame whose
/// faces did not move.
struct HeldPredictions {
    tracks: Vec<u64>,
    /// The crops the model saw: a held frame shows and records these with the predictions, so a
    /// recorded session re-scores to what was recorded.
    aligned: Vec<AlignedFace>,
    predictions: Vec<FacePrediction>,
}

impl HeldPredictions {
    /// The kept predictions when `faces` are the same tracked faces, every one held still by the
    /// tracker (its region changed less than a pixel's shift would change it since it was last
    /// detected, for at most `TrackConfig::still_max` frames); None: run the model.
    fn for_frame(
        &self,
        faces: &[(DetectedFace, AlignedFace)],
    ) -> Option<(Vec<AlignedFace>, Vec<FacePrediction>)> {
        let same = !faces.is_empty()
            && faces.len() == self.tracks.len()
            && faces
                .iter()
                .zip(&self.tracks)
                .all(|((d, _), &t)| d.held && d.track == t && t != 0);
        same.then(|| (self.aligned.clone(), self.predictions.clone()))
    }
}

pub struct PipelineConfig {
    /// Stop after this many frames.
    pub max_frames: Option<u64>,
    /// Never drop a frame (files); otherwise newest wins (camera).
    pub lossless: bool,
    /// Called after each result is handed over (the window uses it to repaint).
    pub notify: Option<Notify>,
    /// How often the whole frame is searched; faces are tracked in between.
    pub track: TrackConfig,
    /// How many of the model's frames of its track an own neutral face is averaged over.
    pub own_frames: usize,
    /// Take a face as its own neutral reference without being asked, by this rule, whenever no
    /// own reference is in view ([`AutoNeutral`]); `None`: only when asked.
    pub auto_neutral: Option<AutoNeutralRule>,
}

impl Default for PipelineConfig {
    /// A live feed: no frame limit, newest wins, default tracking.
    fn default() -> Self {
        PipelineConfig {
            max_frames: None,
            lossless: false,
            notify: None,
            track: TrackConfig::default(),
            own_frames: usize::from(DEFAULT_OWN_FRAMES),
            auto_neutral: None,
        }
    }
}

/// Called by the inference thread after each result.
pub type Notify = Arc<dyn Fn() + Send + Sync>;

/// The running stages. Dropping it stops them and joins every thread.
pub struct Pipeline {
    pub results: Receiver<FrameResult>,
    /// Commands for the inference thread (bounded; `try_send` from the UI).
    pub control: Sender<Control>,
    /// What the source said it is, once opened.
    pub source_description: String,
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
    /// Errors a stage stopped on, for the caller to report.
    pub errors: Receiver<String>,
    /// Frames dropped because a later stage was still busy (newest-wins mode).
    pub dropped: Arc<AtomicU64>,
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

impl Pipeline {
    pub fn start(
        mut source: Box<dyn FrameSource>,
        detector: Detector,
        predictor: Predictor,
        config: PipelineConfig,
    ) -> std::io::Result<Pipeline> {
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let (err_tx, errors) = bounded::<String>(16);
        let (control, control_rx) = bounded::<Control>(8);
        let source_description = source.describe();
        // Live: one slot, so a stage always takes the newest frame, never one queued behind it.
        let slots = if config.lossless { 2 } else { 1 };
        let (frame_tx, frame_rx) = stage_channel::<Frame>(config.lossless, slots, &dropped);
        let (faces_tx, faces_rx) = stage_channel::<FacesFrame>(config.lossless, slots, &dropped);
        let (result_tx, results) = stage_channel::<FrameResult>(config.lossless, 4, &dropped);
        let mut handles = Vec::new();

        let (stop_c, err_c) = (stop.clone(), err_tx.clone());
        handles.push(
            std::thread::Builder::new()
                .name("capture".into())
                .spawn(move || {
                    let started = Instant::now();
                    let mut seq = 0u64;
                    while !stop_c.load(Ordering::Relaxed)
                        && config.max_frames.is_none_or(|m| seq < m)
                    {
                        let t0 = Instant::now();
                        match source.next_frame(&stop_c) {
                            Ok(Some(f)) => {
                                let frame = Frame {
                                    seq,
                                    time_s: f
                                        .time_s
                                        .unwrap_or_else(|| started.elapsed().as_secs_f64()),
                                    // Latency counts from the moment the frame is ours; the
                                    // wait for it (camera exposure, decoding) is `capture_ms`.
                                    captured_at: Instant::now(),
                                    capture_ms: ms_since(t0),
                                    rgb: f.rgb,
                                };
                                tracing::trace!(seq, "captured");
                                if !frame_tx.send(frame) {
                                    break;
                                }
                                seq += 1;
                            }
                            Ok(None) => break,
                            Err(e) => {
                                let _ = err_c.try_send(e.to_string());
                                break;
                            }
                        }
                    }
                })?,
        );

        let (stop_d, err_d) = (stop.clone(), err_tx.clone());
        handles.push(
            std::thread::Builder::new()
                .name("detect".into())
                .spawn(move || {
                    let mut tracker = FaceTracker::new(detector, config.track);
                    for frame in frame_rx.iter() {
                        if stop_d.load(Ordering::Relaxed) {
                            break;
                        }
                        let t0 = Instant::now();
                        let detected = match tracker.detect(&frame.rgb) {
                            Ok(d) => d,
                            Err(e) => {
                                let _ = err_d.try_send(e.to_string());
                                break;
                            }
                        };
                        let detect_ms = ms_since(t0);
                        let t1 = Instant::now();
                        let faces = detected
                            .into_iter()
                            .filter_map(|d| {
                                aligned_from_image(&frame.rgb, &d.landmarks).map(|a| (d, a))
                            })
                            .collect();
                        let item = FacesFrame {
                            frame,
                            faces,
                            detect_ms,
                            align_ms: ms_since(t1),
                        };
                        if !faces_tx.send(item) {
                            break;
                        }
                    }
                })?,
        );

        let stop_i = stop.clone();
        let err_m = err_tx.clone();
        let notify = config.notify.clone();
        let own_frames = config.own_frames;
        let auto_rule = config.auto_neutral;
        handles.push(
            std::thread::Builder::new()
                .name("inference".into())
                .spawn(move || {
                    let mut own: Option<OwnNeutral> = None;
                    let mut auto = auto_rule.map(AutoNeutral::new);
                    // The last frame's track ids and predictions, for frames whose faces were
                    // all held still.
                    let mut last: Option<HeldPredictions> = None;
                    for mut ff in faces_rx.iter() {
                        if stop_i.load(Ordering::Relaxed) {
                            break;
                        }
                        while let Ok(control) = control_rx.try_recv() {
                            match control {
                                Control::OwnReference(r) => {
                                    if r.is_none() {
                                        auto = None;
                                    }
                                    own = r.map(|r| OwnNeutral::new(r, own_frames));
                                    last = None;
                                }
                                Control::AutoNeutral(rule) => auto = rule.map(AutoNeutral::new),
                            }
                        }
                        let t0 = Instant::now();
                        let held = last.as_ref().and_then(|l| l.for_frame(&ff.faces));
                        let model_held = held.is_some();
                        let preds = match held {
                            Some((aligned, p)) => {
                                for ((_, a), held) in ff.faces.iter_mut().zip(aligned) {
                                    *a = held;
                                }
                                p
                            }
                            None => {
                                let aligned: Vec<_> =
                                    ff.faces.iter().map(|(_, a)| a.clone()).collect();
                                let own_for = match own.as_mut() {
                                    Some(o) => o.reference_for(&ff.faces, &predictor),
                                    None => Ok(None),
                                };
                                let preds = match own_for
                                    .and_then(|own_for| predictor.predict(&aligned, own_for))
                                {
                                    Ok(p) => p,
                                    Err(e) => {
                                        let _ = err_m.try_send(format!("the model failed: {e}"));
                                        break;
                                    }
                                };
                                // A held frame leaves `last` as it is: same faces, same result.
                                last = Some(HeldPredictions {
                                    tracks: ff.faces.iter().map(|(d, _)| d.track).collect(),
                                    aligned,
                                    predictions: preds.clone(),
                                });
                                // No own face in view: perhaps one of these is taken now (it
                                // becomes the reference from the next frame on).
                                if let Some(auto) = auto.as_mut() {
                                    if !own.as_ref().is_some_and(|o| o.in_view(&ff.faces)) {
                                        if let Some(taken) = auto.watch(&ff.faces, &preds) {
                                            tracing::info!(
                                                time_s = ff.frame.time_s,
                                                frame = ff.frame.seq,
                                                track = taken.track(),
                                                "own neutral face taken automatically"
                                            );
                                            own = Some(taken);
                                            // The next frame is compared with it, held or not.
                                            last = None;
                                        }
                                    }
                                }
                                preds
                            }
                        };
                        let model_ms = ms_since(t0);
                        let total_ms = ms_since(ff.frame.captured_at);
                        let faces = ff
                            .faces
                            .into_iter()
                            .zip(preds)
                            .map(|((detected, aligned), prediction)| FaceResult {
                                detected,
                                aligned,
                                prediction,
                            })
                            .collect();
                        let result = FrameResult {
                            frame: ff.frame,
                            faces,
                            detect_ms: ff.detect_ms,
                            align_ms: ff.align_ms,
                            model_ms,
                            model_held,
                            total_ms,
                        };
                        if !result_tx.send(result) {
                            break;
                        }
                        if let Some(n) = &notify {
                            n();
                        }
                    }
                })?,
        );

        Ok(Pipeline {
            results,
            control,
            source_description,
            stop,
            handles,
            errors,
            dropped,
        })
    }

    /// Whether every stage has ended (the source ran out or a stage stopped on an error).
    pub fn is_finished(&self) -> bool {
        self.handles.iter().all(|h| h.is_finished())
    }

    /// Stops every stage and waits for the threads.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Unblock stages waiting to send: drain what is queued.
        while self.results.try_recv().is_ok() {}
        for h in self.handles.drain(..) {
            while !h.is_finished() {
                while self.results.try_recv().is_ok() {}
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let _ = h.join();
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.stop();
    }
}
