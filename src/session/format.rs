//! The session format: the manifest and the rows of `frames.csv`, and 16-bit grey PNGs for faces.
use std::path::Path;

use serde::{Deserialize, Serialize};

use anyhow::Context;

use crate::capture::SourceSpec;
use crate::face::{AlignedFace, FACE_SIZE};
use crate::labels::{class_names, Expression, NUM_CLASSES};

pub const MANIFEST_FILE: &str = "session.json";
pub const FRAMES_FILE: &str = "frames.csv";
pub const FACES_DIR: &str = "faces";
pub const REFERENCES_DIR: &str = "references";
pub const FRAMES_DIR: &str = "frames";
pub const FORMAT: &str = "dgcn-session/1";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CameraSettings {
    pub index: u32,
    pub width: u32,
    pub height: u32,
    pub frames_per_s: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub app_version: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub source: String,
    pub camera: Option<CameraSettings>,
    pub weights_path: String,
    pub weights_sha256: String,
    pub classes: Vec<String>,
    pub device: String,
    /// The network's number format ("f32" or "bf16"; absent in sessions recorded before it was
    /// written): re-scoring with `--precision auto` uses it, so that it reproduces the recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_format: Option<String>,
    /// Where the labels came from: "keys" (live), or the CSV a headless run read them from.
    pub labels_from: Option<String>,
    /// Set when the recording ends normally or stops on an error.
    pub ended_at: Option<String>,
    pub frames: Option<u64>,
    pub rows: Option<u64>,
    /// Frames the recorder could not keep up with (live recording only).
    pub dropped: Option<u64>,
    /// Why the recording stopped early (a full disk, say).
    pub stopped_by: Option<String>,
}

/// One face in one frame, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceRecord {
    pub index: usize,
    pub bbox: [f32; 4],
    pub landmarks: [[f32; 2]; 5],
    pub probs: [f32; NUM_CLASSES],
    pub predicted: Expression,
    /// The person's own neutral face (true) or the generated reference.
    pub own_reference: bool,
    /// Relative to the session folder.
    pub query_png: String,
    pub reference_png: String,
    /// Expression intensity 0–1 (absent in sessions recorded before it was written).
    pub intensity: Option<f32>,
    /// With the own neutral face: every frame of it the model compared with, one below the other
    /// in one PNG (absent before it was written: `reference_png` was then the one frame).
    pub own_frames_png: Option<String>,
}

/// A row of `frames.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameRow {
    pub frame: u64,
    pub time_s: f64,
    /// The label in force when the frame was shown.
    pub label: Option<Expression>,
    pub face: Option<FaceRecord>,
}

