//! Recorded sessions, end to end through the command line: a headless recording of the labelled
//! clip reopens with every frame and re-scores to the same predictions; a recording killed with
//! SIGKILL keeps every row flushed before; a full disk stops the recording and keeps what was
//! written; broken sessions give one clear error.
mod util;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dgcn::session::open_session;

fn clip(name: &str) -> PathBuf {
    util::shared_dir().join("clips").join(name)
}

/// `dgcn live --headless` on the labelled clip, results thrown away, at most `frames` frames.
fn headless_clip(frames: &str) -> Command {
    let mut cmd = util::dgcn();
    cmd.args([
        "live",
        "--headless",
        "--out",
        "/dev/null",
        "--max-frames",
        frames,
    ])
    .arg("--source")
    .arg(clip("synth_tfeid_s01_expressions.mp4"));
    cmd
}

/// `dgcn eval --session` with the recording's weights gives every face its recorded prediction;
/// returns the report.
fn assert_rescores_as_recorded(session: &dgcn::session::Session) -> String {
    let rescored = util::run_ok(util::dgcn().args(["eval", "--session"]).arg(&session.dir));
    let text = String::from_utf8_lossy(&rescored.stdout).into_owned();
    let faces = session.rows.iter().filter(|r| r.face.is_some()).count();
    assert!(
        text.contains(&format!(
            "Same prediction as recorded: {faces} of {faces} faces"
        )),
        "{text}"
    );
    text
}

/// Every row's images exist and read back as 64×64 faces.
fn assert_images_exist(session: &dgcn::session::Session) {
    for row in &session.rows {
        if let Some(f) = &row.face {
            for rel in [&f.query_png, &f.reference_png] {
                dgcn::session::format::load_face_png(&session.dir.join(rel))
                    .unwrap_or_else(|e| panic!("frame {}: {e}", row.frame));
            }
        }
    }
}

#[test]
fn a_recorded_clip_reopens_whole_and_rescores_to_the_same_predictions() {
    let dir = util::temp_dir("session_record").join("s1");
    let labels_csv = clip("synth_tfeid_s01_expressions_labels.csv");
    util::run_ok(
        util::dgcn()
            .args(["live", "--headless", "--out", "/dev/null", "--source"])
            .arg(clip("synth_tfeid_s01_expressions.mp4"))
            .arg("--record")
            .arg(&dir)
            .arg("--labels")
            .arg(&labels_csv),
    );

    let session = open_session(&dir).expect("opens");
    assert!(session.warnings.is_empty(), "{:?}", session.warnings);
    assert_eq!(
        session.frames(),
        (0..510).collect::<Vec<u64>>(),
        "every frame"
    );
    assert_eq!(session.manifest.frames, Some(510));
    assert!(session.manifest.ended_at.is_some());
    assert_eq!(session.manifest.classes.len(), 8);
    assert!(
        matches!(
            session.manifest.number_format.as_deref(),
            Some("f32" | "bf16")
        ),
        "{:?}",
        session.manifest.number_format
    );
    // Labels in force are the CSV's (transitions are no label).
    let truth = dgcn::session::labels::read_label_csv(&labels_csv).expect("labels");
    for row in &session.rows {
        assert_eq!(row.label, truth[&row.frame], "frame {}", row.frame);
    }
    assert_images_exist(&session);

    // A second recording never reuses the folder.
    let again = headless_clip("2")
        .arg("--record")
        .arg(&dir)
        .output()
        .expect("runs");
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let text = assert_rescores_as_recorded(&session);
    assert!(
        text.contains("Accuracy against the session's labels"),
        "{text}"
    );
}

/// With the own neutral face (`--own-neutral-at`), the session keeps every frame of it the model
/// compared with, once, and re-scores to the recorded predictions from them.
#[test]
fn a_session_with_the_own_neutral_face_keeps_its_frames_and_rescores_to_the_same_predictions() {
    let dir = util::temp_dir("session_own").join("s1");
    util::run_ok(
        headless_clip("60")
            .args(["--own-neutral-at", "0.2"])
            .arg("--record")
            .arg(&dir),
    );
    let session = open_session(&dir).expect("opens");
    assert_images_exist(&session);
    let own: Vec<_> = session
        .rows
        .iter()
        .filter_map(|r| r.face.as_ref())
        .filter(|f| f.own_reference)
        .collect();
    assert!(
        own.len() >= 40,
        "{} faces with the own reference",
        own.len()
    );
    // Each set of frames is written once, when it changes: as frames join, the rows point to
    // files of more and more frames, up to the default number.
    let mut files: Vec<String> = own
        .iter()
        .map(|f| f.own_frames_png.clone().expect("the own face's frames"))
        .collect();
    files.dedup();
    let counts: Vec<usize> = files
        .iter()
        .map(|p| {
            dgcn::session::format::load_faces_png(&session.dir.join(p))
                .expect("reads")
                .len()
        })
        .collect();
    assert!(counts.windows(2).all(|w| w[0] < w[1]), "{counts:?}");
    assert_eq!(
        counts.last().copied(),
        Some(usize::from(dgcn::pipeline::DEFAULT_OWN_FRAMES))
    );
    let frames =
        dgcn::session::format::load_faces_png(&session.dir.join(&files[0])).expect("reads");
    // The reference shown is the first of them.
    for f in &own {
        let shown = dgcn::session::format::load_face_png(&session.dir.join(&f.reference_png))
            .expect("reads");
        assert_eq!(shown, frames[0]);
    }
    assert_rescores_as_recorded(&session);
}

