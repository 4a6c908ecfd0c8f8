//! Starting the live pipeline from the user's choices: which source, detector, weights and
//! device. Plain data built by `app` from the command line; shared by the window (which restarts
//! the pipeline when the user picks another source) and by headless mode.
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::{Pipeline, PipelineConfig};
use crate::capture::{self, CameraRequest, SourceSpec, VideoOptions};
use crate::device::device_name;
use crate::face::TrackConfig;
use crate::infer::Predictor;
use crate::runtime::Runtime;

#[derive(Debug, Clone)]
pub struct LiveSetup {
    /// Device, threads per stage and detector.
    pub runtime: Runtime,
    pub weights: PathBuf,
    pub camera: CameraRequest,
    pub track: TrackConfig,
    /// How many of the model's frames an own neutral face is averaged over.
    pub own_frames: usize,
    /// Whether, and by which rule, a face is taken as its own neutral face by itself.
    pub auto_neutral: Option<super::AutoNeutralRule>,
}

/// A started pipeline and what it runs on.
pub struct Started {
    pub pipeline: Pipeline,
    pub spec: SourceSpec,
    pub device: String,
    /// The number format the network runs in ("f32" or "bf16").
    pub format: &'static str,
}

impl LiveSetup {
    /// The camera request for camera `index` with this setup's resolution and frame rate.
    pub fn camera_spec(&self, index: u32) -> SourceSpec {
        SourceSpec::Camera(CameraRequest {
            index,
            ..self.camera
        })
    }

    /// What to open when no source is named: the first camera; with none, the demo clip, and a
    /// message saying so.
    pub fn default_source(&self) -> (SourceSpec, Option<String>) {
        match capture::list_cameras().first() {
            Some(c) => (self.camera_spec(c.index), None),
            None => (
                SourceSpec::Demo,
                Some("No camera found: showing the demo clip (\"carphone\", BSD) instead.".into()),
            ),
        }
    }

    /// Loads the model and the detector and starts the pipeline on `spec`.
    pub fn start(
        &self,
        spec: &SourceSpec,
        video: VideoOptions,
        config: PipelineConfig,
    ) -> Result<Started> {
        let spec = match spec {
            // `camera:N` from the command line gets this setup's resolution and frame rate.
            SourceSpec::Camera(r) => self.camera_spec(r.index),
            other => other.clone(),
        };
        let device = self.runtime.device()?;
        let predictor = Predictor::load(&self.weights, device, self.runtime.precision)?;
        let format = predictor.format.format_on(device);
        let det = self.runtime.detector()?;
        let source = capture::open_source(&spec, video)?;
        let pipeline = Pipeline::start(source, det, predictor, config)
            .context("starting the pipeline threads")?;
        Ok(Started {
            pipeline,
            spec,
            device: device_name(device),
            format,
        })
    }
}
