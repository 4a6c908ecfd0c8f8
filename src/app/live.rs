//! `dgcn live`: the window, or headless with one JSON line per frame; both start the pipeline
//! from a [`LiveSetup`] built here from the flags.
use anyhow::{Context, Result};

use super::cli::LiveArgs;
use crate::capture::CameraRequest;
use crate::face::TrackConfig;
use crate::infer::default_weights_path;
use crate::pipeline::setup::LiveSetup;
#[cfg(feature = "window")]
use crate::ui::WindowOptions;

/// The live pipeline's choices from the flags: per-stage threads, weights, camera, tracking.
pub fn live_setup(args: &LiveArgs) -> LiveSetup {
    LiveSetup {
        runtime: args.common.runtime().per_stage(),
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
            still_max: args.hold_still,
            roi_side_px: args.track_crop,
            ..TrackConfig::default()
        },
        own_frames: usize::from(args.own_neutral_frames),
        auto_neutral: (!args.no_auto_neutral && args.own_neutral_at.is_none()).then(|| {
            crate::pipeline::AutoNeutralRule::with_frames(usize::from(args.own_neutral_frames))
        }),
    }
}

/// The window's options from the flags (labels read here, so a bad CSV fails before the
/// window opens).
#[cfg(feature = "window")]
fn window_options(args: &LiveArgs) -> Result<WindowOptions> {
    let labels = match &args.labels {
        Some(p) => Some(crate::session::labels::read_label_csv(p)?),
        None => None,
    };
    Ok(WindowOptions {
        source: args.source.clone(),
        screenshot: args
            .screenshot
            .clone()
            .map(|path| crate::ui::ScreenshotPlan {
                path,
                after_frames: args.screenshot_after,
            }),
        sessions_dir: args.sessions_dir.clone().unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(std::env::temp_dir)
                .join("dgcn-sessions")
        }),
        record: args.record.clone(),
        labels,
        record_frames: args.record_frames,
    })
}

/// `dgcn live`: the window, or with `--headless` one JSON line per frame.
pub fn run_live(args: &LiveArgs) -> Result<()> {
    if args.headless {
        return run_headless(args);
    }
    #[cfg(feature = "window")]
    return crate::ui::run_window(live_setup(args), window_options(args)?);
    #[cfg(not(feature = "window"))]
    Err(anyhow::anyhow!(
        "{}; run `dgcn live --headless`",
        crate::capture::CaptureError::NotBuilt("window")
    ))
}

fn run_headless(args: &LiveArgs) -> Result<()> {
    use std::io::Write;
    if let Some(at) = args.own_neutral_at {
        anyhow::ensure!(
            at.is_finite() && at >= 0.0,
            "--own-neutral-at {at}: expected a time in seconds, 0 or more"
        );
    }
    let setup = live_setup(args);
    let spec = match &args.source {
        Some(s) => s.clone(),
        None => {
            let (spec, message) = setup.default_source();
            if let Some(m) = message {
                tracing::warn!("{m}");
            }
            spec
        }
    };
    let live_feed = args.realtime || matches!(spec, crate::capture::SourceSpec::Camera(_));
    let started = setup.start(
        &spec,
        crate::capture::VideoOptions {
            realtime: args.realtime,
            looped: args.looped,
        },
        crate::pipeline::PipelineConfig {
            max_frames: args.max_frames,
            lossless: !live_feed,
            notify: None,
            track: setup.track,
            own_frames: setup.own_frames,
            auto_neutral: setup.auto_neutral,
        },
    )?;
    let mut pipeline = started.pipeline;
    tracing::info!(source = %pipeline.source_description, device = %started.device, "headless pipeline");
    let labels = match &args.labels {
        Some(p) => Some(crate::session::labels::read_label_csv(p)?),
        None => None,
    };
    let recorder = match &args.record {
        Some(dir) => {
            let manifest = crate::session::Manifest::new(
                &setup.weights,
                &started.spec,
                &pipeline.source_description,
                &started.device,
                args.labels.as_ref().map(|p| p.display().to_string()),
            )?
            .with_number_format(started.format);
            let r = crate::session::Recorder::start(dir, manifest, args.record_frames)?;
            tracing::info!(session = %dir.display(), "recording");
            Some(r)
        }
        None => None,
    };
    let mut out: Box<dyn Write> = if args.out.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        let f = std::fs::File::create(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?;
        Box::new(std::io::BufWriter::new(f))
    };
    let t0 = std::time::Instant::now();
    let mut totals = Vec::new();
    let mut own_pending = args.own_neutral_at;
    for result in pipeline.results.iter() {
        // The first face at or after --own-neutral-at becomes its own neutral reference; frames
        // already past the model keep the generated one.
        if let (Some(at), Some(face)) = (own_pending, result.faces.first()) {
            if result.frame.time_s >= at {
                let own = crate::pipeline::OwnReference::of(face);
                match pipeline
                    .control
                    .send(crate::pipeline::Control::OwnReference(Some(own)))
                {
                    Ok(()) => tracing::info!(
                        time_s = result.frame.time_s,
                        frame = result.frame.seq,
                        track = face.detected.track,
                        "own neutral face taken"
                    ),
                    // The model has seen the last frame already: nothing left to compare.
                    Err(_) => tracing::warn!(
                        time_s = result.frame.time_s,
                        "own neutral face taken after the last frame reached the model"
                    ),
                }
                own_pending = None;
            }
        }
        writeln!(out, "{}", result.to_json())
            .with_context(|| format!("writing {}", args.out.display()))?;
        totals.push(result.total_ms);
        if let Some(r) = &recorder {
            let label = labels
                .as_ref()
                .and_then(|l| l.get(&result.frame.seq).copied().flatten());
            r.record(
                crate::session::recorder::RecordItem { result, label },
                !live_feed,
            );
        }
    }
    out.flush()
        .with_context(|| format!("writing {}", args.out.display()))?;
    pipeline.stop();
    if let Some(r) = recorder {
        let summary = r.finish()?;
        if let Some(stopped) = summary.stopped_by {
            anyhow::bail!("{stopped}");
        }
        tracing::info!(session = %summary.dir.display(), frames = summary.frames, rows = summary.rows, dropped = summary.dropped, "session recorded");
    }
    if let Ok(e) = pipeline.errors.try_recv() {
        anyhow::bail!("{e}");
    }
    totals.sort_by(f64::total_cmp);
    let median = totals.get(totals.len() / 2).copied().unwrap_or(0.0);
    tracing::info!(
        frames = totals.len(),
        dropped = pipeline.dropped.load(std::sync::atomic::Ordering::Relaxed),
        seconds = t0.elapsed().as_secs_f64(),
        median_total_ms = median,
        "headless run done"
    );
    Ok(())
}
