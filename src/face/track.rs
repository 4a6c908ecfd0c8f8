//! Face tracking between detections, so that most frames skip the full-frame detector: each face
//! found is looked for again in a small square around where it was (BlazeFace on a crop scaled to
//! `roi_side_px`), and the whole frame, downscaled, is searched only every `full_every` frames or
//! when a face is lost. BlazeFace's cost grows with the pixels it sees: a 192×192 crop is 8× fewer
//! than a 640×480 frame.
use image::{imageops, RgbImage};

use super::detect::{iou, DetectError, DetectedFace, Detector};

/// How long a lost face's id is kept for it (1 s at 30 fps).
const TRACK_MEMORY_FRAMES: u64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TrackConfig {
    /// Search the whole frame at least every this many frames (1: every frame, no tracking).
    pub full_every: u32,
    /// Full-frame searches run on the frame scaled down to this longer side (0: full size).
    pub full_max_side_px: u32,
    /// Tracked faces are searched in a crop of this many pixels a side.
    pub roi_side_px: u32,
    /// The crop's side, in face-box sizes.
    pub roi_scale: f32,
    /// With no face in view for `idle_after` frames, search the whole frame only every this
    /// many frames (1: every frame): a camera facing an empty room costs little, and a face that
    /// walks in is found within `idle_every` frames (half a second at 30 fps).
    pub idle_every: u32,
    pub idle_after: u32,
    /// A tracked face whose box region has changed less than a shift of about a pixel would
    /// change it keeps its landmarks without a detection, for at most this many frames in a row
    /// (0: detect every frame). A person holding still costs no detector run.
    pub still_max: u32,
}

impl Default for TrackConfig {
    fn default() -> Self {
        TrackConfig {
            full_every: 10,
            full_max_side_px: 320,
            roi_side_px: 192,
            roi_scale: 2.0,
            idle_every: 15,
            idle_after: 30,
            still_max: 3,
        }
    }
}

impl TrackConfig {
    /// The whole frame at full size on every frame (the reference for speed-ups).
    pub fn every_frame() -> TrackConfig {
        TrackConfig {
            full_every: 1,
            full_max_side_px: 0,
            idle_every: 1,
            still_max: 0,
            ..TrackConfig::default()
        }
    }
}

/// Side of the grey thumbnail of a face's box that tells whether the face has moved.
const STILL_SIDE: usize = 16;

/// What a tracked face looked like when it was last detected: the thumbnail of its box and how
/// much a shift of `STILL_SHIFT_PX` changes it (the threshold for "has not moved").
struct StillCheck {
    thumb: Vec<f32>,
    threshold: f32,
    reused: u32,
}

/// The shift (pixels) whose effect on the thumbnail is the threshold: a face that changed less
/// moved by less than about this much.
const STILL_SHIFT_PX: f32 = 1.0;

/// Mean grey level (0–255) of `STILL_SIDE`² cells over the box `[x, y, w, h]` shifted by `dx`,
/// `dy`; None when the box leaves the frame.
fn box_thumbnail(img: &RgbImage, bbox: &[f32; 4], dx: f32, dy: f32) -> Option<Vec<f32>> {
    let (x0, y0) = (bbox[0] + dx, bbox[1] + dy);
    let (w, h) = (bbox[2], bbox[3]);
    if x0 < 0.0
        || y0 < 0.0
        || w < STILL_SIDE as f32
        || h < STILL_SIDE as f32
        || x0 + w > img.width() as f32
        || y0 + h > img.height() as f32
    {
        return None;
    }
    let (x0, y0) = (x0 as usize, y0 as usize);
    let (w, h) = (w as usize, h as usize);
    // Straight over the frame's rows (runs five times per detection: `get_pixel` made this 6 %
    // of a paced frame's CPU).
    let cell_x: Vec<usize> = (0..w).map(|x| x * STILL_SIDE / w).collect();
    let mut col_count = [0u32; STILL_SIDE];
    for &cx in &cell_x {
        col_count[cx] += 1;
    }
    let mut row_count = [0u32; STILL_SIDE];
    // Grey in fixed point (weights 77/150/29 of 256, BT.601 as `image`'s luma); a cell of even
    // a frame-filling box stays far below u64's range.
    let mut sum = [0u64; STILL_SIDE * STILL_SIDE];
    let stride = img.width() as usize * 3;
    let raw = img.as_raw();
    for y in 0..h {
        let cy = y * STILL_SIDE / h;
        row_count[cy] += 1;
        let start = (y0 + y) * stride + x0 * 3;
        let row = raw.get(start..start + w * 3)?;
        let cells = &mut sum[cy * STILL_SIDE..(cy + 1) * STILL_SIDE];
        for (p, &cx) in row.chunks_exact(3).zip(&cell_x) {
            cells[cx] += u64::from(77 * p[0] as u32 + 150 * p[1] as u32 + 29 * p[2] as u32);
        }
    }
    Some(
        sum.iter()
            .enumerate()
            .map(|(i, &s)| {
                let n = (row_count[i / STILL_SIDE] * col_count[i % STILL_SIDE]).max(1);
                s as f32 / (256 * n) as f32
            })
            .collect(),
    )
}

