//! dgcn — facial expression recognition with a deep generative-contrastive network (GCNet).
//!
//! ```text
//! app (flags → running parts: cli, one runner per subcommand)
//!  │  builds a Runtime (device, threads, detector) and plain option structs for:
//!  ├─ pipeline (threads joined by newest-wins channels; setup: LiveSetup)
//!  │    capture → face (detect, track, align) → infer (model) → frame results
//!  ├─ ui (the window and the session browser) ── session (format, recorder, reader, rescore)
//!  └─ learn (pool ← metrics ← train ← crossval) ── data (datasets, preparation cache, folds)
//! model (GCNet, losses, weights) · device (CUDA at run time) · cpu_use · labels
//! ```
//!
//! One frame's path: [`capture`] → [`face::detect`] finds faces and five landmarks →
//! [`face::align`] makes each a 64×64 grey crop → [`model`] synthesises the person's neutral
//! reference, embeds query and reference and classifies their difference → 8 expression
//! probabilities and an intensity. [`data`] and [`learn`] build and measure the weights;
//! [`infer`] runs them. Imports run downwards only: nothing below `app` knows the command line.
pub mod app;
pub mod capture;
pub mod cpu_use;
pub mod data;
pub mod device;
pub mod face;
pub mod frame;
pub mod infer;
pub mod labels;
pub mod learn;
pub mod model;
pub mod pipeline;
pub mod runtime;
pub mod session;
#[cfg(feature = "window")]
pub mod ui;

/// `dgcn --version`, also written into every session manifest.
pub const VERSION_LINE: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (libtorch_cuda linked at build time: ",
    env!("DGCN_CUDA_LINKED"),
    "; loaded at run time when present; `dgcn doctor` shows the device in use)"
);
