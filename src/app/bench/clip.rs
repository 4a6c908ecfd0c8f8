//! `dgcn bench` on a clip (needs FFmpeg): decode, detect, align and GCNet per stage on its
//! frames; the whole headless pipeline as fast as possible, camera-paced and on an idle camera.
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use image::RgbImage;
use tch::Device;

use super::{finish_report, median_p95, memory_mb, time_ms};
use crate::app::cli::BenchArgs;
use crate::capture::threaded::Producer;
use crate::capture::video::VideoProducer;
use crate::capture::{SourceSpec, VideoOptions};
use crate::cpu_use::CpuSpan;
use crate::device::{device_name, Precision};
use crate::face::detect::BlazeFaceVariant;
use crate::face::{aligned_from_image, Detector, DetectorConfig, FaceTracker, TrackConfig};
use crate::infer::Predictor;
use crate::pipeline::{Pipeline, PipelineConfig};

fn fmt_cores(cores: Option<f64>) -> String {
    cores.map_or_else(|| "?".into(), |c| format!("{c:.2}"))
}

struct Table {
    rows: Vec<[String; 4]>,
}

impl Table {
    fn row(&mut self, stage: &str, setting: &str, median: f64, p95: f64) {
        self.rows.push([
            stage.into(),
            setting.into(),
            format!("{median:.2}"),
            format!("{p95:.2}"),
        ]);
        eprintln!("  {stage:<28} {setting:<44} {median:>8.2} {p95:>8.2}");
    }

    fn markdown(&self) -> String {
        let mut s = String::from("| stage | setting | median ms | p95 ms |\n|---|---|---:|---:|\n");
        for r in &self.rows {
            s.push_str(&format!("| {} | {} | {} | {} |\n", r[0], r[1], r[2], r[3]));
        }
        s
    }
}

/// A camera facing a grey wall: noisy frames at a fixed rate for a fixed time.
struct BlankCamera {
    frame: RgbImage,
    interval: std::time::Duration,
    next: Instant,
    left: u64,
}

impl BlankCamera {
    fn new(w: u32, h: u32, fps: f64, seconds: f64) -> BlankCamera {
        let mut frame = RgbImage::new(w, h);
        for (i, p) in frame.pixels_mut().enumerate() {
            p.0 = [120 + ((i.wrapping_mul(2_654_435_761) >> 13) % 9) as u8; 3];
        }
        BlankCamera {
            frame,
            interval: std::time::Duration::from_secs_f64(1.0 / fps),
            next: Instant::now(),
            left: (fps * seconds) as u64,
        }
    }
}

impl Producer for BlankCamera {
    fn produce(
        &mut self,
    ) -> Result<Option<crate::capture::SourceFrame>, crate::capture::CaptureError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        if let Some(wait) = self.next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        self.next += self.interval;
        Ok(Some(crate::capture::SourceFrame {
            rgb: self.frame.clone(),
            time_s: None,
        }))
    }

    fn describe(&self) -> String {
        "blank camera".into()
    }
}

fn decode_all(path: &Path, limit: usize) -> Result<(Vec<RgbImage>, Vec<f64>)> {
    let mut producer = VideoProducer::open(path, VideoOptions::default())?;
    let mut frames = Vec::new();
    let mut times = Vec::new();
    loop {
        let t0 = Instant::now();
        let Some(f) = producer.produce()? else { break };
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
        if frames.len() < limit {
            frames.push(f.rgb);
        }
    }
    Ok((frames, times))
}

fn blazeface_file(variant: BlazeFaceVariant, args: &BenchArgs) -> Option<std::path::PathBuf> {
    if variant == BlazeFaceVariant::B640 {
        if let Some(p) = &args.common.detector {
            return Some(p.clone());
        }
    }
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from)?;
    let p = home.join(".rust_faces").join(variant.cache_file_name());
    p.exists().then_some(p)
}