fn mean_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(p, q)| (p - q).abs()).sum::<f32>() / a.len().max(1) as f32
}

impl StillCheck {
    fn new(img: &RgbImage, face: &DetectedFace) -> Option<StillCheck> {
        let thumb = box_thumbnail(img, &face.bbox, 0.0, 0.0)?;
        let d = STILL_SHIFT_PX;
        let threshold = [(d, 0.0), (-d, 0.0), (0.0, d), (0.0, -d)]
            .iter()
            .filter_map(|&(dx, dy)| box_thumbnail(img, &face.bbox, dx, dy))
            .map(|t| mean_abs_diff(&t, &thumb))
            .fold(f32::INFINITY, f32::min);
        threshold.is_finite().then_some(StillCheck {
            thumb,
            threshold,
            reused: 0,
        })
    }

    /// Whether the face's box region in `img` changed less than the threshold.
    fn still(&self, img: &RgbImage, face: &DetectedFace) -> bool {
        box_thumbnail(img, &face.bbox, 0.0, 0.0)
            .is_some_and(|t| mean_abs_diff(&t, &self.thumb) < self.threshold)
    }
}

pub struct FaceTracker {
    detector: Detector,
    config: TrackConfig,
    tracked: Vec<DetectedFace>,
    /// One per tracked face: its thumbnail when last detected (None: not checkable).
    still: Vec<Option<StillCheck>>,
    since_full: u32,
    /// Frames in a row without a face.
    empty_frames: u32,
    /// The id the next new face gets.
    next_track: u64,
    /// Each track's last box and the frame it was seen in, kept for `TRACK_MEMORY_FRAMES` so
    /// that a face the detector misses for a moment comes back under its own id.
    last_seen: Vec<(DetectedFace, u64)>,
    /// Full-frame searches so far (for benchmarks and tests).
    pub full_searches: u64,
    pub frames: u64,
    /// Tracked faces that kept their landmarks without a detection (for benchmarks and tests).
    pub still_reused: u64,
}

/// `face` mapped from a crop's coordinates back to the frame's: frame = crop / scale + offset.
fn from_crop(face: &DetectedFace, offset: [f32; 2], scale: f32) -> DetectedFace {
    let map = |p: [f32; 2]| [p[0] / scale + offset[0], p[1] / scale + offset[1]];
    let [x, y] = map([face.bbox[0], face.bbox[1]]);
    DetectedFace {
        bbox: [x, y, face.bbox[2] / scale, face.bbox[3] / scale],
        landmarks: face.landmarks.map(map),
        score: face.score,
        track: face.track,
        held: false,
    }
}

