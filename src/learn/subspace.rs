//! The neutral-face subspace: the principal components of the training pool's neutral faces
//! (FER+'s ≈ 10 k and the lab sets' own), each face standardised first. An expressive face
//! projected onto it comes back as the nearest face the neutral faces span — the same person's
//! shape and shading, but a wide-open mouth or raised brows, which no neutral face shows, fall
//! away. Blurred (the components are smooth) but neutral: in step 1 it is the generator's target
//! for the expressive faces that have no neutral photo of their own (FER+, CK+48), so that tens
//! of thousands of faces, not TFEID's 29 performers alone, teach it what a neutral face is.
use tch::{Device, Kind, Tensor};

use crate::face::FACE_SIZE;
use crate::model::blocks::standardize_undoably;

pub struct NeutralSubspace {
    /// Mean standardised neutral face (P = 64·64).
    mean: Tensor,
    /// The components, one per row (K × P), orthonormal.
    basis: Tensor,
    /// Per component, var / (var + 1): the Wiener shrinkage of a coefficient whose prior variance
    /// is `var` under unit pixel noise (standardised faces), so that the weak components, which a
    /// face's expression (or its noise) excites most, count for less.
    shrink: Tensor,
}

/// Each face (N × 1 × H × W) as a row of standardised pixels, standardised as the encoders'
/// input is ([`standardize_undoably`]), with its mean and deviation (N × 1) to undo it.
fn standardise(x: &Tensor) -> (Tensor, Tensor, Tensor) {
    let (z, mean, dev) = standardize_undoably(&x.to_kind(Kind::Float));
    (z.flatten(1, -1), mean.flatten(1, -1), dev.flatten(1, -1))
}

impl NeutralSubspace {
    /// The top `components` principal components of `neutral` (N × 1 × 64 × 64 in [0, 1]).
    /// `None` unless there are more faces than components (and 1 to 64·64 of them).
    pub fn fit(neutral: &Tensor, components: usize) -> Option<NeutralSubspace> {
        let n = neutral.size()[0];
        let pixels = (FACE_SIZE * FACE_SIZE) as i64;
        let k = components as i64;
        if n <= k || k < 1 || k > pixels {
            return None;
        }
        tch::no_grad(|| {
            let (z, _, _) = standardise(neutral);
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
            Some(NeutralSubspace {
                mean,
                basis,
                shrink,
            })
        })
    }

    /// The faces `x` (N × 1 × 64 × 64) projected onto the subspace, in their own brightness and
    /// contrast, clamped to [0, 1]. No gradient.
    pub fn project(&self, x: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let (z, mean, dev) = standardise(x);
            let coef = (z - &self.mean).matmul(&self.basis.tr()) * &self.shrink;
            let rebuilt = coef.matmul(&self.basis) + &self.mean;
            (rebuilt * dev + mean).view_as(x).clamp(0.0, 1.0)
        })
    }

    pub fn components(&self) -> usize {
        self.basis.size()[0] as usize
    }

    pub fn to_device(&self, device: Device) -> NeutralSubspace {
        NeutralSubspace {
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
}
