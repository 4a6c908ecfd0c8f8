//! What a camera does to a face, applied to aligned faces so that `eval --degrade` can measure how
//! recognition holds up: blur (focus, motion), sensor noise, JPEG compression, a face far from
//! the camera (few pixels, enlarged to the model's input) and dark exposure (gamma).
//!
//! Every effect works on the model's 64×64 grey input, after alignment, and is seeded, so that a
//! row of the robustness table is the same each time it is measured.
use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use image::GrayImage;
use rand::{Rng, SeedableRng};
use tch::Tensor;

use crate::face::FACE_SIZE;

/// One effect and its strength.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Effect {
    /// Gaussian blur, σ in pixels of the 64-pixel face.
    Blur(f32),
    /// Gaussian sensor noise, σ on the 0–1 intensity scale.
    Noise(f32),
    /// JPEG compression at this quality (1–100).
    Jpeg(u8),
    /// The face seen this many pixels wide, then enlarged back to the model's input.
    Faraway(u32),
    /// Intensities raised to this power: above 1 darkens (an under-exposed face), below 1
    /// brightens.
    Gamma(f32),
}

/// Effects applied one after the other, e.g. `faraway:32+jpeg:40` (a small face in a compressed
/// frame).
#[derive(Debug, Clone, PartialEq)]
pub struct Degradation(pub Vec<Effect>);

impl FromStr for Effect {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Effect> {
        let (name, value) = s
            .split_once(':')
            .with_context(|| format!("'{s}': an effect is NAME:VALUE, e.g. blur:1.0"))?;
        let number = |what: &str| -> Result<f32> {
            value
                .trim()
                .parse::<f32>()
                .ok()
                .filter(|v| v.is_finite())
                .with_context(|| format!("'{s}': {what} must be a number"))
        };
        let effect = match name.trim().to_ascii_lowercase().as_str() {
            "blur" => Effect::Blur(number("the blur's σ (pixels)")?),
            "noise" => Effect::Noise(number("the noise's σ (0–1)")?),
            "jpeg" => {
                let q = number("the JPEG quality (1–100)")?;
                if !(1.0..=100.0).contains(&q) || q.fract() != 0.0 {
                    bail!("'{s}': the JPEG quality is a whole number from 1 to 100");
                }
                Effect::Jpeg(q as u8)
            }
            "faraway" => {
                let px = number("the face's width in pixels")?;
                if !(4.0..=FACE_SIZE as f32).contains(&px) || px.fract() != 0.0 {
                    bail!(
                        "'{s}': the face's width is a whole number of pixels from 4 to {FACE_SIZE}"
                    );
                }
                Effect::Faraway(px as u32)
            }
            "gamma" => Effect::Gamma(number("gamma")?),
            other => bail!("'{other}' is not an effect: blur, noise, jpeg, faraway or gamma"),
        };
        match effect {
            Effect::Blur(v) | Effect::Noise(v) if v < 0.0 => bail!("'{s}': σ is at least 0"),
            Effect::Gamma(g) if g <= 0.0 => bail!("'{s}': gamma is above 0"),
            e => Ok(e),
        }
    }
}

impl FromStr for Degradation {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Degradation> {
        let effects = s
            .split('+')
            .map(Effect::from_str)
            .collect::<Result<Vec<_>>>()?;
        Ok(Degradation(effects))
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Effect::Blur(s) => write!(f, "blur σ {s} px"),
            Effect::Noise(s) => write!(f, "noise σ {s}"),
            Effect::Jpeg(q) => write!(f, "JPEG quality {q}"),
            Effect::Faraway(px) => write!(f, "face {px} px wide"),
            Effect::Gamma(g) => write!(f, "gamma {g}"),
        }
    }
}

impl fmt::Display for Degradation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(Effect::to_string).collect();
        write!(f, "{}", parts.join(" + "))
    }
}