/// The region `[x0, y0, w, h]` of `img`, scaled (triangle filter, as `image`'s `Triangle`) so
/// that its longer side is at most `max_side` (0: no limit), and that scale. The live tracker
/// calls it every frame: `fast_image_resize` does it with SIMD straight from the frame, where
/// `image`'s crop-copy-resize took 1.2 ms of the 8.5 ms of CPU a paced frame cost (`perf`,
/// labelled clip, 192-px crops). The whole frame, already small enough, is lent, not copied.
fn scaled_region(
    img: &RgbImage,
    region: [u32; 4],
    max_side: u32,
) -> (std::borrow::Cow<'_, RgbImage>, f32) {
    use std::borrow::Cow;
    let [x0, y0, w, h] = region;
    let long = w.max(h);
    let scale = if max_side == 0 || long <= max_side {
        1.0
    } else {
        max_side as f32 / long as f32
    };
    let dw = ((w as f32 * scale).round() as u32).max(1);
    let dh = ((h as f32 * scale).round() as u32).max(1);
    if scale == 1.0 {
        if region == [0, 0, img.width(), img.height()] {
            return (Cow::Borrowed(img), 1.0);
        }
        return (
            Cow::Owned(imageops::crop_imm(img, x0, y0, w, h).to_image()),
            1.0,
        );
    }
    let resized = (|| {
        use fast_image_resize as fr;
        let src =
            fr::images::ImageRef::new(img.width(), img.height(), img.as_raw(), fr::PixelType::U8x3)
                .ok()?;
        let mut dst = fr::images::Image::new(dw, dh, fr::PixelType::U8x3);
        let options = fr::ResizeOptions::new()
            .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear))
            .crop(x0 as f64, y0 as f64, w as f64, h as f64);
        fr::Resizer::new().resize(&src, &mut dst, &options).ok()?;
        RgbImage::from_raw(dw, dh, dst.into_vec())
    })();
    // Not expected (the region lies in the frame); `image` gives the same picture, slower.
    let resized = resized.unwrap_or_else(|| {
        let crop = imageops::crop_imm(img, x0, y0, w, h).to_image();
        imageops::resize(&crop, dw, dh, imageops::FilterType::Triangle)
    });
    (Cow::Owned(resized), scale)
}

impl FaceTracker {
    pub fn new(detector: Detector, config: TrackConfig) -> FaceTracker {
        FaceTracker {
            detector,
            config,
            tracked: Vec::new(),
            still: Vec::new(),
            since_full: 0,
            empty_frames: 0,
            next_track: 1,
            last_seen: Vec::new(),
            full_searches: 0,
            frames: 0,
            still_reused: 0,
        }
    }

    fn full_search(&mut self, img: &RgbImage) -> Result<Vec<DetectedFace>, DetectError> {
        self.full_searches += 1;
        let whole = [0, 0, img.width(), img.height()];
        let (small, scale) = scaled_region(img, whole, self.config.full_max_side_px);
        Ok(self
            .detector
            .detect(&small)?
            .iter()
            .map(|f| from_crop(f, [0.0, 0.0], scale))
            .collect())
    }

    /// The face near `last` in this frame, searched in a crop around it.
    fn follow(
        &self,
        img: &RgbImage,
        last: &DetectedFace,
    ) -> Result<Option<DetectedFace>, DetectError> {
        let side = (last.bbox[2].max(last.bbox[3]) * self.config.roi_scale).max(32.0);
        let [cx, cy] = last.center();
        let x0 = (cx - side / 2.0).clamp(0.0, img.width() as f32 - 1.0) as u32;
        let y0 = (cy - side / 2.0).clamp(0.0, img.height() as f32 - 1.0) as u32;
        let w = (side as u32).min(img.width() - x0);
        let h = (side as u32).min(img.height() - y0);
        if w < 16 || h < 16 {
            return Ok(None);
        }
        let (small, scale) = scaled_region(img, [x0, y0, w, h], self.config.roi_side_px);
        // The crop is twice the face: no need for the enlargement that face-filling images get.
        let found = self.detector.detect_with(&small, false)?;
        let offset = [x0 as f32, y0 as f32];
        Ok(found
            .iter()
            .map(|f| from_crop(f, offset, scale))
            .filter(|f| iou(&f.bbox, &last.bbox) > 0.3)
            .max_by(|a, b| iou(&a.bbox, &last.bbox).total_cmp(&iou(&b.bbox, &last.bbox)))
            .map(|f| DetectedFace {
                track: last.track,
                ..f
            }))
    }

    fn still_check(&self, img: &RgbImage, face: &DetectedFace) -> Option<StillCheck> {
        if self.config.still_max == 0 {
            return None;
        }
        StillCheck::new(img, face)
    }

