//! BlazeFace through rust-faces (ONNX Runtime): boxes and five landmarks per face, largest first.
//! BlazeFace sees faces of about 10–280 px of its input. Small images (the 48×48 dataset crops) are
//! enlarged and given a replicated border first, since BlazeFace never scales up and misses faces
//! that fill the whole frame. A large image is also searched in a coarse copy (a face filling a
//! photo), in tiles when nothing was found (a small face in it), and each face seen smaller than
//! it is is found again in a crop around it, for sharper landmarks.

use std::path::{Path, PathBuf};

use image::RgbImage;
use rust_faces::{BlazeFaceParams, FaceDetection, FaceDetectorBuilder};

use super::blazeface::BlazeFaceSession;

/// Images whose shorter side is below this are enlarged before detection.
const MIN_DETECT_SIDE_PX: u32 = 160;
/// Enlargement stops where the longer side would pass this.
const MAX_ENLARGED_SIDE_PX: u32 = 2048;
/// The shorter side of the second, coarse search for faces too large for the first.
const COARSE_SHORT_SIDE_PX: u32 = 256;
/// The size a face seen smaller than it is is brought to, in a crop of twice its side, to find
/// its landmarks again.
const REFINE_FACE_PX: u32 = 160;

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
    /// Load the model's weights as the file has them, subnormal ones kept (`face::subnormal`:
    /// the same detections, slower on Intel CPUs). For benchmarks that show the difference.
    pub keep_subnormal_weights: bool,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            model_path: None,
            variant: BlazeFaceVariant::B640,
            score_threshold: 0.75,
            threads: 2,
            keep_subnormal_weights: false,
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
        let session = BlazeFaceSession::load(
            &path,
            config.threads,
            params,
            !config.keep_subnormal_weights,
        )
        .map_err(|reason| DetectError::Model {
            path: path.clone(),
            reason,
        })?;
        Ok(Detector {
            session,
            model_path: path,
            target_size: config.variant.target_size() as u32,
        })
    }

    /// How many of the model's subnormal weights were flushed to zero as it was loaded.
    pub fn subnormal_weights_flushed(&self) -> usize {
        self.session.subnormal_weights_flushed
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
        // Each face with the scale it was seen at (search input pixels per image pixel).
        let mut found = self.detect_fitted(work, self.target_size, scale, pad)?;
        if enlarged.is_none() {
            // BlazeFace's largest anchors miss a face much over ~280 px of its input: a face that
            // fills most of a large photo (a selfie, a portrait) is searched for again in a copy
            // whose shorter side is COARSE_SHORT_SIDE_PX, and added where the first search has
            // none.
            if let Some(target) = coarse_target(work, self.target_size) {
                for (face, seen_at) in self.detect_fitted(work, target, 1.0, 0.0)? {
                    if found.iter().all(|(f, _)| iou(&f.bbox, &face.bbox) < 0.3) {
                        found.push((face, seen_at));
                    }
                }
            }
            // A face too small for the whole-image search of a large photo (a far face, a
            // group): when that search found none, the photo is searched in tiles.
            if found.is_empty() {
                found = self.detect_in_tiles(work)?;
            }
            // A face seen smaller than it is has coarse landmarks: found again in a crop of
            // twice its side around it, where it is REFINE_FACE_PX.
            for (face, seen_at) in &mut found {
                if *seen_at < 0.9 {
                    if let Some(sharper) = self.refine(work, face)? {
                        *face = sharper;
                    }
                }
            }
        }
        let mut out: Vec<DetectedFace> = found.into_iter().map(|(face, _)| face).collect();
        out.sort_by(|a, b| b.area().total_cmp(&a.area()));
        Ok(out)
    }

    /// Faces in overlapping tiles of twice the detector's input side, each searched at half its
    /// size; none for an image the whole-image search already saw at half size or more.
    fn detect_in_tiles(&self, img: &RgbImage) -> Result<Vec<(DetectedFace, f32)>, DetectError> {
        let tile = 2 * self.target_size;
        let (w, h) = img.dimensions();
        if w.max(h) <= tile {
            return Ok(Vec::new());
        }
        let mut out: Vec<(DetectedFace, f32)> = Vec::new();
        for y0 in tile_starts(h, tile) {
            for x0 in tile_starts(w, tile) {
                let (tw, th) = (tile.min(w - x0), tile.min(h - y0));
                let crop = image::imageops::crop_imm(img, x0, y0, tw, th).to_image();
                for (face, seen_at) in self.detect_fitted(&crop, self.target_size, 1.0, 0.0)? {
                    let face = shifted(face, x0 as f32, y0 as f32);
                    // A face in the overlap of two tiles is kept once.
                    if out.iter().all(|(f, _)| iou(&f.bbox, &face.bbox) < 0.3) {
                        out.push((face, seen_at));
                    }
                }
            }
        }
        Ok(out)
    }

    /// `face` found again in a crop of twice its side around it, scaled so that the face is
    /// [`REFINE_FACE_PX`] (never enlarged); `None` when the crop shows no face where it was.
    fn refine(
        &self,
        img: &RgbImage,
        face: &DetectedFace,
    ) -> Result<Option<DetectedFace>, DetectError> {
        let (w, h) = img.dimensions();
        let side = 2.0 * face.bbox[2].max(face.bbox[3]);
        let [cx, cy] = face.center();
        let x0 = (cx - side / 2.0).clamp(0.0, (w - 1) as f32) as u32;
        let y0 = (cy - side / 2.0).clamp(0.0, (h - 1) as f32) as u32;
        let (cw, ch) = ((side as u32).min(w - x0), (side as u32).min(h - y0));
        if cw < 16 || ch < 16 {
            return Ok(None);
        }
        let crop = image::imageops::crop_imm(img, x0, y0, cw, ch).to_image();
        // The face at REFINE_FACE_PX, also where the crop is cut short by the image's edges.
        let face_side = face.bbox[2].max(face.bbox[3]).max(1.0);
        let target = (cw.max(ch) as f32 * REFINE_FACE_PX as f32 / face_side).round() as u32;
        Ok(self
            .detect_fitted(&crop, target.max(16), 1.0, 0.0)?
            .into_iter()
            .map(|(f, _)| shifted(f, x0 as f32, y0 as f32))
            .filter(|f| iou(&f.bbox, &face.bbox) > 0.3)
            .max_by(|a, b| iou(&a.bbox, &face.bbox).total_cmp(&iou(&b.bbox, &face.bbox))))
    }

    /// Faces in `work` fitted within `target` pixels, in the coordinates of the image `work` was
    /// made from (`original = (work − pad) / scale`), each with the scale it was seen at (search
    /// input pixels per original pixel).
    fn detect_fitted(
        &self,
        work: &RgbImage,
        target: u32,
        scale: f32,
        pad: f32,
    ) -> Result<Vec<(DetectedFace, f32)>, DetectError> {
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
                let face = DetectedFace {
                    bbox: [x, y, f.rect.width / sx / scale, f.rect.height / sy / scale],
                    landmarks,
                    score: f.confidence,
                    track: 0,
                    held: false,
                };
                Some((face, sx.min(sy) * scale))
            })
            .collect())
    }
}