/// `dgcn bench` on a clip: each stage on its frames, then the whole headless pipeline.
pub fn run_clip_bench(args: &BenchArgs) -> Result<()> {
    let clip = &args.clip;
    anyhow::ensure!(clip.is_file(), "clip {} not found", clip.display());
    let threads = args.common.runtime().threads();
    // Single-stage timings use all the threads asked for.
    args.common.runtime().device()?;
    let mut table = Table { rows: Vec::new() };
    eprintln!(
        "  {:<28} {:<44} {:>8} {:>8}",
        "stage", "setting", "median", "p95"
    );

    // Decode.
    let (frames, mut decode_ms) = decode_all(clip, args.frames)?;
    anyhow::ensure!(
        !frames.is_empty(),
        "no frames decoded from {}",
        clip.display()
    );
    let (w, h) = frames[0].dimensions();
    let (m, p) = median_p95(&mut decode_ms);
    table.row(
        "decode (FFmpeg → RGB)",
        &format!("{w}×{h}, {} frames", decode_ms.len()),
        m,
        p,
    );

    // Detect: each variant, full frame and downscaled, and tracking.
    let mut detections = Vec::new();
    for variant in [BlazeFaceVariant::B640, BlazeFaceVariant::B320] {
        let Some(model) = blazeface_file(variant, args) else {
            eprintln!(
                "  (BlazeFace-{} model not found; skipped)",
                variant.target_size()
            );
            continue;
        };
        let make = |keep_subnormal_weights: bool| {
            Detector::new(&DetectorConfig {
                model_path: Some(model.clone()),
                variant,
                threads,
                keep_subnormal_weights,
                ..DetectorConfig::default()
            })
        };
        let name = format!("detect BlazeFace-{}", variant.target_size());
        let mut settings = vec![
            (
                format!("whole frame {w}×{h}, every frame"),
                TrackConfig::every_frame(),
            ),
            (
                "whole frame at 320 px, every frame".to_string(),
                TrackConfig {
                    full_every: 1,
                    ..TrackConfig::default()
                },
            ),
            (
                format!(
                    "tracked: {} px crops, whole frame every {}, a detection every frame",
                    TrackConfig::default().roi_side_px,
                    TrackConfig::default().full_every
                ),
                TrackConfig {
                    still_max: 0,
                    ..TrackConfig::default()
                },
            ),
            (
                format!(
                    "tracked as above, a face that has not moved held up to {} frames (default)",
                    TrackConfig::default().still_max
                ),
                TrackConfig::default(),
            ),
            (
                "as the default, 128 px crops (`--track-crop 128`)".to_string(),
                TrackConfig {
                    roi_side_px: 128,
                    ..TrackConfig::default()
                },
            ),
        ]
        .into_iter()
        .map(|(label, track)| (label, track, false))
        .collect::<Vec<_>>();
        if variant == BlazeFaceVariant::B640 {
            // The model as downloaded, its subnormal weights kept (face::subnormal): what the
            // flush saves on this CPU.
            let kept = "; weights as downloaded, subnormal ones kept";
            settings.push((
                format!("whole frame {w}×{h}, every frame{kept}"),
                TrackConfig::every_frame(),
                true,
            ));
            settings.push((
                format!("default tracking{kept}"),
                TrackConfig::default(),
                true,
            ));
        }
        for (label, track, keep_subnormal) in settings {
            let mut tracker = FaceTracker::new(make(keep_subnormal)?, track);
            let _ = tracker.detect(&frames[0])?; // warm-up
            let mut ms = Vec::new();
            for _ in 0..args.repeats {
                for f in &frames {
                    let mut found = Vec::new();
                    ms.push(time_ms(|| found = tracker.detect(f).unwrap_or_default()));
                    if variant == BlazeFaceVariant::B640
                        && track == TrackConfig::every_frame()
                        && !keep_subnormal
                    {
                        detections.push((f, found));
                    }
                }
            }
            // Held frames take no detector run: the mean, not the median, is their cost.
            let mean = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
            let (m, p) = median_p95(&mut ms);
            table.row(&name, &format!("{label}; mean {mean:.2} ms"), m, p);
        }
    }

    // Align.
    let mut align_ms = Vec::new();
    for (f, faces) in &detections {
        for face in faces {
            align_ms.push(time_ms(|| {
                let _ = aligned_from_image(f, &face.landmarks);
            }));
        }
    }
    let (m, p) = median_p95(&mut align_ms);
    table.row("align (5 points → 64×64)", "per face", m, p);

    // GCNet forward.
    let faces: Vec<_> = detections
        .iter()
        .filter_map(|(f, d)| d.first().and_then(|d| aligned_from_image(f, &d.landmarks)))
        .collect();
    anyhow::ensure!(!faces.is_empty(), "no face found in {}", clip.display());
    let mut devices = vec![Device::Cpu];
    if tch::Cuda::is_available() {
        devices.push(Device::Cuda(0));
    }
    let runs = devices.into_iter().flat_map(|dev| {
        Precision::benched_on(dev)
            .into_iter()
            .map(move |p| (dev, p))
    });
    for (dev, precision) in runs {
        let predictor = Predictor::load(&args.weights, dev, precision)?;
        let format = precision.format_on(dev);
        for batch in [1usize, 4] {
            let input: Vec<_> = faces.iter().cycle().take(batch).cloned().collect();
            for _ in 0..10 {
                predictor.predict(&input, None)?;
            }
            let mut ms: Vec<f64> = (0..args.repeats * 100)
                .map(|_| {
                    time_ms(|| {
                        let _ = predictor.predict(&input, None);
                    })
                })
                .collect();
            let (m, p) = median_p95(&mut ms);
            table.row(
                "GCNet forward (G + encoder + classifier)",
                &format!("{}, {format}, batch {batch}", device_name(dev)),
                m,
                p,
            );
        }
    }

    // The whole pipeline, as `dgcn live --headless` runs it (threads per stage as it sets them).
    let stage = args.common.runtime().per_stage();
    let device = stage.device()?;
    // The number format the pipeline rows run in (with `auto` on a CPU with native bf16, the
    // faster of the two, timed once per process), as the first pipeline's predictor chose it.
    let pipeline_format = std::cell::Cell::new(None);
    let start = |video: VideoOptions, config: PipelineConfig| -> Result<Pipeline> {
        let source = crate::capture::open_source(&SourceSpec::Path(clip.clone()), video)?;
        let predictor = Predictor::load(&args.weights, device, args.common.precision)?;
        pipeline_format.set(Some(predictor.format.format_on(device)));
        Pipeline::start(source, stage.detector()?, predictor, config)
            .context("starting the pipeline")
    };
    let mut summary = Vec::new();
    for (label, track) in [
        ("whole frame every frame", TrackConfig::every_frame()),
        (
            "tracking, detection and model every frame",
            TrackConfig {
                still_max: 0,
                ..TrackConfig::default()
            },
        ),
        (
            "tracking, still faces held (default)",
            TrackConfig::default(),
        ),
    ] {
        for (mode, realtime) in [
            ("as fast as possible", false),
            ("paced at the clip's rate", true),
        ] {
            let mut pipeline = start(
                VideoOptions {
                    realtime,
                    looped: false,
                },
                PipelineConfig {
                    max_frames: (args.pipeline_frames > 0).then_some(args.pipeline_frames),
                    lossless: !realtime,
                    track,
                    // As the app runs: the own neutral face taken by itself.
                    auto_neutral: Some(crate::pipeline::AutoNeutralRule::default()),
                    ..Default::default()
                },
            )?;
            let t0 = Instant::now();
            let cpu = CpuSpan::start();
            let mut total = Vec::new();
            let mut held = 0usize;
            for r in pipeline.results.iter() {
                total.push(r.total_ms);
                held += usize::from(r.model_held);
            }
            let seconds = t0.elapsed().as_secs_f64();
            let cores = cpu.cores();
            pipeline.stop();
            let n = total.len();
            let (m, p) = median_p95(&mut total);
            // CPU time of the whole process per frame: what each frame costs the machine.
            let per_frame = cores.map(|c| c * seconds * 1000.0 / n.max(1) as f64);
            let per_frame_txt = per_frame.map_or("?".into(), |v| format!("{v:.1}"));
            table.row(
                &format!("pipeline, {label}"),
                &format!(
                    "{mode}: {n} frames, {:.0} fps, {} cores, {per_frame_txt} ms CPU per frame, model held on {held}",
                    n as f64 / seconds,
                    fmt_cores(cores)
                ),
                m,
                p,
            );
            summary.push(format!(
                "{label}, {mode}: {:.0} fps, CPU {} cores, {per_frame_txt} ms of CPU time per frame, model result held on {held} of {n} frames",
                n as f64 / seconds,
                fmt_cores(cores)
            ));
        }
    }

    // An idle camera: 640×480 frames of a grey wall at 30 fps, no face in view.
    {
        let seconds = 6.0;
        let source = crate::capture::threaded::ThreadedSource::spawn("blank-camera", move || {
            Ok(BlankCamera::new(640, 480, 30.0, seconds))
        })?;
        let mut pipeline = Pipeline::start(
            Box::new(source),
            stage.detector()?,
            Predictor::load(&args.weights, device, args.common.precision)?,
            PipelineConfig::default(),
        )
        .context("starting the pipeline")?;
        // The first second holds the searches of every frame before the tracker backs off.
        let mut cpu = None;
        let t0 = Instant::now();
        let mut frames = 0usize;
        for _ in pipeline.results.iter() {
            frames += 1;
            if cpu.is_none() && t0.elapsed().as_secs_f64() > 1.5 {
                cpu = Some(CpuSpan::start());
            }
        }
        let cores = cpu.and_then(|c| c.cores());
        pipeline.stop();
        eprintln!(
            "  idle camera (no face, 30 fps): {frames} frames, {} cores",
            fmt_cores(cores)
        );
        summary.push(format!(
            "idle camera (640×480 grey wall at 30 fps, no face; after the first 1.5 s): CPU {} cores",
            fmt_cores(cores)
        ));
    }

    // Memory over a long run of the looped clip.
    if args.memory_frames > 0 {
        let mut pipeline = start(
            VideoOptions {
                realtime: false,
                looped: true,
            },
            PipelineConfig {
                max_frames: Some(args.memory_frames),
                lossless: true,
                ..Default::default()
            },
        )?;
        let mut samples = Vec::new();
        for (i, _) in pipeline.results.iter().enumerate() {
            if i % 1000 == 0 {
                if let Some((_, rss)) = memory_mb() {
                    samples.push((i, rss));
                }
            }
        }
        pipeline.stop();
        let line = samples
            .iter()
            .map(|(i, r)| format!("{i}: {r:.0}"))
            .collect::<Vec<_>>()
            .join(", ");
        eprintln!(
            "  resident MB by frame over {} frames: {line}",
            args.memory_frames
        );
        summary.push(format!(
            "resident memory (MB) by frame over a {}-frame run: {line}",
            args.memory_frames
        ));
    }
    if let Some((peak, _)) = memory_mb() {
        summary.push(format!(
            "peak resident memory of the whole bench: {peak:.0} MB"
        ));
    }

    let pipeline_format = pipeline_format.get().unwrap_or("no pipeline row run");
    let machine = format!(
        "{} threads per stage ({} for the single-stage timings), device {}, pipeline rows in {}, {}",
        stage.threads,
        threads,
        device_name(device),
        pipeline_format,
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into())
    );
    let report = format!(
        "Clip: {}\nMachine: {machine}\n\n{}\n{}\n",
        clip.display(),
        table.markdown(),
        summary
            .iter()
            .map(|s| format!("- {s}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    finish_report(args, &report)
}
