//! The neutral-face subspace: the principal components of the training pool's neutral faces
//! (FER+'s ≈ 10 k and the lab sets' own), each face standardised first. An expressive face
//! projected onto it comes back as the nearest face the neutral faces span — the same person's
//! shape and shading, but a wide-open mouth or raised brows, which no neutral face shows, fall
//! away. Blurred (the components are smooth) but neutral: in step 1 it is the generator's target
//! for the expressive faces that have no neutral photo of their own (FER+, CK+48), so that tens
//! of thousands of faces, not TFEID's 29 performers alone, teach it what a neutral face is.
//!
//! A subspace can cover the whole face or one region of the aligned face (the mouth, the brows
//! and eyes): the region is projected on its own and blended back into the face through a
//! feathered mask, so that the rest of the face — and its sharpness — stays as it was.
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::face::FACE_SIZE;
use crate::model::standardize::standardize_undoably;

/// Where a subspace acts, in the 64×64 aligned face ([`crate::face::align::TEMPLATE_64`]: eyes at
/// row 26, mouth corners at row 47, columns 24.5–39.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FaceRegion {
    /// The whole face.
    Face,
    /// Lips, mouth corners and chin: rows 37–60, columns 14–49.
    Mouth,
    /// Brows and eyes: rows 12–31, columns 8–55.
    Brows,
}

impl FaceRegion {
    /// Rows `top..bottom` and columns `left..right` of the region.
    pub fn bounds(self) -> [i64; 4] {
        match self {
            FaceRegion::Face => [0, FACE_SIZE as i64, 0, FACE_SIZE as i64],
            FaceRegion::Mouth => [37, 61, 14, 50],
            FaceRegion::Brows => [12, 32, 8, 56],
        }
    }

    /// Pixels in the region: the most components a subspace over it can have.
    pub fn pixels(self) -> i64 {
        let [top, bottom, left, right] = self.bounds();
        (bottom - top) * (right - left)
    }

    /// 1 inside the region, falling smoothly to 0 at its edges (a box 3 px inside the bounds,
    /// blurred with σ = 1.5 px), 1 × 1 × 64 × 64; all ones for the whole face.
    fn blend_mask(self) -> Tensor {
        let n = FACE_SIZE as i64;
        let [top, bottom, left, right] = self.bounds();
        if self == FaceRegion::Face {
            return Tensor::ones([1, 1, n, n], (Kind::Float, Device::Cpu));
        }
        let profile = |from: i64, to: i64| -> Vec<f32> {
            let inside = |i: i64| (from + 3 <= i && i < to - 3) as u8 as f32;
            let sigma = 1.5f32;
            (0..n)
                .map(|i| {
                    let (mut sum, mut norm) = (0.0f32, 0.0f32);
                    for d in -5i64..=5 {
                        let w = (-(d * d) as f32 / (2.0 * sigma * sigma)).exp();
                        sum += w * inside(i + d);
                        norm += w;
                    }
                    sum / norm
                })
                .collect()
        };
        let rows = Tensor::from_slice(&profile(top, bottom)).view([n, 1]);
        let cols = Tensor::from_slice(&profile(left, right)).view([1, n]);
        (rows * cols).view([1, 1, n, n])
    }
}

pub struct NeutralSubspace {
    region: FaceRegion,
    /// Where the region's projection replaces the face (1 × 1 × 64 × 64, see [`FaceRegion::blend_mask`]).
    blend: Tensor,
    /// Mean standardised neutral region (P pixels).
    mean: Tensor,
    /// The components, one per row (K × P), orthonormal.
    basis: Tensor,
    /// Per component, var / (var + 1): the Wiener shrinkage of a coefficient whose prior variance
    /// is `var` under unit pixel noise (standardised faces), so that the weak components, which a
    /// face's expression (or its noise) excites most, count for less.
    shrink: Tensor,
}

/// The region of each face (N × 1 × H × W).
fn crop(x: &Tensor, region: FaceRegion) -> Tensor {
    let [top, bottom, left, right] = region.bounds();
    x.narrow(2, top, bottom - top).narrow(3, left, right - left)
}

/// Each face (N × 1 × 64 × 64) standardised as the encoders' input is
/// ([`standardize_undoably`]), its region as a row of pixels, with the face's mean and deviation
/// (N × 1) to undo it: a region is measured against its whole face, so that an open mouth, which
/// darkens the mouth region, does not set the brightness of its own neutral version.
fn standardise(x: &Tensor, region: FaceRegion) -> (Tensor, Tensor, Tensor) {
    let (z, mean, dev) = standardize_undoably(&x.to_kind(Kind::Float));
    (
        crop(&z, region).flatten(1, -1),
        mean.flatten(1, -1),
        dev.flatten(1, -1),
    )
}

