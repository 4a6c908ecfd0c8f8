//! Similarity-transform alignment from BlazeFace's five landmarks (eyes, nose tip, mouth corners,
//! in image order: the eye with the smaller x first) to a fixed 64×64 template, sampled bilinearly
//! into grey. A face larger than the crop is averaged over each crop pixel's footprint (a box
//! prefilter), so that a webcam's sensor noise and fine texture are averaged away rather than
//! aliased into the crop; a face smaller than the crop is sampled at pixel centres. The template
//! keeps brows, mouth and chin in frame, since expressions live there.

use image::RgbImage;

/// Side of the model's square grey input, in pixels.
pub const FACE_SIZE: usize = 64;

/// Where the five landmarks land in the 64×64 crop: left eye, right eye, nose tip, left mouth
/// corner, right mouth corner (image left/right). Eye distance 19 px ≈ 30 % of the width, close
/// to the framing of the 48×48 FER/CK+ crops, so those need little rescaling.
pub const TEMPLATE_64: [[f32; 2]; 5] = [
    [22.5, 26.0],
    [41.5, 26.0],
    [32.0, 36.5],
    [24.5, 47.0],
    [39.5, 47.0],
];

/// A face brought to the model's framing: 64×64 grey values in [0, 1], row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct AlignedFace {
    pub pixels: Vec<f32>,
}

impl AlignedFace {
    /// Grey 8-bit image, for saving and display.
    pub fn to_luma8(&self) -> image::GrayImage {
        let data = self
            .pixels
            .iter()
            .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect();
        image::GrayImage::from_raw(FACE_SIZE as u32, FACE_SIZE as u32, data)
            .unwrap_or_else(|| image::GrayImage::new(FACE_SIZE as u32, FACE_SIZE as u32))
    }

    /// A prepared dataset face (64×64 grey bytes, as `data::PreparedSet::face` gives them).
    pub fn from_prepared(face: &[u8]) -> AlignedFace {
        AlignedFace {
            pixels: face.iter().map(|&v| f32::from(v) / 255.0).collect(),
        }
    }

    /// The whole image, resized to 64×64 grey: for inputs that are already a face crop.
    pub fn from_whole_image(img: &RgbImage) -> AlignedFace {
        let grey = image::DynamicImage::ImageRgb8(img.clone()).to_luma8();
        let resized = image::imageops::resize(
            &grey,
            FACE_SIZE as u32,
            FACE_SIZE as u32,
            image::imageops::FilterType::Triangle,
        );
        AlignedFace {
            pixels: resized
                .pixels()
                .map(|p| quantize_16bit(p.0[0] as f32 / 255.0))
                .collect(),
        }
    }
}

/// Rounds a grey value in [0, 1] to the 16-bit grid, so that a face saved as a 16-bit PNG (a
/// recorded session) reads back bit for bit. It matters: max-pooling's argmax (which the
/// generator's unpooling follows) flips under perturbations of 1e-5, moving probabilities by 1e-2.
pub fn quantize_16bit(v: f32) -> f32 {
    (v.clamp(0.0, 1.0) * 65535.0).round() / 65535.0
}

/// A 2-D similarity transform `p' = [a -b; b a] p + t`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    pub a: f32,
    pub b: f32,
    pub tx: f32,
    pub ty: f32,
}

impl Similarity {
    pub fn apply(&self, p: [f32; 2]) -> [f32; 2] {
        [
            self.a * p[0] - self.b * p[1] + self.tx,
            self.b * p[0] + self.a * p[1] + self.ty,
        ]
    }

    pub fn inverse(&self) -> Option<Similarity> {
        let det = self.a * self.a + self.b * self.b;
        if det <= f32::EPSILON {
            return None;
        }
        let (ia, ib) = (self.a / det, -self.b / det);
        Some(Similarity {
            a: ia,
            b: ib,
            tx: -(ia * self.tx - ib * self.ty),
            ty: -(ib * self.tx + ia * self.ty),
        })
    }