impl Effect {
    fn apply(&self, face: GrayImage, rng: &mut impl Rng) -> Result<GrayImage> {
        Ok(match *self {
            Effect::Blur(sigma) if sigma > 0.0 => gaussian_blur(&face, sigma),
            Effect::Blur(_) => face,
            Effect::Noise(sigma) => {
                let mut face = face;
                for p in face.pixels_mut() {
                    let v = p.0[0] as f32 + gaussian(rng) * sigma * 255.0;
                    p.0[0] = v.round().clamp(0.0, 255.0) as u8;
                }
                face
            }
            Effect::Jpeg(quality) => {
                let mut bytes = Vec::new();
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
                    .encode_image(&face)
                    .context("JPEG-compressing a face")?;
                image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg)
                    .context("reading the compressed face back")?
                    .to_luma8()
            }
            Effect::Faraway(px) => {
                use image::imageops::{resize, FilterType};
                let (w, h) = face.dimensions();
                let small = resize(&face, px, px, FilterType::Triangle);
                resize(&small, w, h, FilterType::Triangle)
            }
            Effect::Gamma(g) => {
                let mut face = face;
                for p in face.pixels_mut() {
                    let v = (p.0[0] as f32 / 255.0).powf(g) * 255.0;
                    p.0[0] = v.round().clamp(0.0, 255.0) as u8;
                }
                face
            }
        })
    }
}

