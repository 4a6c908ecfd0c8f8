//! The pipeline's threads: capture → detect and align → inference (tch) → results. Each stage is
//! a named thread owned by [`Pipeline`]; stages are joined by bounded channels. Live sources use
//! newest-wins channels (stale frames are dropped and counted); recorded sources can ask for
//! every frame (`lossless`), where a full channel makes the reader wait instead.
pub mod channel;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::capture::FrameSource;
use crate::face::{aligned_from_image, Detector};
use crate::frame::{FaceResult, FacesFrame, Frame, FrameResult};
use crate::infer::Predictor;

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

pub struct PipelineConfig {
    /// Stop after this many frames.
    pub max_frames: Option<u64>,
    /// Never drop a frame (files); otherwise newest wins (camera).
    pub lossless: bool,
}

/// The running stages. Dropping it stops them and joins every thread.
pub struct Pipeline {
    pub results: Receiver<FrameResult>,
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
        let (frame_tx, frame_rx) = stage_channel::<Frame>(config.lossless, 2, &dropped);
        let (faces_tx, faces_rx) = stage_channel::<FacesFrame>(config.lossless, 2, &dropped);
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
                        match source.next_frame() {
                            Ok(Some(f)) => {
                                let frame = Frame {
                                    seq,
                                    time_s: f
                                        .time_s
                                        .unwrap_or_else(|| started.elapsed().as_secs_f64()),
                                    captured_at: t0,
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
                    for frame in frame_rx.iter() {
                        if stop_d.load(Ordering::Relaxed) {
                            break;
                        }
                        let t0 = Instant::now();
                        let detected = match detector.detect(&frame.rgb) {
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
        handles.push(
            std::thread::Builder::new()
                .name("inference".into())
                .spawn(move || {
                    for ff in faces_rx.iter() {
                        if stop_i.load(Ordering::Relaxed) {
                            break;
                        }
                        let t0 = Instant::now();
                        let aligned: Vec<_> = ff.faces.iter().map(|(_, a)| a.clone()).collect();
                        let preds = predictor.predict(&aligned, None);
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
                            total_ms,
                        };
                        if !result_tx.send(result) {
                            break;
                        }
                    }
                })?,
        );

        Ok(Pipeline {
            results,
            stop,
            handles,
            errors,
            dropped,
        })
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
