//! Learning: the face pool (`pool`), two-step training (`train`), metrics on a trained network
//! — accuracy, calibration, reference fidelity, intensity — (`metrics`), fitting how intensity
//! is read (`intensity`: the distance's weights and scales), other networks' predictions as
//! distillation targets (`teacher`) and subject-independent cross-validation (`crossval`); the neutral-face subspace that teaches the generator from faces
//! without a neutral partner (`subspace`); face grids as PNG (`grid`). Imports run one way: teacher ← pool ← intensity ← metrics ← train ← crossval.
//! `robustness` degrades aligned faces as cameras do (blur, noise, JPEG, distance, exposure)
//! for `eval --degrade`. `auto_neutral` measures the live pipeline's rule for taking the own neutral face by itself on
//! webcam-like frames of labelled faces (it imports that rule from `pipeline`).
pub mod auto_neutral;
pub mod crossval;
pub mod grid;
pub mod intensity;
pub mod metrics;
pub mod pool;
pub mod robustness;
pub mod teacher;
pub mod train;

pub use crossval::{cross_validate, CrossValidation};
pub use metrics::{Confusion, DatasetReport};
pub use pool::TrainData;
pub use train::{train, TrainConfig, Trained};