    /// Least-squares similarity mapping `src` onto `dst` (Umeyama 1991, without reflection).
    pub fn estimate(src: &[[f32; 2]], dst: &[[f32; 2]]) -> Option<Similarity> {
        if src.len() != dst.len() || src.len() < 2 {
            return None;
        }
        let n = src.len() as f64;
        let mean = |pts: &[[f32; 2]]| {
            let (sx, sy) = pts.iter().fold((0.0f64, 0.0f64), |(x, y), p| {
                (x + p[0] as f64, y + p[1] as f64)
            });
            (sx / n, sy / n)
        };
        let (msx, msy) = mean(src);
        let (mdx, mdy) = mean(dst);
        let (mut sxx, mut dot, mut cross) = (0.0f64, 0.0f64, 0.0f64);
        for (s, d) in src.iter().zip(dst) {
            let (x, y) = (s[0] as f64 - msx, s[1] as f64 - msy);
            let (u, v) = (d[0] as f64 - mdx, d[1] as f64 - mdy);
            sxx += x * x + y * y;
            dot += x * u + y * v;
            cross += x * v - y * u;
        }
        if sxx <= 1e-9 || !sxx.is_finite() {
            return None;
        }
        let a = dot / sxx;
        let b = cross / sxx;
        let tx = mdx - (a * msx - b * msy);
        let ty = mdy - (b * msx + a * msy);
        Some(Similarity {
            a: a as f32,
            b: b as f32,
            tx: tx as f32,
            ty: ty as f32,
        })
    }
}

/// Bilinear interpolation of the grid `at` (integer positions, which clamps them to its edges)
/// at a real-valued position.
fn bilinear(at: impl Fn(i64, i64) -> f32, x: f32, y: f32) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (xi, yi) = (x0 as i64, y0 as i64);
    let top = at(xi, yi) * (1.0 - fx) + at(xi + 1, yi) * fx;
    let bottom = at(xi, yi + 1) * (1.0 - fx) + at(xi + 1, yi + 1) * fx;
    top * (1.0 - fy) + bottom * fy
}

/// Grey value (Rec. 601 luma, 0..1) at a real-valued position, bilinear, edges clamped.
fn sample_grey(img: &RgbImage, x: f32, y: f32) -> f32 {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let luma = |xi: i64, yi: i64| {
        let p = img
            .get_pixel(xi.clamp(0, w - 1) as u32, yi.clamp(0, h - 1) as u32)
            .0;
        (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32) / 255.0
    };
    bilinear(luma, x, y)
}

/// The transform from image coordinates to the 64×64 crop for these five landmarks.
pub fn transform_for(landmarks: &[[f32; 2]; 5]) -> Option<Similarity> {
    Similarity::estimate(landmarks, &TEMPLATE_64)
}

/// The frame's grey values averaged over k×k blocks, over the region a crop covers: what a large
/// face is sampled from, so that each crop pixel averages its footprint in the frame (a box
/// prefilter) at the cost of reading each pixel of the region once.
struct BlockAverages {
    k: usize,
    x0: i64,
    y0: i64,
    w: usize,
    h: usize,
    values: Vec<f32>,
}

impl BlockAverages {
    /// Blocks of k×k pixels from (x0, y0) over the image region `[min x, min y, max x, max y]`
    /// and one block more on each side; pixels outside the image repeat its edge, as
    /// [`sample_grey`] does.
    fn new(img: &RgbImage, k: usize, region: [f32; 4]) -> BlockAverages {
        let (iw, ih) = (img.width() as i64, img.height() as i64);
        let ki = k as i64;
        let x0 = region[0].floor() as i64 - ki;
        let y0 = region[1].floor() as i64 - ki;
        let w = ((region[2].ceil() as i64 + ki - x0) / ki + 1).max(1) as usize;
        let h = ((region[3].ceil() as i64 + ki - y0) / ki + 1).max(1) as usize;
        let raw = img.as_raw();
        // Byte offsets of the region's columns (edge pixels repeated outside the image), and
        // Rec. 601 luma in thousandths, summed in integers.
        let columns: Vec<usize> = (0..(w * k) as i64)
            .map(|i| ((x0 + i).clamp(0, iw - 1) * 3) as usize)
            .collect();
        let norm = 1.0 / (1000.0 * 255.0 * (k * k) as f64);
        let mut sums = vec![0u64; w];
        let mut values = Vec::with_capacity(w * h);
        for by in 0..h as i64 {
            sums.fill(0);
            for y in y0 + by * ki..y0 + (by + 1) * ki {
                let row = &raw[(y.clamp(0, ih - 1) * iw * 3) as usize..];
                for (sum, block) in sums.iter_mut().zip(columns.chunks_exact(k)) {
                    for &c in block {
                        *sum += 299 * u64::from(row[c])
                            + 587 * u64::from(row[c + 1])
                            + 114 * u64::from(row[c + 2]);
                    }
                }
            }
            values.extend(sums.iter().map(|&v| (v as f64 * norm) as f32));
        }
        BlockAverages {
            k,
            x0,
            y0,
            w,
            h,
            values,
        }
    }