#[test]
fn a_recording_killed_mid_way_keeps_every_flushed_row() {
    let dir = util::temp_dir("session_kill").join("s");
    let mut child = util::dgcn()
        .args([
            "live",
            "--headless",
            "--loop",
            "--out",
            "/dev/null",
            "--source",
        ])
        .arg(clip("carphone_pristine.mp4"))
        .arg("--record")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let csv = dir.join("frames.csv");
    let t0 = Instant::now();
    let mut seen = 0;
    while seen < 40 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no rows after 120 s"
        );
        std::thread::sleep(Duration::from_millis(100));
        seen = std::fs::read_to_string(&csv)
            .map(|t| t.matches('\n').count().saturating_sub(1))
            .unwrap_or(0);
    }
    child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix
    let _ = child.wait();
    let session = open_session(&dir).expect("a killed session opens");
    assert!(
        session.rows.len() >= seen,
        "{} rows, {seen} seen before the kill",
        session.rows.len()
    );
    assert!(
        session.manifest.ended_at.is_none(),
        "it never ended normally"
    );
    let frames = session.frames();
    assert_eq!(
        frames,
        (0..frames.len() as u64).collect::<Vec<_>>(),
        "no frame missing"
    );
    assert_images_exist(&session);
}

#[test]
fn a_full_disk_stops_the_recording_and_keeps_what_was_written() {
    let mount = util::temp_dir("session_full");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&mount)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a small tmpfs here (needs root)");
        return;
    }
    let dir = mount.join("s");
    let out = util::dgcn()
        .args(["live", "--headless", "--out", "/dev/null", "--source"])
        .arg(clip("synth_tfeid_s01_expressions.mp4"))
        .arg("--record")
        .arg(&dir)
        .output()
        .expect("runs");
    let session = open_session(&dir);
    let _ = Command::new("umount").arg(&mount).status();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = util::last_stderr_line(&out);
    assert!(
        last.contains("recording stopped") && last.contains("rows written before are kept"),
        "{stderr}"
    );
    let session = session.expect("what was written opens");
    assert!(
        !session.rows.is_empty() && session.rows.len() < 510,
        "{} rows",
        session.rows.len()
    );
}

#[test]
fn broken_sessions_give_a_clear_error() {
    let base = util::temp_dir("session_broken");
    let good = base.join("good");
    util::run_ok(
        headless_clip("5")
            .arg("--record")
            .arg(&good)
            .arg("--record-frames"),
    );
    // --record-frames keeps every whole frame as JPEG.
    for f in 0..5 {
        let jpg = image::open(good.join(format!("frames/{f:06}.jpg"))).expect("frame JPEG");
        assert_eq!((jpg.width(), jpg.height()), (640, 480));
    }
    let csv = std::fs::read_to_string(good.join("frames.csv")).expect("csv");

    let copy = |name: &str, frames: &str, manifest: bool| {
        let d = base.join(name);
        std::fs::create_dir_all(&d).expect("dir");
        std::fs::write(d.join("frames.csv"), frames).expect("write");
        if manifest {
            std::fs::copy(good.join("session.json"), d.join("session.json")).expect("copy");
        }
        d
    };
    let malformed = csv.replacen("\n1,", "\n1,x", 1);
    let cases = [
        (copy("no_manifest", &csv, false), "has no session.json"),
        (copy("malformed", &malformed, true), "line 3"),
        (copy("no_header", "", true), "frames.csv"),
    ];
    for (dir, expected) in cases {
        let out = util::dgcn()
            .args(["eval", "--session"])
            .arg(&dir)
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        let last = util::last_stderr_line(&out);
        assert!(
            last.starts_with("error:") && last.contains(expected),
            "{last}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    // Cut off in the middle of the last row: opens with the rows before, and says so.
    let cut = copy("cut", &csv[..csv.len() - 7], true);
    let session = open_session(&cut).expect("opens");
    assert_eq!(session.rows.len(), 4);
    assert_eq!(session.warnings.len(), 1);
}

/// A session records the number format its network ran in, and `eval --session` with
/// `--precision auto` (where `auto` times both formats and may choose either) re-scores in it.
#[test]
fn a_session_rescores_in_the_number_format_it_was_recorded_in() {
    let dir = util::temp_dir("session_format").join("s");
    util::run_ok(
        headless_clip("30")
            .args(["--precision", "bf16", "--record"])
            .arg(&dir),
    );
    let session = open_session(&dir).expect("opens");
    assert_eq!(session.manifest.number_format.as_deref(), Some("bf16"));
    let text = assert_rescores_as_recorded(&session);
    assert!(
        text.contains("in bf16 (the session's number format)"),
        "{text}"
    );
}