/// A separable Gaussian blur (kernel radius 3σ, edges clamped): a few hundred microseconds for a
/// 64×64 face, where `image::imageops::blur` takes far longer, which matters when training
/// degrades thousands of faces per epoch.
fn gaussian_blur(face: &GrayImage, sigma: f32) -> GrayImage {
    let (w, h) = (face.width() as usize, face.height() as usize);
    let radius = (3.0 * sigma).ceil().max(1.0) as isize;
    let kernel: Vec<f32> = (-radius..=radius)
        .map(|i| (-((i * i) as f32) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = kernel.iter().sum();
    let src: Vec<f32> = face.as_raw().iter().map(|&v| v as f32).collect();
    let pass = |src: &[f32], step: usize, len: usize, lines: usize, stride: usize| -> Vec<f32> {
        let mut out = vec![0f32; src.len()];
        for line in 0..lines {
            for i in 0..len {
                let mut acc = 0.0;
                for (k, weight) in kernel.iter().enumerate() {
                    let j = (i as isize + k as isize - radius).clamp(0, len as isize - 1) as usize;
                    acc += weight * src[line * stride + j * step];
                }
                out[line * stride + i * step] = acc / total;
            }
        }
        out
    };
    let rows = pass(&src, 1, w, h, w);
    let both = pass(&rows, w, h, w, 1);
    let bytes = both
        .iter()
        .map(|v| v.round().clamp(0.0, 255.0) as u8)
        .collect();
    GrayImage::from_raw(w as u32, h as u32, bytes).unwrap_or_else(|| face.clone())
}

/// A standard normal draw (Box–Muller).
pub fn gaussian(rng: &mut impl Rng) -> f32 {
    let u1: f32 = rng.gen_range(f32::EPSILON..1.0);
    let u2: f32 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

impl Degradation {
    /// One aligned face (64×64 grey bytes) degraded.
    pub fn apply(&self, face: &[u8], rng: &mut impl Rng) -> Result<Vec<u8>> {
        let side = FACE_SIZE as u32;
        let mut img = GrayImage::from_raw(side, side, face.to_vec())
            .with_context(|| format!("a face of {} bytes is not {side}×{side}", face.len()))?;
        for effect in &self.0 {
            img = effect.apply(img, rng)?;
        }
        Ok(img.into_raw())
    }

    /// N×1×64×64 u8 faces (a [`crate::learn::TrainData`]'s), each degraded; the same `seed`
    /// gives the same faces.
    pub fn apply_to_faces(&self, faces: &Tensor, seed: u64) -> Result<Tensor> {
        let size = faces.size();
        let side = FACE_SIZE as i64;
        anyhow::ensure!(
            size.len() == 4 && size[1] == 1 && size[2] == side && size[3] == side,
            "faces of shape {size:?} are not N×1×{side}×{side}"
        );
        let bytes = Vec::<u8>::try_from(faces.contiguous().view([-1]))
            .context("reading the faces' pixels")?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut out = Vec::with_capacity(bytes.len());
        for face in bytes.chunks_exact((side * side) as usize) {
            out.extend(self.apply(face, &mut rng)?);
        }
        Ok(Tensor::from_slice(&out).view(size.as_slice()))
    }
}

/// A random camera degradation for training: each effect with probability 0.4 (at least one),
/// its strength drawn over what webcams and phones give a face in dim light, out of focus, far
/// away or compressed: blur σ 0.3–2 px, noise σ 0.005–0.08, JPEG quality 15–90, a face 16–48 px
/// wide, gamma 0.55–1.8 — in a random order.
pub fn random_camera(rng: &mut impl Rng) -> Degradation {
    let mut effects = Vec::new();
    while effects.is_empty() {
        for k in 0..5 {
            if !rng.gen_bool(0.4) {
                continue;
            }
            effects.push(match k {
                0 => Effect::Blur(rng.gen_range(0.3..2.0)),
                1 => Effect::Noise(rng.gen_range(0.005..0.08)),
                2 => Effect::Jpeg(rng.gen_range(15..=90)),
                3 => Effect::Faraway(rng.gen_range(16..=48)),
                _ => Effect::Gamma(rng.gen_range(0.55f32.ln()..1.8f32.ln()).exp()),
            });
        }
    }
    use rand::seq::SliceRandom;
    effects.shuffle(rng);
    Degradation(effects)
}

/// The degradations `eval --degrade camera` measures: each effect at a mild and a strong
/// setting, and a small face in a compressed, noisy frame.
pub fn camera_set() -> Vec<Degradation> {
    [
        "blur:1",
        "blur:2",
        "noise:0.03",
        "noise:0.08",
        "jpeg:50",
        "jpeg:20",
        "faraway:32",
        "faraway:20",
        "gamma:0.6",
        "gamma:1.8",
        "faraway:32+jpeg:50+noise:0.03",
    ]
    .iter()
    .map(|s| s.parse().expect("the camera set's specs parse"))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp() -> Vec<u8> {
        let side = FACE_SIZE;
        (0..side * side)
            .map(|i| {
                let (x, y) = (i % side, i / side);
                // Edges and a smooth ramp: blur and compression both change it.
                if (x / 8 + y / 8) % 2 == 0 {
                    (x * 3) as u8
                } else {
                    255 - (y * 3) as u8
                }
            })
            .collect()
    }

    fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| (x as f64 - y as f64).abs())
            .sum::<f64>()
            / a.len() as f64
    }

    #[test]
    fn specs_parse_and_read_back_and_bad_ones_say_why() {
        let d: Degradation = "faraway:32+jpeg:40+noise:0.02".parse().expect("parses");
        assert_eq!(
            d.0,
            vec![Effect::Faraway(32), Effect::Jpeg(40), Effect::Noise(0.02)]
        );
        assert_eq!(
            d.to_string(),
            "face 32 px wide + JPEG quality 40 + noise σ 0.02"
        );
        for (bad, says) in [
            ("blur", "NAME:VALUE"),
            ("sharpen:2", "not an effect"),
            ("jpeg:0", "1 to 100"),
            ("jpeg:40.5", "1 to 100"),
            ("faraway:2", "from 4"),
            ("noise:-1", "at least 0"),
            ("gamma:0", "above 0"),
            ("blur:x", "number"),
        ] {
            let e = bad.parse::<Degradation>().expect_err(bad).to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn stronger_effects_change_a_face_more_and_the_same_seed_gives_the_same_face() {
        let face = ramp();
        let faces = Tensor::from_slice(&face).view([1, 1, FACE_SIZE as i64, FACE_SIZE as i64]);
        let changed = |spec: &str| {
            let d: Degradation = spec.parse().expect("parses");
            let out = d.apply_to_faces(&faces, 7).expect("applies");
            let again = d.apply_to_faces(&faces, 7).expect("applies");
            assert!(out.equal(&again), "{spec}: not the same with the same seed");
            mean_abs_diff(&face, &Vec::<u8>::try_from(out.view([-1])).expect("bytes"))
        };
        for (mild, strong) in [
            ("blur:0.7", "blur:2"),
            ("noise:0.02", "noise:0.1"),
            ("jpeg:80", "jpeg:10"),
            ("faraway:48", "faraway:16"),
            ("gamma:1.2", "gamma:2"),
        ] {
            let (m, s) = (changed(mild), changed(strong));
            assert!(m > 0.05, "{mild} changed the face by {m:.2}");
            assert!(
                s > m * 1.5,
                "{strong} ({s:.2}) not well above {mild} ({m:.2})"
            );
        }
        assert_eq!(changed("blur:0"), 0.0);
        // The separable blur is a Gaussian blur: close to the image crate's.
        let img =
            GrayImage::from_raw(FACE_SIZE as u32, FACE_SIZE as u32, face.clone()).expect("face");
        for sigma in [0.7f32, 2.0] {
            let ours = gaussian_blur(&img, sigma);
            let theirs = image::imageops::blur(&img, sigma);
            let d = mean_abs_diff(ours.as_raw(), theirs.as_raw());
            assert!(d < 2.0, "σ {sigma}: {d:.2} from image's blur");
        }
        assert_eq!(changed("gamma:1"), 0.0);
    }
}
