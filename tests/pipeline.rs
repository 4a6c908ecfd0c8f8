//! The headless pipeline (capture → detect/align → inference threads) on a folder of real faces.
mod util;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use dgcn::data::{self, source::read_files, DatasetKind};
use dgcn::infer::Predictor;
use dgcn::pipeline::{Pipeline, PipelineConfig};

fn shipped_weights() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/gcnet.safetensors")
}

/// The shipped weights on the CPU in the number format the app picks there.
fn shipped_predictor() -> Predictor {
    Predictor::load(
        &shipped_weights(),
        tch::Device::Cpu,
        dgcn::device::Precision::Auto,
    )
    .expect("weights")
}

/// Twelve TFEID portraits of one performer, written to a folder once (the tests run in parallel).
fn portrait_folder() -> std::path::PathBuf {
    static FOLDER: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    FOLDER.get_or_init(write_portraits).clone()
}

fn write_portraits() -> std::path::PathBuf {
    let dir = util::temp_dir("portraits");
    let files = read_files(&data::locate(DatasetKind::Tfeid, &util::data_dir()), |p| {
        p.contains("faces_256x256/01") && p.ends_with(".jpg")
    })
    .expect("archive reads");
    for (i, (_, bytes)) in files.into_iter().take(12).enumerate() {
        std::fs::write(dir.join(format!("frame{i:03}.jpg")), bytes).expect("write");
    }
    dir
}

#[test]
fn headless_run_writes_one_line_per_frame_in_order() {
    let folder = portrait_folder();
    let out = util::temp_dir("headless").join("results.jsonl");
    util::run_ok(
        Command::new(env!("CARGO_BIN_EXE_dgcn"))
            .env("DGCN_BLAZEFACE", util::blazeface_path())
            .env("DGCN_LOG", "error")
            .args(["live", "--headless", "--weights"])
            .arg(shipped_weights())
            .arg("--source")
            .arg(&folder)
            .arg("--out")
            .arg(&out),
    );
    let text = std::fs::read_to_string(&out).expect("results");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(lines.len(), 12);
    for (i, v) in lines.iter().enumerate() {
        assert_eq!(v["frame"].as_u64(), Some(i as u64));
        let faces = v["faces"].as_array().expect("faces");
        assert_eq!(faces.len(), 1, "frame {i}");
        let sum: f64 = faces[0]["probs"]
            .as_object()
            .expect("probs")
            .values()
            .filter_map(|p| p.as_f64())
            .sum();
        assert!((sum - 1.0).abs() < 1e-3);
        assert!(v["latency_ms"]["total"].as_f64().is_some_and(|t| t > 0.0));
        // Twelve different photos: no face holds still, the model ran on every one.
        assert_eq!(v["held"].as_bool(), Some(false), "frame {i}");
    }
}

#[test]
fn dropping_the_pipeline_stops_its_threads_promptly() {
    let folder = portrait_folder();
    let predictor = shipped_predictor();
    let source = dgcn::capture::open_source(
        &dgcn::capture::SourceSpec::Path(folder),
        dgcn::capture::VideoOptions::default(),
    )
    .expect("source");
    let mut pipeline = Pipeline::start(
        source,
        util::detector(),
        predictor,
        PipelineConfig {
            lossless: false,
            ..Default::default()
        },
    )
    .expect("starts");
    let first = pipeline
        .results
        .recv_timeout(Duration::from_secs(60))
        .expect("a result");
    assert_eq!(first.faces.len(), 1);
    let t0 = Instant::now();
    pipeline.stop();
    drop(pipeline);
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "stopping took {:?}",
        t0.elapsed()
    );
}