pub fn header() -> Vec<String> {
    let mut h: Vec<String> = [
        "frame", "time_s", "label", "face", "box_x", "box_y", "box_w", "box_h",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for i in 0..5 {
        h.push(format!("lm{i}_x"));
        h.push(format!("lm{i}_y"));
    }
    for e in Expression::ALL {
        h.push(format!("p_{}", e.name()));
    }
    for s in [
        "predicted",
        "reference",
        "query_png",
        "reference_png",
        "intensity",
        "own_frames_png",
    ] {
        h.push(s.into());
    }
    h
}

impl FrameRow {
    pub fn to_record(&self) -> Vec<String> {
        let mut r = vec![
            self.frame.to_string(),
            format!("{:.4}", self.time_s),
            self.label.map(|l| l.name().to_string()).unwrap_or_default(),
        ];
        match &self.face {
            Some(f) => {
                r.push(f.index.to_string());
                r.extend(f.bbox.iter().map(|v| format!("{v:.1}")));
                r.extend(f.landmarks.iter().flatten().map(|v| format!("{v:.1}")));
                r.extend(f.probs.iter().map(|v| format!("{v:.6}")));
                r.push(f.predicted.name().into());
                r.push(if f.own_reference { "own" } else { "generated" }.into());
                r.push(f.query_png.clone());
                r.push(f.reference_png.clone());
                r.push(f.intensity.map(|v| format!("{v:.4}")).unwrap_or_default());
                r.push(f.own_frames_png.clone().unwrap_or_default());
            }
            None => r.extend(std::iter::repeat_n(String::new(), header().len() - 3)),
        }
        r
    }
}

/// Writes faces one below the other as one 16-bit grey PNG (64 wide, 64 × their number high).
pub fn save_faces_png(faces: &[AlignedFace], path: &Path) -> image::ImageResult<()> {
    let data: Vec<u16> = faces
        .iter()
        .flat_map(|f| &f.pixels)
        .map(|v| (v.clamp(0.0, 1.0) * 65535.0).round() as u16)
        .collect();
    let img: image::ImageBuffer<image::Luma<u16>, Vec<u16>> =
        image::ImageBuffer::from_raw(FACE_SIZE as u32, (FACE_SIZE * faces.len()) as u32, data)
            .ok_or_else(|| {
                image::ImageError::Parameter(image::error::ParameterError::from_kind(
                    image::error::ParameterErrorKind::DimensionMismatch,
                ))
            })?;
    img.save(path)
}

/// Writes a face as a 16-bit grey PNG (the model's input, to 1/65535).
pub fn save_face_png(face: &AlignedFace, path: &Path) -> image::ImageResult<()> {
    save_faces_png(std::slice::from_ref(face), path)
}

/// Reads the faces of a PNG written by [`save_faces_png`]: 64 wide, a multiple of 64 high.
pub fn load_faces_png(path: &Path) -> Result<Vec<AlignedFace>, String> {
    let img = image::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w != FACE_SIZE || h == 0 || h % FACE_SIZE != 0 {
        return Err(format!(
            "{}: {w}×{h}, expected {FACE_SIZE} wide and a multiple of {FACE_SIZE} high",
            path.display(),
        ));
    }
    let pixels: Vec<f32> = img
        .to_luma16()
        .pixels()
        .map(|p| crate::face::align::quantize_16bit(p.0[0] as f32 / 65535.0))
        .collect();
    Ok(pixels
        .chunks(FACE_SIZE * FACE_SIZE)
        .map(|c| AlignedFace { pixels: c.to_vec() })
        .collect())
}

/// Reads a face PNG written by [`save_face_png`] (or any 64×64 grey image).
pub fn load_face_png(path: &Path) -> Result<AlignedFace, String> {
    let mut faces = load_faces_png(path)?;
    if faces.len() != 1 {
        return Err(format!(
            "{}: {} faces, expected one {FACE_SIZE}×{FACE_SIZE} image",
            path.display(),
            faces.len()
        ));
    }
    Ok(faces.remove(0))
}

/// Now, as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

impl Manifest {
    /// The manifest of a new recording of `spec` with the weights at `weights`.
    pub fn new(
        weights: &Path,
        spec: &SourceSpec,
        source_description: &str,
        device: &str,
        labels_from: Option<String>,
    ) -> anyhow::Result<Manifest> {
        let sha = crate::model::weights::sha256_file(weights)
            .with_context(|| format!("reading {}", weights.display()))?;
        Ok(Manifest {
            format: FORMAT.into(),
            app_version: crate::VERSION_LINE.into(),
            started_at: now_rfc3339(),
            source: format!("{spec} — {source_description}"),
            camera: match spec {
                SourceSpec::Camera(r) => Some(CameraSettings {
                    index: r.index,
                    width: r.width,
                    height: r.height,
                    frames_per_s: r.frames_per_s,
                }),
                _ => None,
            },
            weights_path: weights.display().to_string(),
            weights_sha256: sha,
            classes: class_names(),
            device: device.into(),
            number_format: None,
            labels_from,
            ended_at: None,
            frames: None,
            rows: None,
            dropped: None,
            stopped_by: None,
        })
    }

    /// The manifest with the network's number format ("f32" or "bf16") recorded.
    pub fn with_number_format(self, format: &str) -> Manifest {
        Manifest {
            number_format: Some(format.to_string()),
            ..self
        }
    }
}