    /// Bilinear between block centres at a continuous image position (pixel i covers [i, i+1)).
    fn sample(&self, sx: f32, sy: f32) -> f32 {
        let at = |i: i64, j: i64| {
            let i = i.clamp(0, self.w as i64 - 1) as usize;
            let j = j.clamp(0, self.h as i64 - 1) as usize;
            self.values[j * self.w + i]
        };
        let k = self.k as f32;
        bilinear(
            at,
            (sx - self.x0 as f32) / k - 0.5,
            (sy - self.y0 as f32) / k - 0.5,
        )
    }
}

/// Aligns the face whose five landmarks are given (image coordinates) to the model's input.
/// Returns `None` for degenerate landmarks (all in one point, non-finite).
pub fn aligned_from_image(img: &RgbImage, landmarks: &[[f32; 2]; 5]) -> Option<AlignedFace> {
    if img.width() == 0 || img.height() == 0 {
        return None;
    }
    let to_crop = transform_for(landmarks)?;
    let to_image = to_crop.inverse()?;
    // Image pixels per crop pixel.
    let scale = to_image.a.hypot(to_image.b);
    let mut pixels = Vec::with_capacity(FACE_SIZE * FACE_SIZE);
    if scale.is_nan() || scale <= 1.0 {
        // A face no larger than the crop: one sample at each pixel centre.
        for y in 0..FACE_SIZE {
            for x in 0..FACE_SIZE {
                let [sx, sy] = to_image.apply([x as f32 + 0.5, y as f32 + 0.5]);
                pixels.push(quantize_16bit(sample_grey(img, sx - 0.5, sy - 0.5)));
            }
        }
        return Some(AlignedFace { pixels });
    }
    // A larger face: blocks of k×k pixels (k the whole part of the scale) averaged once, then
    // n×n bilinear samples of them over each crop pixel's footprint (n = 2 where a block is
    // smaller than the footprint): together a box filter over the footprint.
    let k = (scale.floor() as usize).clamp(1, 4 * FACE_SIZE);
    let n = if scale / k as f32 > 1.0 { 2 } else { 1 };
    let side = FACE_SIZE as f32;
    let corners = [[0.0, 0.0], [side, 0.0], [0.0, side], [side, side]].map(|p| to_image.apply(p));
    let region = corners
        .iter()
        .fold([f32::MAX, f32::MAX, f32::MIN, f32::MIN], |r, p| {
            [
                r[0].min(p[0]),
                r[1].min(p[1]),
                r[2].max(p[0]),
                r[3].max(p[1]),
            ]
        });
    let blocks = BlockAverages::new(img, k, region);
    let offsets: Vec<f32> = (0..n).map(|i| (i as f32 + 0.5) / n as f32).collect();
    for y in 0..FACE_SIZE {
        for x in 0..FACE_SIZE {
            let mut sum = 0.0;
            for dy in &offsets {
                for dx in &offsets {
                    let [sx, sy] = to_image.apply([x as f32 + dx, y as f32 + dy]);
                    sum += blocks.sample(sx, sy);
                }
            }
            pixels.push(quantize_16bit(sum / (n * n) as f32));
        }
    }
    Some(AlignedFace { pixels })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_recovers_a_known_similarity() {
        let truth = Similarity {
            a: 0.8 * 0.3f32.cos(),
            b: 0.8 * 0.3f32.sin(),
            tx: 5.0,
            ty: -7.0,
        };
        let src = [
            [10.0, 20.0],
            [50.0, 22.0],
            [30.0, 40.0],
            [15.0, 60.0],
            [45.0, 61.0],
        ];
        let dst: Vec<[f32; 2]> = src.iter().map(|p| truth.apply(*p)).collect();
        let est = Similarity::estimate(&src, &dst).expect("non-degenerate");
        assert!((est.a - truth.a).abs() < 1e-4);
        assert!((est.b - truth.b).abs() < 1e-4);
        assert!((est.tx - truth.tx).abs() < 1e-3);
        assert!((est.ty - truth.ty).abs() < 1e-3);
        let inv = est.inverse().expect("invertible");
        let back = inv.apply(est.apply([3.0, 4.0]));
        assert!((back[0] - 3.0).abs() < 1e-3 && (back[1] - 4.0).abs() < 1e-3);
    }

    /// The landmarks of a face `scale` times the template's size, with the template's framing.
    fn landmarks_at_scale(scale: f32) -> [[f32; 2]; 5] {
        TEMPLATE_64.map(|p| [p[0] * scale + 7.0, p[1] * scale + 5.0])
    }

    fn std_dev(v: &[f32]) -> f32 {
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32).sqrt()
    }

    #[test]
    fn a_large_face_is_averaged_not_aliased() {
        // Sensor noise (σ ≈ 0.1) on a face 3.7× the crop: each crop pixel averages its ≈ 14
        // image pixels, so the noise drops severalfold (point sampling would keep most of it).
        let scale = 3.7;
        let side = (FACE_SIZE as f32 * scale) as u32 + 20;
        let mut state = 12345u32;
        let noise = RgbImage::from_fn(side, side, |_, _| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let v = (128.0 + 44.0 * ((state >> 8) as f32 / 16_777_216.0 - 0.5) * 2.0) as u8;
            image::Rgb([v, v, v])
        });
        let pixels = aligned_from_image(&noise, &landmarks_at_scale(scale))
            .expect("aligned")
            .pixels;
        let image_noise = 44.0 / 255.0 / 3f32.sqrt();
        let crop_noise = std_dev(&pixels);
        assert!(
            crop_noise < image_noise / 3.0,
            "{crop_noise} vs {image_noise}"
        );
        // A 1-px checkerboard, too fine for the crop, comes out mid-grey rather than as a
        // moiré of black and white.
        let board = RgbImage::from_fn(side, side, |x, y| {
            image::Rgb([if (x + y) % 2 == 0 { 255 } else { 0 }; 3])
        });
        let pixels = aligned_from_image(&board, &landmarks_at_scale(scale))
            .expect("aligned")
            .pixels;
        assert!(
            pixels.iter().all(|v| (v - 0.5).abs() < 0.08),
            "{:?}",
            &pixels[..8]
        );
        // A face no larger than the crop is sampled at pixel centres, as before: the crop of a
        // 1:1 face is the image itself.
        let same = aligned_from_image(&noise, &landmarks_at_scale(1.0))
            .expect("aligned")
            .pixels;
        let v = noise.get_pixel(7 + 10, 5 + 20).0[0] as f32 / 255.0;
        assert!((same[20 * FACE_SIZE + 10] - v).abs() < 1e-3);
    }

    #[test]
    fn degenerate_landmarks_are_rejected() {
        let img = RgbImage::new(10, 10);
        assert!(aligned_from_image(&img, &[[5.0, 5.0]; 5]).is_none());
        assert!(aligned_from_image(&img, &[[f32::NAN, 5.0]; 5]).is_none());
    }

    #[test]
    fn a_bright_dot_at_the_left_eye_lands_on_the_template_eye() {
        // Synthetic image: dark, with a bright 3x3 blob at the "left eye" landmark; the face is
        // scaled by 3 and rotated 20 degrees relative to the template.
        let rot = Similarity {
            a: 3.0 * 0.35f32.cos(),
            b: 3.0 * 0.35f32.sin(),
            tx: 60.0,
            ty: 20.0,
        };
        let lms: Vec<[f32; 2]> = TEMPLATE_64.iter().map(|p| rot.apply(*p)).collect();
        let mut img = RgbImage::new(300, 300);
        let eye = lms[0];
        for dy in -4..=4 {
            for dx in -4..=4 {
                img.put_pixel(
                    (eye[0] as i32 + dx) as u32,
                    (eye[1] as i32 + dy) as u32,
                    image::Rgb([255, 255, 255]),
                );
            }
        }
        let lms: [[f32; 2]; 5] = [lms[0], lms[1], lms[2], lms[3], lms[4]];
        let face = aligned_from_image(&img, &lms).expect("aligned");
        let (mut best, mut at) = (0.0, (0, 0));
        for y in 0..FACE_SIZE {
            for x in 0..FACE_SIZE {
                if face.pixels[y * FACE_SIZE + x] > best {
                    best = face.pixels[y * FACE_SIZE + x];
                    at = (x, y);
                }
            }
        }
        assert!(best > 0.9);
        assert!(
            (at.0 as f32 + 0.5 - TEMPLATE_64[0][0]).abs() <= 1.5,
            "{at:?}"
        );
        assert!(
            (at.1 as f32 + 0.5 - TEMPLATE_64[0][1]).abs() <= 1.5,
            "{at:?}"
        );
    }
}