    /// Gives each face of a whole-frame search the id of the tracked face it continues (the
    /// best overlap above 0.3, each id used once), or a new one.
    fn assign_tracks(&mut self, faces: &mut [DetectedFace]) {
        let mut free: Vec<&DetectedFace> = self.last_seen.iter().map(|(f, _)| f).collect();
        for face in faces.iter_mut() {
            let best = free
                .iter()
                .enumerate()
                .map(|(k, t)| (k, iou(&face.bbox, &t.bbox)))
                .filter(|(_, o)| *o > 0.3)
                .max_by(|a, b| a.1.total_cmp(&b.1));
            face.track = match best {
                Some((k, _)) => free.swap_remove(k).track,
                None => {
                    self.next_track += 1;
                    self.next_track - 1
                }
            };
        }
    }

    /// Faces in this frame, largest first, each with its track id.
    pub fn detect(&mut self, img: &RgbImage) -> Result<Vec<DetectedFace>, DetectError> {
        let faces = self.detect_untracked(img)?;
        let now = self.frames;
        for f in &faces {
            self.last_seen.retain(|(g, _)| g.track != f.track);
            self.last_seen.push((f.clone(), now));
        }
        self.last_seen
            .retain(|(_, seen)| now.saturating_sub(*seen) <= TRACK_MEMORY_FRAMES);
        Ok(faces)
    }

