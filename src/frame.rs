//! What travels between the pipeline's threads: a captured frame, its faces, its predictions,
//! and the per-stage timestamps that go with it.
use std::time::Instant;

use image::RgbImage;

use crate::face::{AlignedFace, DetectedFace};
use crate::infer::FacePrediction;

/// A frame as the capture thread hands it on.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Index in the source, from 0.
    pub seq: u64,
    /// Position in the source (video time, or seconds since capture started).
    pub time_s: f64,
    /// When the capture thread had the frame in hand: end-to-end latency counts from here.
    pub captured_at: Instant,
    /// Time spent waiting for and decoding the frame.
    pub capture_ms: f64,
    pub rgb: RgbImage,
}

/// A frame with every face found and aligned.
#[derive(Debug, Clone)]
pub struct FacesFrame {
    pub frame: Frame,
    pub faces: Vec<(DetectedFace, AlignedFace)>,
    pub detect_ms: f64,
    pub align_ms: f64,
}

/// The pipeline's result for one frame: faces largest first, each with its prediction.
#[derive(Debug, Clone)]
pub struct FrameResult {
    pub frame: Frame,
    pub faces: Vec<FaceResult>,
    pub detect_ms: f64,
    pub align_ms: f64,
    pub model_ms: f64,
    /// The predictions are the previous frame's: every face was held still by the tracker
    /// (`DetectedFace::held`), so the model did not run.
    pub model_held: bool,
    /// From capture to the end of inference.
    pub total_ms: f64,
}

#[derive(Debug, Clone)]
pub struct FaceResult {
    pub detected: DetectedFace,
    pub aligned: AlignedFace,
    pub prediction: FacePrediction,
}

impl FrameResult {
    /// One JSON object per frame, with the field names of `dgcn infer`.
    pub fn to_json(&self) -> serde_json::Value {
        let r = |v: f32| (v as f64 * 10.0).round() / 10.0;
        let ms = |v: f64| (v * 100.0).round() / 100.0;
        serde_json::json!({
            "frame": self.frame.seq,
            "time_s": (self.frame.time_s * 1000.0).round() / 1000.0,
            "faces": self.faces.iter().map(|f| serde_json::json!({
                "track": f.detected.track,
                "box": f.detected.bbox.map(r),
                "landmarks": f.detected.landmarks.map(|p| p.map(r)),
                "probs": crate::infer::probs_json(&f.prediction.probs),
                "label": f.prediction.label.name(),
                "intensity": (f.prediction.intensity as f64 * 1e4).round() / 1e4,
                // Compared with the person's own neutral face, not the generated reference.
                "own_reference": f.prediction.own_reference(),
            })).collect::<Vec<_>>(),
            // The model did not run: the faces had not moved, the previous result stands.
            "held": self.model_held,
            "latency_ms": {
                "capture": ms(self.frame.capture_ms),
                "detect": ms(self.detect_ms),
                "align": ms(self.align_ms),
                "model": ms(self.model_ms),
                "total": ms(self.total_ms),
            },
        })
    }
}
