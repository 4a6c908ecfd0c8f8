//! BlazeFace through rust-faces (ONNX Runtime): boxes and five landmarks per face, largest first.
//! Small images (the 48×48 dataset crops) are enlarged and given a replicated border first, since
//! BlazeFace never scales up and misses faces that fill the whole frame.

use std::path::{Path, PathBuf};

use image::RgbImage;
use rust_faces::{BlazeFaceParams, FaceDetection, FaceDetectorBuilder};

use super::blazeface::BlazeFaceSession;

/// Images whose shorter side is below this are enlarged before detection.
const MIN_DETECT_SIDE_PX: u32 = 160;
/// Enlargement stops where the longer side would pass this.
const MAX_ENLARGED_SIDE_PX: u32 = 2048;

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("face detector model {path}: {reason}")]
    Model { path: PathBuf, reason: String },
    #[error("no BlazeFace model found and the download failed ({0}); pass --detector PATH or set DGCN_BLAZEFACE to a blazeface-640.onnx file")]
    Unavailable(String),
    #[error("ONNX Runtime library not found at {0}; run scripts/setup.sh or set ORT_DYLIB_PATH")]
    Runtime(PathBuf),
    #[error("face detection failed: {0}")]
    Inference(String),
}

/// BlazeFace input variant: the model's nominal input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum BlazeFaceVariant {
    #[value(name = "640")]
    B640,
    #[value(name = "320")]
    B320,
}

impl BlazeFaceVariant {
    /// File name rust-faces uses in its download cache.
    pub fn cache_file_name(self) -> &'static str {
        match self {
            BlazeFaceVariant::B640 => "blazeface-640.onnx",
            BlazeFaceVariant::B320 => "blazeface-320.onnx",
        }
    }
    pub fn target_size(self) -> usize {
        match self {
            BlazeFaceVariant::B640 => 640,
            BlazeFaceVariant::B320 => 320,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DetectorConfig {
    /// Explicit model file; otherwise `$DGCN_BLAZEFACE`, then rust-faces' cache, then download.
    pub model_path: Option<PathBuf>,
    pub variant: BlazeFaceVariant,
    pub score_threshold: f32,
    pub threads: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            model_path: None,
            variant: BlazeFaceVariant::B640,
            score_threshold: 0.75,
            threads: 2,
        }
    }
}

/// One detected face, in the coordinates of the image that was passed in.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DetectedFace {
    /// `[x, y, width, height]` in pixels.
    pub bbox: [f32; 4],
    /// Left eye, right eye, nose, left and right mouth corner (image left/right).
    pub landmarks: [[f32; 2]; 5],
    pub score: f32,
    /// The tracker's id for this face, the same while it is followed from frame to frame
    /// (0: not tracked). Selection in the window and the own neutral reference follow it.
    pub track: u64,
    /// The face had not moved since its last detection, so its box and landmarks were held
    /// without running the detector (`TrackConfig::still_max`); the model may hold its result too.
    #[serde(skip)]
    pub held: bool,
}

impl DetectedFace {
    pub fn area(&self) -> f32 {
        self.bbox[2].max(0.0) * self.bbox[3].max(0.0)
    }

    /// The box's centre, in pixels.
    pub fn center(&self) -> [f32; 2] {
        [
            self.bbox[0] + self.bbox[2] / 2.0,
            self.bbox[1] + self.bbox[3] / 2.0,
        ]
    }
}

pub struct Detector {
    session: BlazeFaceSession,
    pub model_path: PathBuf,
    target_size: u32,
}

/// Points ONNX Runtime at the library set-up installed, unless the user chose one.
fn ensure_ort_dylib() -> Result<(), DetectError> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        let p = PathBuf::from(p);
        return if p.exists() {
            Ok(())
        } else {
            Err(DetectError::Runtime(p))
        };
    }
    let built_in = PathBuf::from(env!("DGCN_DEFAULT_ORT_DYLIB"));
    if built_in.as_os_str().is_empty() || !built_in.exists() {
        return Err(DetectError::Runtime(built_in));
    }
    // Single-threaded at this point: called before the detector (and its threads) exist.
    std::env::set_var("ORT_DYLIB_PATH", &built_in);
    Ok(())
}

fn rust_faces_cache() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".rust_faces"))
}

