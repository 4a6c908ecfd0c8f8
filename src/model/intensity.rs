//! Expression intensity, which GCNet gives for free: how far the query's embedding lies from its
//! neutral reference's, mapped to 0 (neutral) … 1 (a typical expression).
//!
//! The distance is a weighted sum of the contrastive representation |e_q − e_r|: one
//! non-negative weight per embedding element, fitted on validation faces to tell neutral faces
//! from expressive ones (`learn::intensity`). The plain Euclidean distance counts every
//! element alike, and many of them move whenever the reference differs from the query in ways
//! that are not expression — the generator's smoothing of a sharp face above all: with the weights
//! shipped on 2026-11-30 it read the held-out TFEID performers' neutral faces as 0.78 and their
//! expressive ones as 0.89, where the fitted weights read 0.12 and 0.60. A sidecar written before
//! the intensity weights existed has none, and the Euclidean distance is used, as L_Contr sees it.
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Euclidean distance of the unit embeddings of query and reference, per face (N): what L_Contr
/// pulls to 0 for a neutral face and pushes beyond its margin for an expressive one.
pub fn embedding_distance(e_q: &Tensor, e_r: &Tensor) -> Tensor {
    (e_q - e_r)
        .square()
        .sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
        .sqrt()
}

/// The distance the intensity is read from, per face (N, f32): Σ w·|e_q − e_r| with `weights`
/// (D, f32, on the embeddings' device), else the Euclidean [`embedding_distance`].
pub fn intensity_distance(e_q: &Tensor, e_r: &Tensor, weights: Option<&Tensor>) -> Tensor {
    match weights {
        Some(w) => (e_q - e_r).abs().to_kind(Kind::Float).matmul(w),
        None => embedding_distance(e_q, e_r),
    }
}

/// One non-negative weight per embedding element (8·8·C3 of them), fitted on validation faces
/// (`learn::intensity::fit_intensity_weights`), stored in the weights' sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IntensityWeights(Vec<f32>);

impl IntensityWeights {
    /// Weights from a fit, checked as [`IntensityWeights::check`] does.
    pub fn new(values: Vec<f32>, len: i64) -> Result<IntensityWeights, String> {
        let weights = IntensityWeights(values);
        weights.check(len)?;
        Ok(weights)
    }

    /// What a sidecar or a fit must give: `len` finite, non-negative numbers, not all zero.
    pub fn check(&self, len: i64) -> Result<(), String> {
        let values = &self.0;
        if values.len() as i64 != len {
            return Err(format!(
                "{} intensity weights (expected one per embedding element, {len})",
                values.len()
            ));
        }
        if !values.iter().all(|w| w.is_finite() && *w >= 0.0) || values.iter().all(|w| *w == 0.0) {
            return Err(
                "intensity weights: expected finite non-negative numbers, not all 0".into(),
            );
        }
        Ok(())
    }

    pub fn values(&self) -> &[f32] {
        &self.0
    }

    pub fn tensor(&self, device: Device) -> Tensor {
        Tensor::from_slice(&self.0).to_device(device)
    }
}

/// Maps a distance to an intensity in [0, 1]: `neutral` (the typical distance of a neutral face)
/// gives 0, `expressive` (that of an expressive one) gives 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IntensityScale {
    pub neutral: f64,
    pub expressive: f64,
}

impl IntensityScale {
    /// Without a fitted scale: L_Contr's own ends, 0 for a neutral pair and its margin (0.5) for
    /// an expressive one.
    pub const FROM_MARGIN: IntensityScale = IntensityScale {
        neutral: 0.0,
        expressive: 0.5,
    };

    pub fn intensity(&self, distance: f64) -> f64 {
        let span = (self.expressive - self.neutral).max(1e-6);
        ((distance - self.neutral) / span).clamp(0.0, 1.0)
    }
}

/// A network's intensity scales: against its generated reference, and against the person's own
/// neutral face (the window's "Use my neutral face"), whose distances run higher — two photos of
/// one neutral face differ in pose and light, which a generated reference from the same frame
/// does not.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IntensityScales {
    pub generated: Option<IntensityScale>,
    pub own: Option<IntensityScale>,
}

/// How a network's intensity is read: the distance's weights (which the network carries once
/// set, [`crate::model::GcNet::set_intensity_weights`]) and the scales fitted on that distance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntensityCalibration {
    pub weights: Option<IntensityWeights>,
    pub scales: IntensityScales,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intensity_maps_neutral_to_zero_and_expressive_to_one() {
        let s = IntensityScale {
            neutral: 0.2,
            expressive: 0.6,
        };
        assert_eq!(s.intensity(0.1), 0.0);
        assert_eq!(s.intensity(0.2), 0.0);
        assert!((s.intensity(0.4) - 0.5).abs() < 1e-12);
        assert_eq!(s.intensity(0.6), 1.0);
        assert_eq!(s.intensity(1.5), 1.0);
        // A degenerate scale does not divide by zero.
        let flat = IntensityScale {
            neutral: 0.3,
            expressive: 0.3,
        };
        assert!(flat.intensity(0.31).is_finite());
    }

    #[test]
    fn weighted_distance_sums_the_weighted_differences_and_weights_are_checked() {
        let e_q = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0]).view([2, 3]);
        let e_r = Tensor::from_slice(&[0.0f32, 1.0, 0.0, 0.0, 1.0, 0.0]).view([2, 3]);
        let w = IntensityWeights::new(vec![2.0, 0.5, 7.0], 3).expect("valid");
        let d = intensity_distance(&e_q, &e_r, Some(&w.tensor(Device::Cpu)));
        assert_eq!(Vec::<f32>::try_from(&d).expect("values"), vec![2.5, 0.0]);
        let plain = intensity_distance(&e_q, &e_r, None);
        let plain = Vec::<f32>::try_from(&plain).expect("values");
        assert!((plain[0] - 2f32.sqrt()).abs() < 1e-6 && plain[1] == 0.0);
        assert!(IntensityWeights::new(vec![1.0, 1.0], 3).is_err());
        assert!(IntensityWeights::new(vec![1.0, -1.0, 0.0], 3).is_err());
        assert!(IntensityWeights::new(vec![1.0, f32::NAN, 0.0], 3).is_err());
        assert!(IntensityWeights::new(vec![0.0; 3], 3).is_err());
    }
}
