//! Video sources and the live pipeline on the clips in ../shared/clips: decoding, timestamps,
//! looping, the demo fallback without a camera, label agreement on the labelled synthetic clip.
mod util;

use std::path::{Path, PathBuf};

fn clip(name: &str) -> PathBuf {
    util::shared_dir().join("clips").join(name)
}

fn run_headless(args: &[&str], out: &Path) -> (Vec<serde_json::Value>, String) {
    let output = util::dgcn()
        .args(["live", "--headless", "--out"])
        .arg(out)
        .args(args)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "{stderr}");
    let lines = std::fs::read_to_string(out)
        .expect("results")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    (lines, stderr)
}

fn top_label(v: &serde_json::Value) -> Option<String> {
    v["faces"]
        .as_array()
        .and_then(|f| f.first())
        .and_then(|f| f["label"].as_str())
        .map(String::from)
}

/// Frames at least `margin` frames away from any change of label.
fn stable_frames(labels: &[String], margin: usize) -> Vec<usize> {
    (0..labels.len())
        .filter(|&i| {
            let lo = i.saturating_sub(margin);
            let hi = (i + margin).min(labels.len() - 1);
            labels[lo..=hi].iter().all(|l| *l == labels[i])
        })
        .collect()
}

/// The labelled clip's rows: frame, time (s), label.
fn clip_labels() -> Vec<(u64, f64, String)> {
    let csv_path = clip("synth_tfeid_s01_expressions_labels.csv");
    let mut reader = csv::Reader::from_path(&csv_path).expect("labels csv");
    reader.deserialize().map(|r| r.expect("row")).collect()
}

/// (time, compared with the own neutral face) of each frame's first face.
fn own_reference_by_frame(lines: &[serde_json::Value]) -> Vec<(f64, bool)> {
    lines
        .iter()
        .filter_map(|v| {
            let face = v["faces"].get(0)?;
            Some((v["time_s"].as_f64()?, face["own_reference"].as_bool()?))
        })
        .collect()
}