impl Detector {
    pub fn new(config: &DetectorConfig) -> Result<Detector, DetectError> {
        ensure_ort_dylib()?;
        let params = BlazeFaceParams {
            score_threshold: config.score_threshold,
            target_size: config.variant.target_size(),
            ..BlazeFaceParams::default()
        };
        let detection = match config.variant {
            BlazeFaceVariant::B640 => FaceDetection::BlazeFace640(params.clone()),
            BlazeFaceVariant::B320 => FaceDetection::BlazeFace320(params.clone()),
        };
        let cached = rust_faces_cache().map(|c| c.join(config.variant.cache_file_name()));
        let chosen = config
            .model_path
            .clone()
            .or_else(|| std::env::var_os("DGCN_BLAZEFACE").map(PathBuf::from))
            .or_else(|| cached.clone().filter(|p| p.exists()));
        let path = match chosen {
            Some(path) => {
                check_model_file(&path)?;
                path
            }
            None => download_model(detection, cached.as_deref())?,
        };
        let session = BlazeFaceSession::load(&path, config.threads, params).map_err(|reason| {
            DetectError::Model {
                path: path.clone(),
                reason,
            }
        })?;
        Ok(Detector {
            session,
            model_path: path,
            target_size: config.variant.target_size() as u32,
        })
    }

    /// Faces in `img`, largest first.
    pub fn detect(&self, img: &RgbImage) -> Result<Vec<DetectedFace>, DetectError> {
        self.detect_with(img, true)
    }

    /// As [`Detector::detect`]; `enlarge_small: false` skips the enlargement of small images,
    /// for crops where the face is known to fill only part of the image (tracking).
    pub fn detect_with(
        &self,
        img: &RgbImage,
        enlarge_small: bool,
    ) -> Result<Vec<DetectedFace>, DetectError> {
        if img.width() == 0 || img.height() == 0 {
            return Ok(Vec::new());
        }
        let enlarged = if enlarge_small {
            enlarge_if_small(img)
        } else {
            None
        };
        let (work, scale, pad) = match &enlarged {
            Some((big, scale, pad)) => (big, *scale, *pad),
            None => (img, 1.0, 0.0),
        };
        let mut out = self.detect_fitted(work, self.target_size, scale, pad)?;
        // BlazeFace's largest anchors miss a face much over ~280 px of its input: a face that
        // fills most of a large photo (a selfie, a portrait) is searched for again in a copy
        // whose shorter side is COARSE_SHORT_SIDE_PX, and added where the first search has none.
        if enlarged.is_none() {
            if let Some(target) = coarse_target(work, self.target_size) {
                for face in self.detect_fitted(work, target, scale, pad)? {
                    if out.iter().all(|f| iou(&f.bbox, &face.bbox) < 0.3) {
                        out.push(face);
                    }
                }
            }
        }
        out.sort_by(|a, b| b.area().total_cmp(&a.area()));
        Ok(out)
    }
}

impl Detector {
    /// Faces in `work` fitted within `target` pixels, in the coordinates of the image `work` was
    /// made from (`original = (work − pad) / scale`).
    fn detect_fitted(
        &self,
        work: &RgbImage,
        target: u32,
        scale: f32,
        pad: f32,
    ) -> Result<Vec<DetectedFace>, DetectError> {
        let fitted = fit_to_grid(work, target);
        let (input, sx, sy) = match &fitted {
            Some((f, sx, sy)) => (f, *sx, *sy),
            None => (work, 1.0, 1.0),
        };
        let faces = self.session.detect(input).map_err(DetectError::Inference)?;
        let back = |x: f32, y: f32| [(x / sx - pad) / scale, (y / sy - pad) / scale];
        Ok(faces
            .into_iter()
            .filter_map(|f| {
                let lms = f.landmarks?;
                if lms.len() < 5 {
                    return None;
                }
                let mut landmarks = [[0.0f32; 2]; 5];
                for (slot, (x, y)) in landmarks.iter_mut().zip(lms) {
                    *slot = back(x, y);
                }
                let [x, y] = back(f.rect.x, f.rect.y);
                Some(DetectedFace {
                    bbox: [x, y, f.rect.width / sx / scale, f.rect.height / sy / scale],
                    landmarks,
                    score: f.confidence,
                    track: 0,
                    held: false,
                })
            })
            .collect())
    }
}

/// The shorter side of the second, coarse search for faces too large for the first.
const COARSE_SHORT_SIDE_PX: u32 = 256;

/// The fitting target of the coarse search of `img` (its shorter side brought to
/// [`COARSE_SHORT_SIDE_PX`]), or `None` when the first search, fitted within `target`, already
/// sees the image that small (a face filling it is within BlazeFace's reach).
fn coarse_target(img: &RgbImage, target: u32) -> Option<u32> {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let first = (target as f32 / w.max(h)).min(1.0);
    let short = w.min(h);
    if short * first <= COARSE_SHORT_SIDE_PX as f32 * 1.25 {
        return None;
    }
    Some((w.max(h) * COARSE_SHORT_SIDE_PX as f32 / short).round() as u32)
}