/// Mean, components (K × P, orthonormal rows) and Wiener shrinkage of the region of the neutral
/// faces (N × 1 × 64 × 64), standardised; `None` unless there are more faces than components and
/// at least one component but no more than the region's pixels.
fn principal_components(
    neutral: &Tensor,
    components: usize,
    region: FaceRegion,
) -> Option<(Tensor, Tensor, Tensor)> {
    let n = neutral.size()[0];
    let k = components as i64;
    let pixels = region.pixels();
    if n <= k || k < 1 || k > pixels {
        return None;
    }
    tch::no_grad(|| {
        let (z, _, _) = standardise(neutral, region);
        let mean = z.mean_dim([0i64].as_slice(), false, Kind::Float);
        let centred = z - &mean;
        let cov = centred.tr().matmul(&centred) / n as f64;
        // Ascending eigenvalues: the last K are the components.
        let (values, vectors) = cov.linalg_eigh("L");
        let values = values.narrow(0, pixels - k, k).flip([0i64]).clamp_min(0.0);
        let basis = vectors
            .narrow(1, pixels - k, k)
            .flip([1i64])
            .tr()
            .contiguous();
        let shrink = &values / (&values + 1.0);
        Some((mean, basis, shrink))
    })
}

impl NeutralSubspace {
    /// The top `components` principal components of `neutral` (N × 1 × 64 × 64 in [0, 1])
    /// over the whole face. `None` unless there are more faces than components (and 1 to 64·64
    /// of them).
    pub fn fit(neutral: &Tensor, components: usize) -> Option<NeutralSubspace> {
        Self::fit_region(neutral, components, FaceRegion::Face)
    }

    /// The same over one region of the face: `None` unless there are more faces than components
    /// and at least one component but no more than the region's pixels.
    pub fn fit_region(
        neutral: &Tensor,
        components: usize,
        region: FaceRegion,
    ) -> Option<NeutralSubspace> {
        let (mean, basis, shrink) = principal_components(neutral, components, region)?;
        Some(NeutralSubspace {
            region,
            blend: region.blend_mask().to_device(neutral.device()),
            mean,
            basis,
            shrink,
        })
    }

    /// An unfitted subspace of `components` over `region` whose tensors are variables of `p`
    /// (not trained: they are saved and loaded with the network's weights, and
    /// [`NeutralSubspace::fit_in_place`] fills them).
    pub fn in_var_store(p: &nn::Path, region: FaceRegion, components: usize) -> NeutralSubspace {
        let pixels = region.pixels();
        let k = components as i64;
        NeutralSubspace {
            region,
            blend: region.blend_mask().to_device(p.device()),
            mean: p.zeros_no_train("mean", &[pixels]),
            basis: p.zeros_no_train("basis", &[k, pixels]),
            shrink: p.zeros_no_train("shrink", &[k]),
        }
    }

    /// Whether the subspace holds components (an unfitted one's are all zero).
    pub fn is_fitted(&self) -> bool {
        tch::no_grad(|| self.shrink.abs().sum(Kind::Float).double_value(&[]) > 0.0)
    }

    /// Fits the subspace's own tensors (keeping their number of components) on `neutral`, in
    /// place. False when there are too few faces for its components.
    pub fn fit_in_place(&self, neutral: &Tensor) -> bool {
        let Some((mean, basis, shrink)) =
            principal_components(neutral, self.components(), self.region)
        else {
            return false;
        };
        tch::no_grad(|| {
            let device = self.mean.device();
            let kind = self.mean.kind();
            for (target, value) in [
                (&self.mean, mean),
                (&self.basis, basis),
                (&self.shrink, shrink),
            ] {
                let mut target = target.shallow_clone();
                target.copy_(&value.to_device(device).to_kind(kind));
            }
        });
        true
    }

    /// The faces `x` (N × 1 × 64 × 64) with their region projected onto the subspace, in the
    /// face's own brightness and contrast, clamped to [0, 1], and blended into the face through
    /// the region's mask (the whole face: the projection itself), in f32. Gradients flow to `x`
    /// (the projection is linear in the standardised face), never to the subspace.
    pub fn project(&self, x: &Tensor) -> Tensor {
        let x = x.to_kind(Kind::Float);
        let part = crop(&x, self.region);
        let (z, mean, dev) = standardise(&x, self.region);
        let (subspace_mean, basis, shrink) = (
            self.mean.to_kind(Kind::Float),
            self.basis.to_kind(Kind::Float),
            self.shrink.to_kind(Kind::Float),
        );
        let coef = (z - &subspace_mean).matmul(&basis.tr()) * shrink;
        let rebuilt = coef.matmul(&basis) + subspace_mean;
        let projected = (rebuilt * dev + mean).view_as(&part).clamp(0.0, 1.0);
        if self.region == FaceRegion::Face {
            return projected;
        }
        let pasted = x.copy();
        crop(&pasted, self.region).copy_(&projected);
        &pasted * &self.blend + &x * (1.0 - &self.blend)
    }

    pub fn region(&self) -> FaceRegion {
        self.region
    }

    pub fn components(&self) -> usize {
        self.basis.size()[0] as usize
    }

