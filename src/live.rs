//! Starting the live pipeline from the command line's choices: which source, detector, weights
//! and device. Shared by the window (which restarts it when the user picks another source) and
//! by headless mode.
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::capture::{self, CameraRequest, SourceSpec, VideoOptions};
use crate::cli::{CommonArgs, LiveArgs};
use crate::commands::{detector, setup_device};
use crate::device::device_name;
use crate::face::TrackConfig;
use crate::infer::{default_weights_path, Predictor};
use crate::pipeline::{Pipeline, PipelineConfig};

#[derive(Debug, Clone)]
pub struct LiveSetup {
    pub common: CommonArgs,
    pub weights: PathBuf,
    pub camera: CameraRequest,
    pub track: TrackConfig,
}

/// A started pipeline and what it runs on.
pub struct Started {
    pub pipeline: Pipeline,
    pub spec: SourceSpec,
    pub device: String,
}

/// Threads for each of the two compute stages (detection, model) unless `--threads` says: they
/// run at the same time, so each gets half the cores (measured on 2 cores: 1 thread each gave
/// 101 fps and 10.4 ms median latency against 77 fps and 14.4 ms with 2 each, see `dgcn bench`).
pub fn per_stage_threads(common: &CommonArgs) -> usize {
    if common.threads > 0 {
        return common.threads;
    }
    (crate::commands::threads(common) / 2).max(1)
}

impl LiveSetup {
    pub fn from_args(args: &LiveArgs) -> LiveSetup {
        LiveSetup {
            common: CommonArgs {
                threads: per_stage_threads(&args.common),
                ..args.common.clone()
            },
            weights: args.weights.clone().unwrap_or_else(default_weights_path),
            camera: CameraRequest {
                index: 0,
                width: args.camera_resolution.0,
                height: args.camera_resolution.1,
                frames_per_s: args.camera_fps,
            },
            track: TrackConfig {
                full_every: args.detect_every.max(1),
                full_max_side_px: args.detect_max_side,
                ..TrackConfig::default()
            },
        }
    }

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
        let device = setup_device(&self.common)?;
        let predictor = Predictor::load(&self.weights, device)?;
        let det = detector(&self.common)?;
        let source = capture::open_source(&spec, video)?;
        let pipeline = Pipeline::start(source, det, predictor, config)
            .context("starting the pipeline threads")?;
        Ok(Started {
            pipeline,
            spec,
            device: device_name(device),
        })
    }
}