/// Mean intensity of the stable frames labelled `want` whose first face was compared with the own
/// neutral face (at least five of them).
fn mean_own_intensity(lines: &[serde_json::Value], labels: &[String], want: &str) -> f64 {
    let v: Vec<f64> = stable_frames(labels, 10)
        .into_iter()
        .filter(|&i| labels[i] == want)
        .filter_map(|i| {
            let face = lines.get(i)?["faces"].get(0)?;
            face["own_reference"].as_bool()?.then_some(())?;
            face["intensity"].as_f64()
        })
        .collect();
    assert!(
        v.len() >= 5,
        "{} stable {want} frames with the own face",
        v.len()
    );
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn headless_run_on_the_labelled_clip_agrees_with_its_labels() {
    let rows = clip_labels();
    let out = util::temp_dir("synth").join("results.jsonl");
    let source = clip("synth_tfeid_s01_expressions.mp4");
    let (lines, _) = run_headless(&["--source", source.to_str().expect("utf-8")], &out);

    // Every frame of the file, in order, at the file's timestamps.
    assert_eq!(lines.len(), rows.len());
    for (v, (frame, time_s, _)) in lines.iter().zip(&rows) {
        assert_eq!(v["frame"].as_u64(), Some(*frame));
        let t = v["time_s"].as_f64().expect("time_s");
        assert!((t - time_s).abs() < 0.002, "frame {frame}: {t} vs {time_s}");
    }
    let with_face = lines.iter().filter(|v| top_label(v).is_some()).count();
    assert!(
        with_face * 100 >= lines.len() * 99,
        "a face in {with_face} of {} frames",
        lines.len()
    );

    let labels: Vec<String> = rows.iter().map(|r| r.2.clone()).collect();
    let stable = stable_frames(&labels, 10);
    let agree = stable
        .iter()
        .filter(|&&i| top_label(&lines[i]).as_deref() == Some(labels[i].as_str()))
        .count();
    let agreement = agree as f64 / stable.len() as f64;
    let neutral: Vec<_> = stable.iter().filter(|&&i| labels[i] == "neutral").collect();
    let neutral_ok = neutral
        .iter()
        .filter(|&&&i| top_label(&lines[i]).as_deref() == Some("neutral"))
        .count();
    eprintln!(
        "label agreement on {} frames ≥ 10 frames from a label change: {:.1} % (neutral {}/{})",
        stable.len(),
        agreement * 100.0,
        neutral_ok,
        neutral.len()
    );
    assert!(stable.len() >= 100, "{} stable frames", stable.len());

    // The clip opens on a calm neutral face and returns to it between expressions: by default it
    // becomes the person's own neutral face by itself on a neutral frame within its first two
    // neutral stretches (0.67 s in bf16, 3.07 s in f32: its neutral frames run 0.81–0.93, close
    // to the rule's 0.8) and stays so; against it, the intensity reads the stable neutral frames
    // low and each expression after it higher.
    let own = own_reference_by_frame(&lines);
    let first = own
        .iter()
        .position(|(_, o)| *o)
        .expect("the own neutral face is taken by itself");
    let taken_at = own[first].0;
    let frame = lines
        .iter()
        .position(|v| v["time_s"].as_f64() == Some(taken_at))
        .expect("frame");
    assert!(
        taken_at <= 3.7 && labels[frame] == "neutral",
        "taken at {taken_at} s, on a {} frame",
        labels[frame]
    );
    assert!(own[first..].iter().all(|(_, o)| *o));
    let calm = mean_own_intensity(&lines, &labels, "neutral");
    eprintln!(
        "own neutral face taken by itself at {taken_at:.2} s; intensity: neutral frames {calm:.3}"
    );
    assert!(calm < 0.3, "neutral frames {calm:.3}");
    for expression in ["surprise", "sad", "angry", "disgust", "fear"] {
        let e = mean_own_intensity(&lines, &labels, expression);
        eprintln!("  {expression} {e:.3}");
        assert!(
            e > calm + 0.3,
            "{expression} {e:.3}, neutral frames {calm:.3}"
        );
    }
    // Measured with the shipped weights (860e60da…, 2026-12-01): with the defaults (tracking, the
    // still-face hold, the own neutral face taken by itself) 89.3 % in f32 and 84.0 % in bf16,
    // 82.7 % with the generated reference throughout (either format): neutral, happy, disgust and
    // fear right, surprise taken for fear, sad and angry partly for fear and disgust. The issue
    // aims at 90 %; this bound guards
    // against regressions of the pipeline (decoding, detection, tracking, alignment, model
    // wiring) and of the weights.
    assert!(agreement >= 0.66, "agreement {agreement:.3}");
}

/// `--no-auto-neutral`: the generated reference throughout, as before the own face was taken by
/// itself.
#[test]
fn without_auto_neutral_the_generated_reference_stays() {
    let out = util::temp_dir("no-auto").join("results.jsonl");
    let source = clip("synth_tfeid_s01_expressions.mp4");
    let args = [
        "--source",
        source.to_str().expect("utf-8"),
        "--max-frames",
        "40",
        "--no-auto-neutral",
    ];
    let (lines, _) = run_headless(&args, &out);
    let faces: Vec<&serde_json::Value> = lines.iter().filter_map(|v| v["faces"].get(0)).collect();
    assert!(
        faces.len() >= 36,
        "{} of 40 frames with a face",
        faces.len()
    );
    assert!(faces
        .iter()
        .all(|f| f["own_reference"].as_bool() == Some(false)));
}

#[test]
fn no_camera_falls_back_to_the_demo_clip() {
    if Path::new("/dev/video0").exists() {
        eprintln!("skipped: this machine has a camera");
        return;
    }
    let out = util::temp_dir("demo").join("results.jsonl");
    let output = util::dgcn()
        .env("DGCN_DEMO_CLIP", clip("carphone_pristine.mp4"))
        .args(["live", "--headless", "--max-frames", "40", "--out"])
        .arg(&out)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("No camera found"), "{stderr}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .expect("results")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(lines.len(), 40);
    let with_face = lines.iter().filter(|v| top_label(v).is_some()).count();
    assert!(
        with_face >= 36,
        "face found in {with_face}/40 frames of carphone"
    );
}

#[test]
fn a_looped_video_keeps_going_with_increasing_time() {
    let out = util::temp_dir("loop").join("results.jsonl");
    let source = clip("carphone_pristine.mp4");
    let (lines, _) = run_headless(
        &[
            "--source",
            source.to_str().expect("utf-8"),
            "--loop",
            "--max-frames",
            "150",
        ],
        &out,
    );
    assert_eq!(lines.len(), 150, "the 120-frame clip played past its end");
    let times: Vec<f64> = lines.iter().filter_map(|v| v["time_s"].as_f64()).collect();
    assert!(times.windows(2).all(|w| w[1] > w[0]), "time goes forward");
    assert!(times[149] > times[119]);
}

#[test]
fn a_corrupt_or_missing_video_is_a_clear_error() {
    let dir = util::temp_dir("badvideo");
    let bad = dir.join("broken.mp4");
    // The first 4 KiB of a real file: a header with no movie in it.
    let bytes = std::fs::read(clip("carphone_pristine.mp4")).expect("clip");
    std::fs::write(&bad, &bytes[..4096]).expect("write");
    for path in [bad, dir.join("absent.mp4")] {
        let (last, err) = source_error(&path);
        assert!(
            last.starts_with("error: video") && last.contains(&*path.to_string_lossy()),
            "{err}"
        );
    }
}

/// Runs `dgcn live --headless --source PATH` on a source that cannot be read: it must exit with
/// status 1 without a panic. Returns the last line of stderr and the whole of it.
fn source_error(path: &Path) -> (String, String) {
    let out = util::dgcn()
        .args(["live", "--headless", "--source"])
        .arg(path)
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    (util::last_stderr_line(&out), err)
}

/// `--own-neutral-at`: from the first face at or after that time, the face is compared with
/// itself as it was then (the window's "Use my neutral face"), said in each face's JSON, and its
/// intensity is read on the own-reference scale: the clip's neutral frames low, its happy ones
/// high (on the generated reference's scale every one of them read ≥ 0.9); a negative time is a
/// clear error.
#[test]
fn own_neutral_face_from_a_given_time_replaces_the_generated_reference() {
    let out = util::temp_dir("own-neutral").join("results.jsonl");
    let source = clip("synth_tfeid_s01_expressions.mp4");
    let source = source.to_str().expect("UTF-8 path");
    let args = [
        "--source",
        source,
        "--max-frames",
        "70",
        "--hold-still",
        "0",
        "--own-neutral-at",
        "0.2",
    ];
    let (lines, stderr) = run_headless(&args, &out);
    assert!(stderr.contains("own neutral face taken"), "{stderr}");
    let own = own_reference_by_frame(&lines);
    assert!(own.len() >= 65, "{} of 70 frames with a face", own.len());
    assert!(own.iter().filter(|(t, _)| *t < 0.2).all(|(_, o)| !o));
    let first = own
        .iter()
        .position(|(_, o)| *o)
        .expect("the own face is used");
    // Frames already past the model when it was taken keep the generated reference.
    assert!(own[first].0 <= 1.0, "first used at {} s", own[first].0);
    assert!(own[first..].iter().all(|(_, o)| *o));

    // Mean intensity of the stable neutral and happy frames compared with the own face.
    let labels: Vec<String> = clip_labels()
        .into_iter()
        .map(|r| r.2)
        .take(lines.len())
        .collect();
    let mean_intensity = |want: &str| mean_own_intensity(&lines, &labels, want);
    let (neutral, happy) = (mean_intensity("neutral"), mean_intensity("happy"));
    eprintln!("intensity with the own neutral face: neutral frames {neutral:.3}, happy {happy:.3}");
    assert!(
        neutral < 0.5 && happy > neutral + 0.3,
        "intensity with the own neutral face: neutral frames {neutral:.3}, happy {happy:.3}"
    );

    let output = util::dgcn()
        .args([
            "live",
            "--headless",
            "--own-neutral-at=-1",
            "--source",
            source,
        ])
        .args(["--out", "-", "--max-frames", "5"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--own-neutral-at -1"), "{stderr}");
}

/// A file given as `--source` is read by its content when its name does not say: a video in a
/// container without a known ending (or none) plays, an animated GIF plays frame by frame, and a
/// file that is neither an image nor a video says so.
#[test]
fn a_source_file_is_read_by_its_content() {
    let dir = util::temp_dir("by-content");
    let bytes = std::fs::read(clip("carphone_pristine.mp4")).expect("clip");
    for name in ["carphone", "carphone.3gp"] {
        let path = dir.join(name);
        std::fs::write(&path, &bytes).expect("write");
        let out = dir.join(format!("{name}.jsonl"));
        let (lines, _) = run_headless(
            &[
                "--source",
                path.to_str().expect("utf-8"),
                "--max-frames",
                "30",
            ],
            &out,
        );
        assert_eq!(lines.len(), 30, "{name}");
        let times: Vec<f64> = lines.iter().filter_map(|v| v["time_s"].as_f64()).collect();
        assert_eq!(
            times.len(),
            30,
            "{name}: every frame has its time in the video"
        );
        assert!(times.windows(2).all(|w| w[1] > w[0]), "{name}");
        assert!(
            lines.iter().filter(|v| top_label(v).is_some()).count() >= 25,
            "{name}: the man's face is found"
        );
    }

    // Three photos of one TFEID performer as an animated GIF.
    use image::codecs::gif::{GifEncoder, Repeat};
    let gif = dir.join("faces.gif");
    {
        let file = std::fs::File::create(&gif).expect("create");
        let mut encoder = GifEncoder::new(file);
        encoder.set_repeat(Repeat::Infinite).expect("repeat");
        for suffix in ["0111b01.jpg", "0111d02.jpg", "0111g03.jpg"] {
            let photo = util::archive_file(dgcn::data::DatasetKind::Tfeid, suffix);
            let rgba = image::load_from_memory(&photo).expect("decodes").to_rgba8();
            let frame =
                image::Frame::from_parts(rgba, 0, 0, image::Delay::from_numer_denom_ms(200, 1));
            encoder.encode_frame(frame).expect("frame");
        }
    }
    let (lines, _) = run_headless(
        &["--source", gif.to_str().expect("utf-8")],
        &dir.join("gif.jsonl"),
    );
    assert_eq!(lines.len(), 3, "one result per frame of the animation");
    let probs: Vec<String> = lines
        .iter()
        .map(|v| v["faces"][0]["probs"].to_string())
        .collect();
    assert!(probs.iter().all(|p| p != "null"), "a face in every frame");
    assert!(
        probs[0] != probs[1] && probs[1] != probs[2],
        "three different photos, three different answers"
    );

    let garbage = dir.join("notes.dat");
    std::fs::write(&garbage, "not a picture, not a film\n".repeat(200)).expect("write");
    let (last, _) = source_error(&garbage);
    assert!(
        last.contains("neither an image") && last.contains("notes.dat"),
        "{last}"
    );
}

/// Copies `src`'s video stream into an MP4 at `dst` (no re-encoding) whose display matrix turns
/// the picture by `clockwise_degrees`, as a phone marks a portrait video.
#[cfg(feature = "video")]
fn remux_with_display_turn(src: &Path, dst: &Path, clockwise_degrees: f64) {
    use ffmpeg_next as ffmpeg;
    ffmpeg::init().expect("FFmpeg");
    let mut input = ffmpeg::format::input(src).expect("clip opens");
    let mut output = ffmpeg::format::output(dst).expect("MP4 writer");
    let (index, in_time_base) = {
        let stream = input
            .streams()
            .best(ffmpeg::media::Type::Video)
            .expect("video stream");
        let mut out_stream = output
            .add_stream(ffmpeg::encoder::find(ffmpeg::codec::Id::None))
            .expect("stream");
        out_stream.set_parameters(stream.parameters());
        // SAFETY: plain FFmpeg calls on the stream just added; the side data buffer is 9 i32s,
        // as av_stream_add_side_data was asked for, and FFmpeg owns it from here.
        unsafe {
            (*out_stream.parameters().as_mut_ptr()).codec_tag = 0;
            let size = 9 * std::mem::size_of::<i32>();
            let data = ffmpeg::ffi::av_stream_new_side_data(
                out_stream.as_mut_ptr(),
                ffmpeg::ffi::AVPacketSideDataType::AV_PKT_DATA_DISPLAYMATRIX,
                size as _,
            );
            assert!(!data.is_null(), "side data");
            // `av_display_rotation_set` takes the clockwise angle (an iPhone's portrait video
            // holds the matrix it makes of 90), `av_display_rotation_get` gives it back negated.
            ffmpeg::ffi::av_display_rotation_set(data.cast::<i32>(), clockwise_degrees);
        }
        (stream.index(), stream.time_base())
    };
    output.write_header().expect("header");
    let out_time_base = output.stream(0).expect("stream 0").time_base();
    for (stream, mut packet) in input.packets() {
        if stream.index() == index {
            packet.rescale_ts(in_time_base, out_time_base);
            packet.set_position(-1);
            packet.set_stream(0);
            packet.write_interleaved(&mut output).expect("packet");
        }
    }
    output.write_trailer().expect("trailer");
}

/// A video whose display matrix says to turn it (a phone's portrait video) is played turned, as
/// players and the `ffmpeg` tool show it: the clip copied with a matrix of a quarter turn
/// clockwise (as an iPhone's portrait video holds) gives each frame of the clip turned a quarter
/// clockwise, pixel for pixel; a half and three quarters likewise.
#[cfg(feature = "video")]
#[test]
fn a_video_marked_as_turned_plays_turned_upright() {
    use dgcn::capture::{open_source, SourceSpec, VideoOptions};
    use std::sync::atomic::AtomicBool;
    let dir = util::temp_dir("turned-video");
    let source = clip("carphone_pristine.mp4");
    let frames = |path: &Path| -> Vec<image::RgbImage> {
        let stop = AtomicBool::new(false);
        let mut s = open_source(
            &SourceSpec::Path(path.to_path_buf()),
            VideoOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        (0..5)
            .map(|_| {
                s.next_frame(&stop)
                    .expect("frame")
                    .expect("not the end")
                    .rgb
            })
            .collect()
    };
    let upright = frames(&source);
    for (degrees, turn) in [
        (
            90.0,
            image::imageops::rotate90 as fn(&image::RgbImage) -> image::RgbImage,
        ),
        (180.0, image::imageops::rotate180),
        (270.0, image::imageops::rotate270),
    ] {
        let marked = dir.join(format!("turned{degrees}.mp4"));
        remux_with_display_turn(&source, &marked, degrees);
        let played = frames(&marked);
        for (n, (a, b)) in played.iter().zip(&upright).enumerate() {
            assert_eq!(
                a.dimensions(),
                turn(b).dimensions(),
                "{degrees}°, frame {n}"
            );
            assert!(
                *a == turn(b),
                "{degrees}°, frame {n}: not the clip's frame turned"
            );
        }
    }
}

/// Writes `frames` as a Motion-JPEG Matroska video at `fps` (each frame a JPEG packet, muxed as
/// is: the frames may differ in size, as a stream that changes resolution does).
#[cfg(feature = "video")]
fn write_mjpeg(path: &Path, frames: &[image::RgbImage], fps: i32) {
    use ffmpeg_next as ffmpeg;
    ffmpeg::init().expect("FFmpeg");
    let mut output = ffmpeg::format::output(path).expect("Matroska writer");
    {
        let mut stream = output
            .add_stream(ffmpeg::encoder::find(ffmpeg::codec::Id::MJPEG))
            .expect("stream");
        stream.set_time_base((1, fps));
        // SAFETY: the codec parameters of the stream just added, set before the header.
        unsafe {
            let par = stream.parameters().as_mut_ptr();
            (*par).codec_type = ffmpeg::ffi::AVMediaType::AVMEDIA_TYPE_VIDEO;
            (*par).codec_id = ffmpeg::ffi::AVCodecID::AV_CODEC_ID_MJPEG;
            (*par).width = frames[0].width() as i32;
            (*par).height = frames[0].height() as i32;
        }
    }
    output.write_header().expect("header");
    let time_base = output.stream(0).expect("stream 0").time_base();
    for (n, frame) in frames.iter().enumerate() {
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
            .encode_image(frame)
            .expect("JPEG");
        let mut packet = ffmpeg::Packet::copy(&jpeg);
        packet.set_pts(Some(n as i64));
        packet.set_dts(Some(n as i64));
        packet.set_duration(1);
        packet.set_flags(ffmpeg::codec::packet::Flags::KEY);
        packet.set_stream(0);
        packet.rescale_ts((1, fps), time_base);
        packet.write_interleaved(&mut output).expect("packet");
    }
    output.write_trailer().expect("trailer");
}

/// A video whose frame size changes on the way (a browser's webcam recording does; so do clips
/// joined together) plays on: every frame at its own size, the face found in each. Six TFEID
/// photos at 256×256 followed by the same six enlarged to 320×320, as Motion JPEG; before, the
/// converter to RGB stopped the source at the seventh frame ("Input changed").
#[cfg(feature = "video")]
#[test]
fn a_video_that_changes_frame_size_plays_on() {
    let dir = util::temp_dir("resized-video");
    let photos: Vec<image::RgbImage> = ["0111b01.jpg", "0101a02.jpg", "2011c03.jpg"]
        .iter()
        .map(|p| {
            image::load_from_memory(&util::archive_file(dgcn::data::DatasetKind::Tfeid, p))
                .expect("decodes")
                .to_rgb8()
        })
        .collect();
    let mut frames: Vec<image::RgbImage> = photos.iter().chain(&photos).cloned().collect();
    frames.extend(
        frames
            .clone()
            .iter()
            .map(|f| image::imageops::resize(f, 320, 320, image::imageops::FilterType::Triangle)),
    );
    let video = dir.join("resized.mkv");
    write_mjpeg(&video, &frames, 10);
    let out = dir.join("results.jsonl");
    let (lines, _) = run_headless(&["--source", video.to_str().expect("utf-8")], &out);
    assert_eq!(lines.len(), frames.len(), "every frame played");
    for (n, v) in lines.iter().enumerate() {
        let faces = v["faces"].as_array().expect("faces");
        assert_eq!(faces.len(), 1, "frame {n}: {v}");
        // The box lies in the frame's own size: the second half's faces are larger.
        let height = faces[0]["box"][3].as_f64().expect("box");
        let side = f64::from(frames[n].height());
        assert!(
            height > side * 0.5 && height < side,
            "frame {n}: box {height} in {side}"
        );
    }
}

/// A video damaged in the middle (a bad sector, a cut download) plays on past the damage: the
/// carphone clip with three 3,000-byte stretches overwritten (at 30, 50 and 70 % of the file)
/// gives at least 110 of its 120 frames, times still increasing, and says once that damaged
/// data was skipped; before, the run stopped at the first damage (frame 31) with an error.
#[test]
fn a_video_damaged_in_the_middle_plays_on_past_the_damage() {
    let dir = util::temp_dir("damaged-video");
    let mut bytes = std::fs::read(clip("carphone_pristine.mp4")).expect("clip");
    let mut state = 0x2545_f491_u32;
    for at in [0.3, 0.5, 0.7] {
        let start = (bytes.len() as f64 * at) as usize;
        for b in &mut bytes[start..start + 3000] {
            // xorshift: the same damage every run
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            *b = state as u8;
        }
    }
    let damaged = dir.join("damaged.mp4");
    std::fs::write(&damaged, bytes).expect("write");
    let out = dir.join("results.jsonl");
    let (lines, stderr) = run_headless(&["--source", damaged.to_str().expect("utf-8")], &out);
    assert!(stderr.contains("damaged video data skipped"), "{stderr}");
    let times: Vec<f64> = lines
        .iter()
        .map(|v| v["time_s"].as_f64().expect("time"))
        .collect();
    assert!(times.len() >= 110, "{} frames", times.len());
    assert!(times.windows(2).all(|w| w[1] > w[0]), "time goes forward");
}