    pub fn to_device(&self, device: Device) -> NeutralSubspace {
        NeutralSubspace {
            region: self.region,
            blend: self.blend.to_device(device),
            mean: self.mean.to_device(device),
            basis: self.basis.to_device(device),
            shrink: self.shrink.to_device(device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Faces made of a shared mean, two "identity" patterns with random weights, and noise; an
    /// "expression" is a third pattern no neutral face shows.
    #[test]
    fn projection_keeps_what_neutral_faces_share_and_drops_what_they_never_show() {
        tch::manual_seed(3);
        let p = (FACE_SIZE * FACE_SIZE) as i64;
        let opts = (Kind::Float, Device::Cpu);
        let ramp = Tensor::arange(p, opts) / p as f64;
        let pattern = |seed: i64| {
            tch::manual_seed(seed);
            Tensor::randn([p], opts).sign()
        };
        let (a, b, expression) = (pattern(1), pattern(2), pattern(4));
        let neutral_faces = |n: i64| {
            let wa = Tensor::randn([n, 1], opts);
            let wb = Tensor::randn([n, 1], opts);
            (&ramp * 0.4
                + 0.3
                + wa * &a * 0.05
                + wb * &b * 0.05
                + Tensor::randn([n, p], opts) * 0.005)
                .clamp(0.0, 1.0)
                .view([n, 1, FACE_SIZE as i64, FACE_SIZE as i64])
        };
        let space = NeutralSubspace::fit(&neutral_faces(400), 4).expect("enough faces");
        assert_eq!(space.components(), 4);
        let err = |x: &Tensor, y: &Tensor| (x - y).abs().mean(Kind::Float).double_value(&[]);
        // A new neutral face comes back nearly as it was.
        let fresh = neutral_faces(8);
        let back = space.project(&fresh);
        assert_eq!(back.size(), fresh.size());
        assert!(
            err(&back, &fresh) < 0.01,
            "neutral changed by {}",
            err(&back, &fresh)
        );
        // The same faces with the expression added: the projection removes most of it.
        let shape = [8, 1, FACE_SIZE as i64, FACE_SIZE as i64];
        let expressive = (&fresh
            + expression.view([1, 1, FACE_SIZE as i64, FACE_SIZE as i64]) * 0.05)
            .clamp(0.0, 1.0);
        assert_eq!(expressive.size(), shape.to_vec());
        let before = err(&expressive, &fresh);
        let after = err(&space.project(&expressive), &fresh);
        assert!(after < before * 0.4, "expression {before} → {after}");
        // Too few faces for the components asked for: no subspace.
        assert!(NeutralSubspace::fit(&neutral_faces(3), 4).is_none());
    }

    /// A mouth subspace changes nothing outside the mouth region and takes away most of an
    /// "expression" drawn inside it.
    #[test]
    fn a_region_subspace_edits_its_region_only() {
        tch::manual_seed(5);
        let n = FACE_SIZE as i64;
        let opts = (Kind::Float, Device::Cpu);
        let shape = |m: i64| [m, 1, n, n];
        let identity = Tensor::randn(shape(1), opts).sign();
        let faces = |m: i64| {
            (Tensor::randn([m, 1, 1, 1], opts) * &identity * 0.05
                + 0.5
                + Tensor::randn(shape(m), opts) * 0.005)
                .clamp(0.0, 1.0)
        };
        let space = NeutralSubspace::fit_region(&faces(300), 3, FaceRegion::Mouth).expect("fits");
        assert_eq!(space.region(), FaceRegion::Mouth);
        let fresh = faces(6);
        let [top, bottom, left, right] = FaceRegion::Mouth.bounds();
        // An open mouth: a dark block in the mouth region and a mark outside it.
        let mouth = Tensor::zeros(shape(1), opts);
        let _ = mouth.narrow(2, 44, 8).narrow(3, 24, 16).fill_(-0.3);
        let _ = mouth.narrow(2, 2, 4).narrow(3, 2, 4).fill_(0.3);
        let expressive = (&fresh + &mouth).clamp(0.0, 1.0);
        let out = space.project(&expressive);
        let outside = Tensor::ones(shape(1), opts);
        let _ = outside
            .narrow(2, top, bottom - top)
            .narrow(3, left, right - left)
            .fill_(0.0);
        let changed_outside = ((&out - &expressive).abs() * &outside)
            .max()
            .double_value(&[]);
        assert!(
            changed_outside < 1e-6,
            "changed outside by {changed_outside}"
        );
        let err = |a: &Tensor| {
            crop(&(a - &fresh).abs(), FaceRegion::Mouth)
                .mean(Kind::Float)
                .double_value(&[])
        };
        let (before, after) = (err(&expressive), err(&out));
        assert!(after < before * 0.5, "mouth region {before} → {after}");
        assert!(NeutralSubspace::fit_region(&faces(300), 24 * 36 + 1, FaceRegion::Mouth).is_none());
    }
}