/// A face found in a crop, moved to the image the crop starts at (`dx`, `dy`) in.
fn shifted(mut face: DetectedFace, dx: f32, dy: f32) -> DetectedFace {
    face.bbox[0] += dx;
    face.bbox[1] += dy;
    for [x, y] in &mut face.landmarks {
        *x += dx;
        *y += dy;
    }
    face
}

/// Where tiles of `tile` pixels start along a side of `len` pixels: a quarter of a tile's
/// overlap, the last one ending at the edge.
fn tile_starts(len: u32, tile: u32) -> Vec<u32> {
    if len <= tile {
        return vec![0];
    }
    let step = (tile * 3 / 4).max(1);
    let mut starts: Vec<u32> = (0..)
        .map(|i| i * step)
        .take_while(|&s| s + tile < len)
        .collect();
    starts.push(len - tile);
    starts
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_side_with_overlap_and_end_at_the_edge() {
        assert_eq!(tile_starts(1000, 1280), vec![0]);
        assert_eq!(tile_starts(4000, 1280), vec![0, 960, 1920, 2720]);
        assert_eq!(tile_starts(3000, 1280), vec![0, 960, 1720]);
        for len in [1281, 2000, 2561, 6000] {
            let s = tile_starts(len, 1280);
            assert_eq!(s[0], 0);
            assert_eq!(s.last().copied(), Some(len - 1280), "{len}");
            assert!(
                s.windows(2).all(|p| p[1] > p[0] && p[1] - p[0] <= 960),
                "{len}: {s:?}"
            );
        }
    }

    #[test]
    fn a_large_photo_is_searched_coarsely_only_when_a_face_could_fill_it() {
        let img = |w, h| RgbImage::new(w, h);
        // TFEID's 256² photos and the live tracker's 320-pixel frames: no second search.
        assert_eq!(coarse_target(&img(256, 256), 640), None);
        assert_eq!(coarse_target(&img(320, 240), 640), None);
        // A webcam frame: its shorter side brought to 256.
        assert_eq!(coarse_target(&img(640, 480), 640), Some(341));
        assert_eq!(coarse_target(&img(3000, 3000), 640), Some(256));
        assert_eq!(coarse_target(&img(1080, 1920), 640), Some(455));
    }
}
