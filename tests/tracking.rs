//! Face tracking between whole-frame searches, on real frames of the labelled clip: the tracked
//! (and held) boxes and landmarks must match what searching every whole frame finds. And `dgcn bench` runs
//! end to end and reports every stage.
mod util;

use std::path::Path;
use std::process::Command;

use dgcn::capture::threaded::Producer;
use dgcn::capture::video::VideoProducer;
use dgcn::capture::VideoOptions;
use dgcn::face::detect::iou;
use dgcn::face::{FaceTracker, TrackConfig};

#[test]
fn tracked_faces_match_whole_frame_detection() {
    let clip = util::shared_dir().join("clips/synth_tfeid_s01_expressions.mp4");
    let mut video = VideoProducer::open(&clip, VideoOptions::default()).expect("clip opens");
    let frames: Vec<_> = (0..60)
        .map(|_| video.produce().expect("decodes").expect("a frame").rgb)
        .collect();
    let mut tracked = FaceTracker::new(util::detector(), TrackConfig::default());
    let mut every = FaceTracker::new(util::detector(), TrackConfig::every_frame());
    let mut compared = 0;
    for (i, f) in frames.iter().enumerate() {
        let a = tracked.detect(f).expect("tracks");
        let b = every.detect(f).expect("detects");
        assert_eq!(a.len(), b.len(), "frame {i}: faces");
        for (a, b) in a.iter().zip(&b) {
            let overlap = iou(&a.bbox, &b.bbox);
            assert!(overlap > 0.8, "frame {i}: IoU {overlap:.2}");
            let eye_dist = (b.landmarks[1][0] - b.landmarks[0][0]).abs();
            for (p, q) in a.landmarks.iter().zip(&b.landmarks) {
                let d = ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt();
                assert!(
                    d < 0.1 * eye_dist,
                    "frame {i}: landmark off by {d:.1} px\n{a:?}\n{b:?}"
                );
            }
            compared += 1;
        }
    }
    assert!(compared >= 58, "{compared} faces compared");
    // The clip opens on a still face: most tracked frames hold the landmarks without a detector
    // run (at most `still_max` in a row), and the comparison above covered them.
    assert!(
        tracked.still_reused >= 20,
        "{} of 60 frames held",
        tracked.still_reused
    );
    // One person in view all along: one track id, however often the whole frame was searched.
    let mut tracker = FaceTracker::new(util::detector(), TrackConfig::default());
    let ids: std::collections::BTreeSet<u64> = frames
        .iter()
        .flat_map(|f| tracker.detect(f).expect("tracks"))
        .map(|f| f.track)
        .collect();
    assert_eq!(ids.len(), 1, "track ids {ids:?}");
    assert!(!ids.contains(&0), "tracked faces get an id");
    assert_eq!(every.full_searches, 60);
    assert_eq!(
        tracked.full_searches, 6,
        "the whole frame searched every 10th frame only"
    );
}

#[test]
fn an_empty_view_is_searched_less_often_and_a_face_that_appears_is_found_soon() {
    let clip = util::shared_dir().join("clips/synth_tfeid_s01_expressions.mp4");
    let mut video = VideoProducer::open(&clip, VideoOptions::default()).expect("clip opens");
    let face = video.produce().expect("decodes").expect("a frame").rgb;
    // A camera facing a grey wall with sensor noise.
    let mut wall = image::RgbImage::from_pixel(face.width(), face.height(), image::Rgb([128; 3]));
    for (i, p) in wall.pixels_mut().enumerate() {
        let n = (i.wrapping_mul(2_654_435_761) >> 13) % 9;
        p.0 = [120 + n as u8; 3];
    }
    let config = TrackConfig::default();
    let mut tracker = FaceTracker::new(util::detector(), config);
    for _ in 0..90 {
        assert!(tracker.detect(&wall).expect("detects").is_empty());
    }
    // Every frame searched until `idle_after` empty frames, then every `idle_every`-th.
    let idle = 90 - config.idle_after as u64;
    let expected = config.idle_after as u64 + idle / config.idle_every as u64;
    assert!(
        (expected..=expected + 1).contains(&tracker.full_searches),
        "{} whole-frame searches in 90 empty frames (expected about {expected})",
        tracker.full_searches
    );
    // The face walks in: found within `idle_every` frames, then followed on every frame.
    let found_after = (1..=config.idle_every)
        .find(|_| !tracker.detect(&face).expect("detects").is_empty())
        .expect("the face is found");
    assert!(found_after <= config.idle_every);
    let id = tracker.detect(&face).expect("detects")[0].track;
    for _ in 0..5 {
        let found = tracker.detect(&face).expect("detects");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].track, id, "the same face keeps its id");
    }
    // Missed for a few frames, the face comes back under its id; gone for seconds, it is new.
    for _ in 0..3 {
        tracker.detect(&wall).expect("detects");
    }
    assert_eq!(tracker.detect(&face).expect("detects")[0].track, id);
    for _ in 0..60 {
        tracker.detect(&wall).expect("detects");
    }
    let again = (0..=config.idle_every)
        .find_map(|_| {
            tracker
                .detect(&face)
                .expect("detects")
                .first()
                .map(|f| f.track)
        })
        .expect("found again");
    assert_ne!(
        again, id,
        "a face seen again after two seconds is a new track"
    );
}