/// Intersection over union of two `[x, y, w, h]` boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let x0 = a[0].max(b[0]);
    let y0 = a[1].max(b[1]);
    let x1 = (a[0] + a[2]).min(b[0] + b[2]);
    let y1 = (a[1] + a[3]).min(b[1] + b[3]);
    let inter = (x1 - x0).max(0.0) * (y1 - y0).max(0.0);
    let union = a[2] * a[3] + b[2] * b[3] - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Fetches the model the way rust-faces does (into `~/.rust_faces/`) and returns where it is.
fn download_model(detection: FaceDetection, cached: Option<&Path>) -> Result<PathBuf, DetectError> {
    // rust-faces unwraps ONNX Runtime's session errors: catch them rather than abort.
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        FaceDetectorBuilder::new(detection).download().build()
    }));
    match built {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(DetectError::Unavailable(e.to_string())),
        Err(_) => {
            return Err(DetectError::Unavailable(
                "the downloaded model did not load".into(),
            ))
        }
    }
    cached
        .filter(|p| p.exists())
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            DetectError::Unavailable("the model is not where rust-faces keeps it".into())
        })
}

fn check_model_file(path: &Path) -> Result<(), DetectError> {
    let meta = std::fs::metadata(path).map_err(|e| DetectError::Model {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if !meta.is_file() || meta.len() < 1024 {
        return Err(DetectError::Model {
            path: path.to_path_buf(),
            reason: "not a BlazeFace .onnx model (too small)".into(),
        });
    }
    Ok(())
}

/// BlazeFace's input padding in rust-faces centres the image on a 16-pixel grid but maps boxes
/// back as if it had not: an input whose sides (after its scaling to `target`) are not multiples
/// of 16 comes back shifted by up to 8 input pixels (measured: 26 px on a 550×480 crop). So we
/// scale to fit `target` ourselves and pad right and bottom, which moves nothing. Returns the
/// image and its x and y scale, or `None` when the image is already on the grid.
fn fit_to_grid(img: &RgbImage, target: u32) -> Option<(RgbImage, f32, f32)> {
    let (w, h) = img.dimensions();
    let ratio = (target as f32 / w as f32)
        .min(target as f32 / h as f32)
        .min(1.0);
    let rw = ((w as f32 * ratio).round() as u32).max(1);
    let rh = ((h as f32 * ratio).round() as u32).max(1);
    if rw == w && rh == h && w % 16 == 0 && h % 16 == 0 {
        return None;
    }
    let resized;
    let scaled = if rw == w && rh == h {
        img
    } else {
        resized = image::imageops::resize(img, rw, rh, image::imageops::FilterType::Triangle);
        &resized
    };
    let mut out = RgbImage::from_pixel(
        rw.div_ceil(16) * 16,
        rh.div_ceil(16) * 16,
        image::Rgb([123, 117, 104]),
    );
    image::imageops::replace(&mut out, scaled, 0, 0);
    Some((out, rw as f32 / w as f32, rh as f32 / h as f32))
}

/// Enlarges an image whose shorter side is under [`MIN_DETECT_SIDE_PX`] by an integer factor and
/// adds a replicated border of a quarter of its size. Returns the image, the scale and the
/// padding, so that original = (work - pad) / scale; `None` when the image is large enough.
fn enlarge_if_small(img: &RgbImage) -> Option<(RgbImage, f32, f32)> {
    let short = img.width().min(img.height());
    let long = img.width().max(img.height());
    if short >= MIN_DETECT_SIDE_PX {
        return None;
    }
    // A thin strip (8×4000) would otherwise grow to gigabytes; no face fills such an image.
    let factor = MIN_DETECT_SIDE_PX
        .div_ceil(short.max(1))
        .min(MAX_ENLARGED_SIDE_PX / long.max(1));
    if factor <= 1 {
        return None;
    }
    let (w, h) = (img.width() * factor, img.height() * factor);
    let big = image::imageops::resize(img, w, h, image::imageops::FilterType::Triangle);
    let pad = (w.max(h) / 4).max(1);
    let mut out = RgbImage::new(w + 2 * pad, h + 2 * pad);
    for (x, y, px) in out.enumerate_pixels_mut() {
        let sx = (x as i64 - pad as i64).clamp(0, w as i64 - 1) as u32;
        let sy = (y as i64 - pad as i64).clamp(0, h as i64 - 1) as u32;
        *px = *big.get_pixel(sx, sy);
    }
    Some((out, factor as f32, pad as f32))
}