    fn detect_untracked(&mut self, img: &RgbImage) -> Result<Vec<DetectedFace>, DetectError> {
        self.frames += 1;
        let idle = self.tracked.is_empty() && self.empty_frames >= self.config.idle_after;
        if idle && self.since_full + 1 < self.config.idle_every {
            self.since_full += 1;
            self.empty_frames = self.empty_frames.saturating_add(1);
            return Ok(Vec::new());
        }
        let due = self.tracked.is_empty() || self.since_full + 1 >= self.config.full_every;
        if !due {
            let mut followed: Vec<(DetectedFace, Option<StillCheck>)> =
                Vec::with_capacity(self.tracked.len());
            let mut lost = false;
            let mut checks = std::mem::take(&mut self.still).into_iter();
            for last in &self.tracked {
                // Held still: the last landmarks stand, no detector run.
                let still = checks
                    .next()
                    .flatten()
                    .filter(|c| c.reused < self.config.still_max && c.still(img, last));
                if let Some(mut check) = still {
                    self.still_reused += 1;
                    check.reused += 1;
                    let held = DetectedFace {
                        held: true,
                        ..last.clone()
                    };
                    followed.push((held, Some(check)));
                    continue;
                }
                match self.follow(img, last)? {
                    Some(f) if !followed.iter().any(|(g, _)| iou(&g.bbox, &f.bbox) > 0.5) => {
                        let check = self.still_check(img, &f);
                        followed.push((f, check));
                    }
                    Some(_) => {}
                    None => lost = true,
                }
            }
            if !lost {
                self.since_full += 1;
                followed.sort_by(|a, b| b.0.area().total_cmp(&a.0.area()));
                let (faces, checks): (Vec<_>, Vec<_>) = followed.into_iter().unzip();
                self.tracked = faces.clone();
                self.still = checks;
                return Ok(faces);
            }
        }
        let mut faces = self.full_search(img)?;
        self.assign_tracks(&mut faces);
        // Landmarks of a whole-frame search (on the downscaled frame) are coarser than a tracked
        // crop's: they are not held; the next frame looks again in the crop.
        self.still = faces.iter().map(|_| None).collect();
        self.since_full = 0;
        self.empty_frames = if faces.is_empty() {
            self.empty_frames.saturating_add(1)
        } else {
            0
        };
        self.tracked = faces.clone();
        Ok(faces)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 640×480 frame with structure at every scale: gradients, a checkerboard, noise.
    fn textured_frame() -> RgbImage {
        RgbImage::from_fn(640, 480, |x, y| {
            let noise = (x
                .wrapping_mul(2654435761)
                .wrapping_add(y.wrapping_mul(40503))
                >> 7)
                % 40;
            let check = if (x / 7 + y / 5) % 2 == 0 { 60 } else { 0 };
            image::Rgb([
                (x * 255 / 639 / 2 + check + noise) as u8,
                (y * 255 / 479 / 2 + noise) as u8,
                (((x + y) % 256) / 2 + check) as u8,
            ])
        })
    }

    #[test]
    fn the_thumbnail_is_the_mean_grey_of_each_cell() {
        let img = textured_frame();
        let bbox = [101.6f32, 57.3, 213.9, 262.2];
        let fast = box_thumbnail(&img, &bbox, 1.0, -1.0).expect("inside");
        // The plain definition, pixel by pixel.
        let (x0, y0, w, h) = (102u32, 56u32, 213u32, 262u32);
        let mut sum = vec![0f32; STILL_SIDE * STILL_SIDE];
        let mut count = vec![0u32; STILL_SIDE * STILL_SIDE];
        for y in 0..h {
            for x in 0..w {
                let c = (y as usize * STILL_SIDE / h as usize) * STILL_SIDE
                    + x as usize * STILL_SIDE / w as usize;
                let p = img.get_pixel(x0 + x, y0 + y).0;
                sum[c] += 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32;
                count[c] += 1;
            }
        }
        for (i, (s, c)) in sum.iter().zip(&count).enumerate() {
            // Fixed-point weights: within half a grey level of the float definition.
            assert!((fast[i] - s / *c as f32).abs() < 0.5, "cell {i}");
        }
        assert!(box_thumbnail(&img, &[600.0, 10.0, 50.0, 50.0], 0.0, 0.0).is_none());
    }

    #[test]
    fn a_scaled_region_matches_image_s_triangle_filter() {
        let img = textured_frame();
        let region = [137, 61, 431, 402];
        let (fast, scale) = scaled_region(&img, region, 192);
        assert_eq!(scale, 192.0 / 431.0);
        let crop = imageops::crop_imm(&img, 137, 61, 431, 402).to_image();
        let slow = imageops::resize(&crop, 192, 179, imageops::FilterType::Triangle);
        assert_eq!(fast.dimensions(), slow.dimensions());
        // The edge pixels differ more: `fast_image_resize` filters across the region's border
        // with the frame's pixels beyond it, `image` sees only the cropped copy.
        let (mut sum, mut worst_inside, mut n) = (0.0f32, 0.0f32, 0);
        for (x, y, a) in fast.enumerate_pixels() {
            let b = slow.get_pixel(x, y);
            for k in 0..3 {
                let d = (a[k] as f32 - b[k] as f32).abs();
                sum += d;
                n += 1;
                if x > 0 && y > 0 && x < 191 && y < 178 {
                    worst_inside = worst_inside.max(d);
                }
            }
        }
        let mean = sum / n as f32;
        assert!(
            mean < 0.5 && worst_inside <= 2.0,
            "mean {mean}, worst inside {worst_inside}"
        );
        // Small enough already: the region itself.
        let (same, one) = scaled_region(&img, [10, 20, 150, 100], 192);
        assert_eq!(one, 1.0);
        assert_eq!(*same, imageops::crop_imm(&img, 10, 20, 150, 100).to_image());
        // The whole frame, small enough: lent as it is.
        let whole = [0, 0, img.width(), img.height()];
        let (lent, one) = scaled_region(&img, whole, img.width().max(img.height()));
        assert!(one == 1.0 && matches!(lent, std::borrow::Cow::Borrowed(_)));
        assert!(matches!(
            scaled_region(&img, whole, 0).0,
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn crop_coordinates_map_back_to_the_frame() {
        let f = DetectedFace {
            bbox: [10.0, 20.0, 40.0, 50.0],
            landmarks: [[20.0, 30.0]; 5],
            score: 0.9,
            track: 7,
            held: false,
        };
        let g = from_crop(&f, [100.0, 200.0], 0.5);
        assert_eq!(g.bbox, [120.0, 240.0, 80.0, 100.0]);
        assert_eq!(g.landmarks[0], [140.0, 260.0]);
        assert_eq!(g.track, 7);
    }

    #[test]
    fn overlap_of_boxes() {
        assert!((iou(&[0.0, 0.0, 10.0, 10.0], &[0.0, 0.0, 10.0, 10.0]) - 1.0).abs() < 1e-6);
        assert!((iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 10.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[20.0, 0.0, 10.0, 10.0]), 0.0);
    }
}