/// The detector flushes the model's subnormal weights to zero as it loads it (face::subnormal;
/// on an Intel CPU a whole frame 29 ms instead of 54 in `dgcn bench`): the downloaded model has
/// them, and the flushed model finds the same faces, bit for bit, as the file as it is.
#[test]
fn flushing_subnormal_weights_changes_no_detection() {
    let mut bytes = std::fs::read(util::blazeface_path()).expect("model file");
    let flushed_in_file =
        dgcn::face::subnormal::flush_subnormal_weights(&mut bytes).expect("reads");
    assert!(
        flushed_in_file > 1000,
        "{flushed_in_file} subnormal weights in the downloaded model"
    );
    assert_eq!(
        dgcn::face::subnormal::flush_subnormal_weights(&mut bytes),
        Ok(0)
    );

    let detector = |keep_subnormal_weights| {
        dgcn::face::Detector::new(&dgcn::face::DetectorConfig {
            model_path: Some(util::blazeface_path()),
            keep_subnormal_weights,
            ..Default::default()
        })
        .expect("detector")
    };
    let (as_is, flushed) = (detector(true), detector(false));
    assert_eq!(as_is.subnormal_weights_flushed(), 0);
    assert_eq!(flushed.subnormal_weights_flushed(), flushed_in_file);
    let clip = util::shared_dir().join("clips/synth_tfeid_s01_expressions.mp4");
    let mut video = VideoProducer::open(&clip, VideoOptions::default()).expect("clip opens");
    let mut faces = 0;
    for i in 0..30 {
        let frame = video.produce().expect("decodes").expect("a frame").rgb;
        let a = as_is.detect(&frame).expect("detects");
        let b = flushed.detect(&frame).expect("detects");
        assert_eq!(a, b, "frame {i}");
        // Crops as the tracker sees them, which the heads' slow convolutions dominate less.
        if let Some(face) = b.first() {
            let [x, y, w, h] = face.bbox.map(|v| v.max(0.0) as u32);
            let crop = image::imageops::crop_imm(
                &frame,
                x.saturating_sub(w / 2),
                y.saturating_sub(h / 2),
                2 * w,
                2 * h,
            )
            .to_image();
            assert_eq!(
                as_is.detect(&crop).expect("detects"),
                flushed.detect(&crop).expect("detects"),
                "frame {i}, crop"
            );
        }
        faces += b.len();
    }
    assert!(faces >= 29, "{faces} faces in 30 frames");
}

#[test]
fn bench_reports_every_stage() {
    let out = util::temp_dir("bench").join("bench.md");
    util::run_ok(
        Command::new(env!("CARGO_BIN_EXE_dgcn"))
            .env("DGCN_LOG", "error")
            .args([
                "bench",
                "--frames",
                "5",
                "--repeats",
                "1",
                "--pipeline-frames",
                "30",
            ])
            .arg("--detector")
            .arg(util::blazeface_path())
            .arg("--weights")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/gcnet.safetensors"))
            .arg("--clip")
            .arg(util::shared_dir().join("clips/synth_tfeid_s01_expressions.mp4"))
            .arg("--out")
            .arg(&out),
    );
    let report = std::fs::read_to_string(&out).expect("report");
    for stage in [
        "| decode",
        "| detect BlazeFace-640 | whole frame",
        "| detect BlazeFace-640 | tracked",
        "| detect BlazeFace-640 | default tracking; weights as downloaded, subnormal ones kept",
        "| align",
        "| GCNet forward (G + encoder + classifier) | cpu, f32, batch 1",
        "| GCNet forward (G + encoder + classifier) | cpu, f32, batch 4",
        "| pipeline, tracking, detection and model every frame | as fast as possible: 30 frames",
        "| pipeline, tracking, still faces held (default) | as fast as possible: 30 frames",
        "ms CPU per frame, model held on",
        "peak resident memory",
    ] {
        assert!(report.contains(stage), "missing {stage:?} in\n{report}");
    }
    // bf16 rows beside f32 where this CPU computes bf16 natively (the default there).
    assert_eq!(
        report.contains("| cpu, bf16, batch 1"),
        dgcn::device::cpu_has_native_bf16()
    );
    // Every timing is a positive number.
    for line in report
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| stage"))
    {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let median: f64 = cells[3].parse().expect("median");
        assert!(median > 0.0 && median.is_finite(), "{line}");
    }
}
