//! dgcn — facial expression recognition with a deep generative-contrastive network (GCNet).
//!
//! The pipeline, in order: a frame or image → [`face::detect`] finds faces and five landmarks →
//! [`face::align`] makes each a 64×64 grey crop → [`model`] synthesises the person's neutral
//! reference, embeds query and reference and classifies their difference → 8 expression
//! probabilities. [`data`], [`train`] and [`eval`] build and measure the weights; [`infer`] runs them.
pub mod bench;
pub mod capture;
pub mod cli;
pub mod commands;
pub mod cpu_use;
pub mod data;
pub mod device;
pub mod eval;
pub mod face;
pub mod frame;
pub mod infer;
pub mod labels;
pub mod live;
pub mod model;
pub mod pipeline;
pub mod rescore;
pub mod session;
pub mod train;
pub mod ui;