#[test]
fn a_missing_source_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_dgcn"))
        .env("DGCN_BLAZEFACE", util::blazeface_path())
        .args(["live", "--headless", "--weights"])
        .arg(shipped_weights())
        .args(["--source", "/nonexistent/clip"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let last = util::last_stderr_line(&out);
    assert!(
        last.contains("/nonexistent/clip") && last.contains("no such file"),
        "{err}"
    );
}

/// In a folder source an unreadable image is skipped with a warning that names it, and the
/// images after it are not lost; a folder of nothing but unreadable images is a one-line error.
/// Three TFEID portraits with a text file named `.jpg` second: three frames, each with its face.
#[test]
fn an_unreadable_image_in_a_folder_is_skipped_and_the_rest_play() {
    let dir = util::temp_dir("folder-with-bad-image");
    let portraits = portrait_folder();
    for (i, name) in ["a.jpg", "c.jpg", "d.jpg"].iter().enumerate() {
        std::fs::copy(portraits.join(format!("frame{i:03}.jpg")), dir.join(name)).expect("copy");
    }
    std::fs::write(dir.join("b.jpg"), b"not an image").expect("write");
    let run = |folder: &std::path::Path, out: &std::path::Path| {
        util::dgcn()
            .args(["live", "--headless", "--source"])
            .arg(folder)
            .arg("--out")
            .arg(out)
            .output()
            .expect("runs")
    };
    let out = dir.join("results.jsonl");
    let output = run(&dir, &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("unreadable image skipped") && stderr.contains("b.jpg"),
        "{stderr}"
    );
    let frames: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .expect("results")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(frames.len(), 3);
    assert!(frames
        .iter()
        .all(|v| v["faces"].as_array().is_some_and(|f| f.len() == 1)));

    let bad = util::temp_dir("folder-all-bad");
    for name in ["x.jpg", "y.png"] {
        std::fs::write(bad.join(name), b"not an image").expect("write");
    }
    let output = run(&bad, &bad.join("results.jsonl"));
    assert_eq!(output.status.code(), Some(1));
    let last = util::last_stderr_line(&output);
    assert!(
        last.contains("none of its 2 images could be read"),
        "{last}"
    );
}

/// A camera that delivers a few frames and then fails, as an unplugged webcam does.
struct VanishingCamera {
    frames: Vec<image::RgbImage>,
}

impl dgcn::capture::FrameSource for VanishingCamera {
    fn next_frame(
        &mut self,
        _stop: &std::sync::atomic::AtomicBool,
    ) -> Result<Option<dgcn::capture::SourceFrame>, dgcn::capture::CaptureError> {
        match self.frames.pop() {
            Some(rgb) => Ok(Some(dgcn::capture::SourceFrame { rgb, time_s: None })),
            None => Err(dgcn::capture::CaptureError::CameraLost {
                index: 0,
                reason: "No such device (os error 19)".into(),
            }),
        }
    }
    fn describe(&self) -> String {
        "vanishing camera".into()
    }
}

#[test]
fn a_camera_that_disappears_ends_the_source_with_a_message() {
    let folder = portrait_folder();
    let frames: Vec<image::RgbImage> = std::fs::read_dir(&folder)
        .expect("folder")
        .take(3)
        .map(|e| {
            image::open(e.expect("entry").path())
                .expect("image")
                .to_rgb8()
        })
        .collect();
    let predictor = shipped_predictor();
    let mut pipeline = Pipeline::start(
        Box::new(VanishingCamera { frames }),
        util::detector(),
        predictor,
        PipelineConfig {
            lossless: true,
            ..Default::default()
        },
    )
    .expect("starts");
    let results: Vec<_> = pipeline.results.iter().collect();
    assert_eq!(results.len(), 3, "every frame before the loss is delivered");
    let message = pipeline
        .errors
        .recv_timeout(Duration::from_secs(5))
        .expect("the loss is reported");
    assert!(message.contains("stopped delivering frames"), "{message}");
    assert!(pipeline.is_finished());
    pipeline.stop();
}

fn aligned_faces(n: usize) -> Vec<dgcn::face::AlignedFace> {
    let folder = portrait_folder();
    let detector = util::detector();
    let mut paths: Vec<_> = std::fs::read_dir(&folder)
        .expect("folder")
        .map(|e| e.expect("entry").path())
        .collect();
    paths.sort();
    paths
        .iter()
        .take(n)
        .map(|p| {
            let rgb = image::open(p).expect("image").to_rgb8();
            let face = detector.detect(&rgb).expect("detects").remove(0);
            dgcn::face::aligned_from_image(&rgb, &face.landmarks).expect("aligns")
        })
        .collect()
}

#[test]
fn an_own_neutral_face_replaces_the_generated_reference_of_one_face_only() {
    let faces = aligned_faces(3);
    let (queries, own) = (&faces[..2], &faces[2]);
    let predictor = shipped_predictor();
    let generated = predictor.predict(queries, None).expect("predicts");
    let own_face = predictor.own_face(vec![own.clone()]).expect("own face");
    let with_own = predictor
        .predict(queries, Some((0, &own_face)))
        .expect("predicts");
    assert!(with_own[0].own_reference() && !with_own[1].own_reference());
    assert_eq!(with_own[0].reference, *own);
    // The generated reference is still there to show beside the own one.
    assert_eq!(with_own[0].generated, generated[0].generated);
    // Face 1 is untouched; face 0 is now compared with another reference.
    for (a, b) in with_own[1].probs.iter().zip(&generated[1].probs) {
        assert!((a - b).abs() < 1e-5);
    }
    let moved: f32 = with_own[0]
        .probs
        .iter()
        .zip(&generated[0].probs)
        .map(|(a, b)| (a - b).abs())
        .sum();
    assert!(moved > 1e-3, "probabilities did not change ({moved})");
    // One frame's mean embedding is that frame's embedding: the same as the image itself as the
    // reference (the network run on query and image as one batch), to the rounding of bf16. The
    // probabilities are the mean of those against the own face and against the generated one;
    // the intensity is read against the own face.
    let side = dgcn::face::FACE_SIZE as i64;
    let image =
        |f: &dgcn::face::AlignedFace| tch::Tensor::from_slice(&f.pixels).view([1, 1, side, side]);
    let (logits, distance) = tch::no_grad(|| {
        predictor
            .model
            .net
            .eval_logits(&image(&queries[0]), &image(own))
    });
    let against_own = Vec::<f32>::try_from(
        predictor
            .model
            .sidecar
            .probabilities(&logits)
            .flatten(0, -1),
    )
    .expect("probabilities");
    let probs: Vec<f32> = against_own
        .iter()
        .zip(&generated[0].probs)
        .map(|(o, g)| (o + g) / 2.0)
        .collect();
    let intensity = predictor
        .model
        .sidecar
        .intensity_scale_for(true)
        .intensity(distance.double_value(&[0])) as f32;
    for (a, b) in with_own[0].probs.iter().zip(&probs) {
        assert!((a - b).abs() < 0.02, "{:?} vs {probs:?}", with_own[0].probs);
    }
    assert!(
        (with_own[0].intensity - intensity).abs() < 0.05,
        "{} vs {intensity}",
        with_own[0].intensity
    );
}

#[test]
fn the_pipeline_applies_an_own_reference_sent_while_running() {
    let folder = portrait_folder();
    let predictor = shipped_predictor();
    let own = aligned_faces(1).remove(0);
    let mut pipeline = Pipeline::start(
        dgcn::capture::open_source(
            &dgcn::capture::SourceSpec::Path(folder),
            dgcn::capture::VideoOptions::default(),
        )
        .expect("source"),
        util::detector(),
        predictor,
        PipelineConfig {
            lossless: true,
            ..Default::default()
        },
    )
    .expect("starts");
    let first = pipeline
        .results
        .recv_timeout(Duration::from_secs(60))
        .expect("a result");
    assert!(!first.faces[0].prediction.own_reference());
    pipeline
        .control
        .try_send(dgcn::pipeline::Control::OwnReference(Some(
            dgcn::pipeline::OwnReference {
                face: own.clone(),
                track: first.faces[0].detected.track,
            },
        )))
        .expect("control accepted");
    let rest: Vec<_> = pipeline.results.iter().collect();
    let last = rest.last().expect("more frames");
    assert!(last.faces[0].prediction.own_reference());
    assert_eq!(last.faces[0].prediction.reference, own);
    // The face sent is shown; the track's crops on the next frames joined it (up to the default
    // number of frames).
    let crops = last.faces[0]
        .prediction
        .own_crops
        .as_ref()
        .expect("the own face's frames");
    assert_eq!(crops[0], own);
    let wanted = usize::from(dgcn::pipeline::DEFAULT_OWN_FRAMES).min(rest.len());
    assert_eq!(
        crops.len(),
        wanted,
        "{} results after the first",
        rest.len()
    );
    pipeline.stop();
}

/// One photo shown as `frames` frames, as a camera shows a face that holds still.
struct StillPhoto {
    rgb: image::RgbImage,
    frames: usize,
}

impl dgcn::capture::FrameSource for StillPhoto {
    fn next_frame(
        &mut self,
        _stop: &std::sync::atomic::AtomicBool,
    ) -> Result<Option<dgcn::capture::SourceFrame>, dgcn::capture::CaptureError> {
        if self.frames == 0 {
            return Ok(None);
        }
        self.frames -= 1;
        Ok(Some(dgcn::capture::SourceFrame {
            rgb: self.rgb.clone(),
            time_s: None,
        }))
    }
    fn describe(&self) -> String {
        "still photo".into()
    }
}

/// For each frame of `photo` shown ten times through the pipeline with the own neutral face
/// taken by itself (the app's default rule; the model runs on every frame): whether the face was
/// compared with an own neutral face, and how many frames that face was taken from.
fn own_taken_by_itself(photo: &str) -> Vec<Option<usize>> {
    let rgb = image::load_from_memory(&util::archive_file(DatasetKind::Tfeid, photo))
        .expect("photo decodes")
        .to_rgb8();
    let pipeline = Pipeline::start(
        Box::new(StillPhoto { rgb, frames: 10 }),
        util::detector(),
        shipped_predictor(),
        PipelineConfig {
            lossless: true,
            track: dgcn::face::TrackConfig {
                still_max: 0,
                ..Default::default()
            },
            auto_neutral: Some(dgcn::pipeline::AutoNeutralRule::with_frames(8)),
            ..Default::default()
        },
    )
    .expect("starts");
    let taken: Vec<Option<usize>> = pipeline
        .results
        .iter()
        .map(|r| {
            assert_eq!(r.faces.len(), 1, "{photo}: one face per frame");
            r.faces[0].prediction.own_crops.as_ref().map(|c| c.len())
        })
        .collect();
    assert_eq!(taken.len(), 10, "{photo}: every frame delivered");
    taken
}

/// The own neutral face taken by itself (`PipelineConfig::auto_neutral`): a TFEID performer's
/// neutral photo held before the camera becomes their own neutral face after the model has
/// called it neutral on eight runs in a row, from those eight frames; the same performer's
/// expressive photos, held as long, never do.
#[test]
fn a_still_neutral_face_becomes_its_own_reference_by_itself_and_an_expression_does_not() {
    let neutral = own_taken_by_itself("0301a01.jpg");
    eprintln!("neutral photo: {neutral:?}");
    assert!(neutral[..8].iter().all(Option::is_none), "{neutral:?}");
    assert!(neutral[8..].iter().all(|t| *t == Some(8)), "{neutral:?}");
    for photo in [
        "0311b03.jpg",
        "0311c01.jpg",
        "0311d11.jpg",
        "0311e11.jpg",
        "0311f02.jpg",
        "0311g04.jpg",
    ] {
        let taken = own_taken_by_itself(photo);
        assert!(taken.iter().all(Option::is_none), "{photo}: {taken:?}");
    }
}

/// The labelled clip's first `n` frames through the pipeline with `track`, every frame kept.
fn clip_results(n: u64, track: dgcn::face::TrackConfig) -> Vec<dgcn::frame::FrameResult> {
    let clip = util::shared_dir().join("clips/synth_tfeid_s01_expressions.mp4");
    let source = dgcn::capture::open_source(
        &dgcn::capture::SourceSpec::Path(clip),
        dgcn::capture::VideoOptions::default(),
    )
    .expect("clip opens");
    let predictor = shipped_predictor();
    let pipeline = Pipeline::start(
        source,
        util::detector(),
        predictor,
        PipelineConfig {
            max_frames: Some(n),
            lossless: true,
            track,
            ..Default::default()
        },
    )
    .expect("starts");
    pipeline.results.iter().collect()
}

/// A face that has not moved keeps its landmarks and the model's result for a few frames: the
/// held results are the previous frame's, they give the label the unheld run gives on nearly
/// every frame, and they differ from it by little more than the unheld run's own frame-to-frame
/// jitter (BlazeFace's landmarks move by a pixel or so between frames of a still face).
#[test]
fn still_faces_hold_the_detection_and_the_model_result() {
    use dgcn::face::TrackConfig;
    let n = 150;
    let held = clip_results(n, TrackConfig::default());
    let every = clip_results(
        n,
        TrackConfig {
            still_max: 0,
            ..TrackConfig::default()
        },
    );
    assert_eq!((held.len(), every.len()), (n as usize, n as usize));
    assert!(every.iter().all(|r| !r.model_held));
    let probs = |r: &dgcn::frame::FrameResult| {
        assert_eq!(r.faces.len(), 1, "frame {}", r.frame.seq);
        r.faces[0].prediction.probs
    };
    let max_diff = |a: [f32; 8], b: [f32; 8]| {
        a.iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    // On each held frame: how far the held result is from the unheld run's, and how far the
    // unheld run itself moved from the frame before (the network's own jitter on that frame).
    let mut held_diffs = Vec::new();
    let mut jitter_there = Vec::new();
    // (frames whose label differs from the unheld run's, frames) among the held frames and
    // among those the model ran on (after a hold its landmarks come from another crop).
    let (mut differ_held, mut differ_ran) = ((0usize, 0usize), (0usize, 0usize));
    for (k, (a, b)) in held.iter().zip(&every).enumerate() {
        if a.model_held {
            assert!(a.faces[0].detected.held, "frame {k}");
            assert_eq!(probs(a), probs(&held[k - 1]), "frame {k}");
            held_diffs.push(max_diff(probs(a), probs(b)));
            // The held result was computed on the last frame the model ran on (up to
            // `still_max` frames back): the unheld run's own change since then.
            let ran = (0..k).rev().find(|&j| !held[j].model_held).unwrap_or(0);
            jitter_there.push(max_diff(probs(&every[ran]), probs(b)));
        }
        let same = a.faces[0].prediction.label == b.faces[0].prediction.label;
        let tally = if a.model_held {
            &mut differ_held
        } else {
            &mut differ_ran
        };
        tally.0 += usize::from(!same);
        tally.1 += 1;
    }
    // The clip starts with two seconds of a still neutral face.
    assert!(
        held_diffs.len() >= 20,
        "model held on {} of {n} frames",
        held_diffs.len()
    );
    let same_label = n as usize - differ_held.0 - differ_ran.0;
    let jitter: Vec<f32> = every
        .windows(2)
        .map(|w| max_diff(probs(&w[0]), probs(&w[1])))
        .collect();
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len().max(1) as f32;
    eprintln!(
        "held {} of {n}; same label {same_label}; held vs unheld {:.3}; unheld jitter on those \
         frames {:.3}, on all frames {:.3}",
        held_diffs.len(),
        mean(&held_diffs),
        mean(&jitter_there),
        mean(&jitter)
    );
    // The unheld run's own label changes from one frame to the next: a frame near a class
    // boundary flips with any pixel of change, held or not.
    let label = |r: &dgcn::frame::FrameResult| r.faces[0].prediction.label;
    let flips = every
        .windows(2)
        .filter(|w| label(&w[0]) != label(&w[1]))
        .count();
    let flip_rate = flips as f64 / (n - 1) as f64;
    eprintln!(
        "unheld run: label changes on {flips} of {} frame pairs",
        n - 1
    );
    // A held frame shows the label of a frame up to `still_max` back, so it can differ from the
    // unheld run about as often as the network's label changes from one frame to the next: the
    // labels may differ on at most that share of the held frames (and on 5 % of them whatever
    // the network does). A frame the model ran on right after a hold was detected in a crop
    // around the held box, so its landmarks, too, are a pixel or so off the unheld run's: the
    // same share bounds those. (Until 2026-11-29 evening all 150 frames were counted against
    // the held frames' bound.) Measured with the shipped weights (bf16): 12 of 72 held and 10
    // of 78 other frames differ, 43 label changes in 149 frame pairs (bounds 20.8 and 22.5); the
    // weights before, same code: 10 and 9, 52 label changes.
    eprintln!(
        "labels differ from the unheld run on {} of {} held frames and {} of {} others",
        differ_held.0, differ_held.1, differ_ran.0, differ_ran.1
    );
    for (what, (differ, frames)) in [("held", differ_held), ("other", differ_ran)] {
        let bound = (0.05 * frames as f64).max(flip_rate * frames as f64);
        assert!(
            differ as f64 <= bound,
            "{differ} of {frames} {what} frames with another label than the unheld run's \
             (bound {bound:.1})"
        );
    }
    // Measured on this clip: with the weights of 2026-11-29 morning the held results were
    // closer to the unheld ones than the unheld run's mean frame-to-frame change; the less
    // regularised narrow network moved more with a pixel of landmark shift (0.134 against its
    // 0.130), and the shipped wide encoder 0.138 against 0.177, with the labelled clip's agreement
    // the same with the hold and without (README → Speed). The bound allows the hold 10 % more
    // than the network's own jitter.
    assert!(
        mean(&held_diffs) <= 1.1 * mean(&jitter),
        "held results differ by {:.3} on average, the unheld run's frame-to-frame change is {:.3}",
        mean(&held_diffs),
        mean(&jitter)
    );
}

/// bf16 inference (the default on a CPU with native bf16) gives the f32 network's answers on
/// real faces: the same label on all but near-ties, probabilities, intensity and reference
/// within a few hundredths.
#[test]
fn bf16_inference_agrees_with_f32_on_real_faces() {
    use dgcn::device::Precision;
    let faces = aligned_faces(12);
    let load = |p| Predictor::load(&shipped_weights(), tch::Device::Cpu, p).expect("weights");
    let (full, half) = (load(Precision::F32), load(Precision::Bf16));
    let kind_of = |p: &Predictor| p.model.vs.trainable_variables().first().map(|v| v.kind());
    assert_eq!(kind_of(&full), Some(tch::Kind::Float));
    assert_eq!(kind_of(&half), Some(tch::Kind::BFloat16));
    let a = full.predict(&faces, None).expect("f32 predicts");
    let b = half.predict(&faces, None).expect("bf16 predicts");
    let same = a.iter().zip(&b).filter(|(x, y)| x.label == y.label).count();
    let mut worst = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(&b) {
        for (p, q) in x.probs.iter().zip(&y.probs) {
            worst.0 = worst.0.max((p - q).abs());
        }
        worst.1 = worst.1.max((x.intensity - y.intensity).abs());
        let px: f32 = x
            .generated
            .pixels
            .iter()
            .zip(&y.generated.pixels)
            .map(|(p, q)| (p - q).abs())
            .sum::<f32>()
            / x.generated.pixels.len() as f32;
        worst.2 = worst.2.max(px);
    }
    eprintln!("bf16 vs f32 on 12 faces: {same} same labels, worst |Δp| {:.4}, |Δintensity| {:.4}, mean |Δpixel| {:.4}", worst.0, worst.1, worst.2);
    assert!(same >= 11, "{same} of 12 labels agree");
    assert!(
        worst.0 < 0.08 && worst.1 < 0.08 && worst.2 < 0.01,
        "{worst:?}"
    );
}

/// `n` webcam-like frames of a prepared 64×64 face ([`dgcn::learn::auto_neutral::webcam_frames`]).
fn jittered(face: &[u8], n: usize, rng: &mut impl rand::Rng) -> Vec<dgcn::face::AlignedFace> {
    dgcn::learn::auto_neutral::webcam_frames(&dgcn::face::AlignedFace::from_prepared(face), n, rng)
        .expect("jittered frames")
}

/// The own neutral face over the model's next frames (`PipelineConfig::own_frames`) against one
/// frame: a webcam's frames of a still face jitter (simulated here on TFEID photos), and one
/// frame's jitter in the reference reads as expression. Every TFEID performer with two neutral
/// photos: the reference is taken from jittered frames of one photo; the other neutral photo
/// (jittered the same way, never among the reference's frames) must read lower with eight frames
/// than with one, and the performer's expressions must still read high.
#[test]
fn an_own_neutral_face_over_several_frames_reads_another_neutral_photo_lower() {
    use dgcn::labels::Expression;
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let tfeid = util::prepared(DatasetKind::Tfeid);
    let predictor = shipped_predictor();
    // (intensity, label right) of a face against an own face.
    let with_own = |query: &(Expression, dgcn::face::AlignedFace), own: &dgcn::infer::OwnFace| {
        let p = predictor
            .predict(std::slice::from_ref(&query.1), Some((0, own)))
            .expect("predicts");
        assert!(p[0].own_reference());
        (p[0].intensity as f64, p[0].label == query.0)
    };
    let mut subjects: Vec<u32> = tfeid.samples.iter().filter_map(|s| s.subject).collect();
    subjects.sort_unstable();
    subjects.dedup();
    // [one frame, eight frames] → intensities of other neutral photos, of expressive photos.
    let mut neutral = [Vec::new(), Vec::new()];
    let mut expressive = [Vec::new(), Vec::new()];
    // Labels right with the eight-frame own face, and with the generated reference alone.
    let (mut right_own, mut right_generated, mut faces) = (0, 0, 0);
    for subject in subjects {
        let of = |neutral: bool| -> Vec<usize> {
            (0..tfeid.len())
                .filter(|&i| tfeid.samples[i].subject == Some(subject))
                .filter(|&i| (tfeid.samples[i].label == Expression::Neutral) == neutral)
                .collect()
        };
        let (neutrals, expressions) = (of(true), of(false));
        if neutrals.len() < 2 {
            continue;
        }
        let frames = jittered(tfeid.face(neutrals[0]), 8, &mut rng);
        let queries: Vec<_> = jittered(tfeid.face(neutrals[1]), 4, &mut rng)
            .into_iter()
            .map(|f| (Expression::Neutral, f))
            .collect();
        let shown: Vec<_> = expressions
            .iter()
            .flat_map(|&e| {
                let label = tfeid.samples[e].label;
                jittered(tfeid.face(e), 1, &mut rng)
                    .into_iter()
                    .map(move |f| (label, f))
            })
            .collect();
        for (slot, k) in [1usize, 8].into_iter().enumerate() {
            let own = predictor.own_face(frames[..k].to_vec()).expect("own face");
            assert_eq!(*own.shown(), frames[0]);
            let (n, e): (Vec<_>, Vec<_>) = (
                queries.iter().map(|q| with_own(q, &own)).collect(),
                shown.iter().map(|q| with_own(q, &own)).collect(),
            );
            if k == 8 {
                right_own += n.iter().chain(&e).filter(|(_, right)| *right).count();
                faces += n.len() + e.len();
            }
            neutral[slot].extend(n.into_iter().map(|(i, _)| i));
            expressive[slot].extend(e.into_iter().map(|(i, _)| i));
        }
        for (truth, face) in queries.iter().chain(&shown) {
            let p = predictor
                .predict(std::slice::from_ref(face), None)
                .expect("predicts");
            right_generated += (p[0].label == *truth) as usize;
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (n1, n8) = (mean(&neutral[0]), mean(&neutral[1]));
    let (e1, e8) = (mean(&expressive[0]), mean(&expressive[1]));
    eprintln!(
        "own neutral face, {} other neutral / {} expressive crops: 1 frame {n1:.3} / {e1:.3}, \
         8 frames {n8:.3} / {e8:.3}; labels right {right_own} of {faces} with the own face, \
         {right_generated} with the generated reference alone",
        neutral[0].len(),
        expressive[0].len()
    );
    // The own face must not cost labels beyond 2 %: the classifier, trained with generated
    // references, averages both comparisons (with the own face's alone: 1,033 against 1,075,
    // 3.9 % fewer, 2026-11-30). Measured with the shipped weights: 1,091 against 1,092 on crops
    // point-sampled as the weights' TFEID faces were; 1,064 against 1,081 (1.6 % fewer) on the
    // smoother footprint-averaged crops of 2026-12-02, which these weights never trained on;
    // 1,063 against 1,077 with the sidecar of session 28 (noise smoothing on, calibration refitted).
    assert!(
        right_own * 100 >= right_generated * 98,
        "labels right: {right_own} with the own face, {right_generated} without"
    );
    assert!(neutral[0].len() >= 40, "{} neutral crops", neutral[0].len());
    // A share, not a fixed step: each network's intensity scale is its own (measured: 0.173 vs
    // 0.282 with `e8185605…`, 0.136 vs 0.235 with `860e60da…`, both about 40 % lower; 0.226 vs
    // 0.320, 29 % lower, on the crops of 2026-12-02 with the own scale refitted for them).
    assert!(
        n8 < 0.75 * n1,
        "eight frames {n8:.3} vs one frame {n1:.3} on other neutral photos"
    );
    assert!(
        e8 > 0.5 && e8 > n8 + 0.3,
        "expressive {e8:.3}, neutral {n8:.3}"
    );
}

/// The rule for taking the own neutral face by itself, measured as `dgcn eval
/// --auto-neutral-check` does (each face as 8 webcam-like frames): on TFEID (at most 40 faces a
/// class; performers the shipped weights trained on) it takes most neutral faces and almost no
/// expressive ones. FER+ Valid's figures are in the README (The live app).
#[test]
fn the_auto_neutral_rule_takes_neutral_faces_and_leaves_expressions() {
    let tfeid = util::prepared(DatasetKind::Tfeid).truncated_per_class(40);
    let faces = (0..tfeid.len()).map(|i| {
        (
            tfeid.samples[i].label,
            dgcn::face::AlignedFace::from_prepared(tfeid.face(i)),
        )
    });
    let rule = dgcn::pipeline::AutoNeutralRule::default();
    let check =
        dgcn::learn::auto_neutral::check(&shipped_predictor(), faces, rule, 17).expect("scores");
    eprintln!("{}", check.markdown());
    let neutral = dgcn::labels::Expression::Neutral.index();
    assert_eq!(check.faces[neutral], 40);
    assert_eq!(check.faces.iter().sum::<u64>(), tfeid.len() as u64);
    // Measured 2026-12-01 with the shipped weights: 30 of 40 neutral faces taken, none of the
    // 240 expressive ones (a calm lab face runs 0.8–0.95 on this calibrated network, so some miss
    // 0.8 on one of their eight frames); the bounds leave room for another training.
    assert!(check.neutral_taken() >= 0.6, "{check:?}");
    assert!(check.expressive_taken() <= 0.05, "{check:?}");
}
