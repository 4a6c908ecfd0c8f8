//! The `dgcn` binary as a user runs it: infer on real images with the shipped weights, and the
//! one-line errors for bad input.
mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

use dgcn::data::DatasetKind;

fn dgcn() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dgcn"));
    c.env("DGCN_BLAZEFACE", util::blazeface_path())
        .env("DGCN_LOG", "error");
    c
}

fn shipped_weights() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/gcnet.safetensors")
}

/// `dgcn SUBCOMMAND --weights <shipped> ARGS…`, run to its end.
fn run_shipped(subcommand: &str, args: &[&std::ffi::OsStr]) -> std::process::Output {
    dgcn()
        .args([subcommand, "--weights"])
        .arg(shipped_weights())
        .args(args)
        .output()
        .expect("runs")
}

fn stderr_line(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

#[test]
fn infer_finds_the_face_and_returns_eight_probabilities() {
    let img = util::temp_image(DatasetKind::Tfeid, "0111b01.jpg", "tfeid_happy.jpg");
    let refs = util::temp_dir("infer-refs");
    let out = dgcn()
        .args(["infer", "--weights"])
        .arg(shipped_weights())
        .arg("--save-reference")
        .arg(&refs)
        .arg(&img)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr_line(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1);
    let v: serde_json::Value = serde_json::from_str(lines[0]).expect("JSON line");
    let faces = v["faces"].as_array().expect("faces");
    assert_eq!(faces.len(), 1);
    let probs = faces[0]["probs"].as_object().expect("probs");
    assert_eq!(probs.len(), 8);
    let keys: Vec<&str> = probs.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt"]
    );
    let sum: f64 = probs.values().filter_map(|p| p.as_f64()).sum();
    assert!((sum - 1.0).abs() < 1e-3, "sum {sum}");
    let label = faces[0]["label"].as_str().expect("label");
    assert!(probs.contains_key(label));
    let bbox = faces[0]["box"].as_array().expect("box");
    assert_eq!(bbox.len(), 4);
    assert_eq!(faces[0]["landmarks"].as_array().map(|l| l.len()), Some(5));
    for f in ["tfeid_happy.query.png", "tfeid_happy.reference.png"] {
        let img = image::open(refs.join(f)).expect("saved PNG");
        assert_eq!((img.width(), img.height()), (64, 64));
    }
}

/// `dgcn infer` with the shipped weights, `flags` and `images`, which must succeed: its JSON lines.
fn infer_ok(flags: &[&str], images: &[&Path]) -> Vec<serde_json::Value> {
    let out = dgcn()
        .arg("infer")
        .args(flags)
        .arg("--weights")
        .arg(shipped_weights())
        .args(images)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr_line(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// The image formats the app names read by content, in `infer` and as a folder source: one TFEID
/// photo, decoded once and written losslessly as PNG, BMP, WebP, TIFF, PPM and TGA, as a GIF
/// (256 colours: its probabilities within 0.15) and as a PNG named `.jpg`, answers as the decoded
/// photo does.
#[test]
fn every_named_image_format_reads_and_answers_alike() {
    let dir = util::temp_dir("formats");
    let photo = util::temp_image(DatasetKind::Tfeid, "0111b01.jpg", "formats_source.jpg");
    let rgb = image::open(&photo).expect("JPEG decodes").to_rgb8();
    let lossless = ["png", "bmp", "webp", "tiff", "ppm", "tga"];
    let mut files = Vec::new();
    for ext in lossless.iter().chain(&["gif"]) {
        let path = dir.join(format!("face.{ext}"));
        rgb.save(&path).unwrap_or_else(|e| panic!("{ext}: {e}"));
        files.push(path);
    }
    // A PNG whose name says JPEG: read by its content.
    let misnamed = dir.join("png_named.jpg");
    rgb.save_with_format(&misnamed, image::ImageFormat::Png)
        .expect("PNG written");
    files.push(misnamed);
    let answers = infer_ok(&[], &files.iter().map(PathBuf::as_path).collect::<Vec<_>>());
    assert_eq!(answers.len(), files.len());
    let probs = |v: &serde_json::Value| -> Vec<f64> {
        let faces = v["faces"].as_array().expect("faces");
        assert_eq!(faces.len(), 1, "{v}");
        faces[0]["probs"]
            .as_object()
            .expect("probs")
            .values()
            .map(|p| p.as_f64().expect("number"))
            .collect()
    };
    let png = probs(&answers[0]);
    for (v, file) in answers.iter().zip(&files) {
        let p = probs(v);
        let worst = p
            .iter()
            .zip(&png)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        // The same pixels give the same answer; the GIF's palette moves it a little (this
        // photo sits near the happy/surprise boundary, so the GIF's label may flip).
        let gif = file.extension().is_some_and(|e| e == "gif");
        let bound = if gif { 0.15 } else { 1e-4 };
        assert!(worst <= bound, "{}: |Δp| {worst}", file.display());
        if !gif {
            assert_eq!(
                v["faces"][0]["label"],
                answers[0]["faces"][0]["label"],
                "{}",
                file.display()
            );
        }
    }
    // The same files as a folder source: every one is a frame with the face.
    let results = util::temp_dir("formats-results").join("results.jsonl");
    let out = dgcn()
        .args(["live", "--headless", "--source"])
        .arg(&dir)
        .arg("--out")
        .arg(&results)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr_line(&out));
    let frames = std::fs::read_to_string(&results).expect("results");
    let with_face = frames.lines().filter(|l| l.contains("\"probs\"")).count();
    assert_eq!(frames.lines().count(), files.len());
    assert_eq!(with_face, files.len());
}

/// `infer` given a folder reads every image in it and its subfolders, in path order, skipping
/// other files; saved references are named by their path inside the folder, so that two
/// `1.jpg` in two class folders do not overwrite each other; a folder without images is a
/// one-line error.
#[test]
fn infer_reads_a_folder_of_class_folders() {
    let dir = util::temp_dir("infer-folder");
    let data = dir.join("faces");
    for (class, photo) in [("sad", "2011c03.jpg"), ("happy", "0111b01.jpg")] {
        std::fs::create_dir_all(data.join(class)).expect("mkdir");
        std::fs::write(
            data.join(class).join("1.jpg"),
            util::archive_file(DatasetKind::Tfeid, photo),
        )
        .expect("write");
    }
    std::fs::write(data.join("readme.txt"), b"labels by folder").expect("write");
    let refs = dir.join("refs");
    let answers = infer_ok(
        &["--save-reference", refs.to_str().expect("utf-8")],
        &[&data],
    );
    let paths: Vec<&str> = answers
        .iter()
        .map(|v| v["path"].as_str().expect("path"))
        .collect();
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert!(
        paths[0].ends_with("happy/1.jpg") && paths[1].ends_with("sad/1.jpg"),
        "{paths:?}"
    );
    assert!(answers
        .iter()
        .all(|v| v["faces"].as_array().is_some_and(|f| f.len() == 1)));
    for name in ["happy_1", "sad_1"] {
        for suffix in ["query", "reference"] {
            let png = refs.join(format!("{name}.{suffix}.png"));
            assert!(png.is_file(), "{} missing", png.display());
        }
    }
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let out = run_shipped("infer", &[empty.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    let line = stderr_line(&out);
    assert!(
        line.starts_with("error: folder") && line.contains("no images"),
        "{line}"
    );
}

/// `eval --folder` scores a dataset laid out in expression folders (the datasets' own names:
/// `happiness`, `sadness`, `anger`): six TFEID photos in three such folders, one photo outside
/// them, one unreadable image and a blank one in which no face is found. The report counts 7
/// labelled photos (the face found in 6, the blank aligned as preparation aligns a miss), 1
/// passed over and 1 unreadable; predictions_folder.csv has each photo's label, whether its face
/// was found, and for the six the prediction `infer` gives; the accuracy printed is the share of
/// rows whose prediction is their label; a folder with no expression folder is a one-line error.
#[test]
fn eval_scores_a_folder_of_expression_folders() {
    let dir = util::temp_dir("eval-folder");
    let data = dir.join("dataset");
    let photos = [
        ("happiness", "0111b01.jpg"),
        ("happiness", "0121b01.jpg"),
        ("sadness", "2011c03.jpg"),
        ("sadness", "0121c01.jpg"),
        ("anger", "0111d02.jpg"),
        ("anger", "0131d01.jpg"),
    ];
    for (class, photo) in photos {
        std::fs::create_dir_all(data.join(class)).expect("mkdir");
        std::fs::write(
            data.join(class).join(photo),
            util::archive_file(DatasetKind::Tfeid, photo),
        )
        .expect("write");
    }
    std::fs::write(
        data.join("cover.jpg"),
        util::archive_file(DatasetKind::Tfeid, "0101a02.jpg"),
    )
    .expect("write");
    std::fs::write(data.join("anger").join("broken.jpg"), b"not an image").expect("write");
    // A photo in which the detector finds no face: aligned as preparation aligns its misses.
    image::RgbImage::from_pixel(48, 48, image::Rgb([128, 128, 128]))
        .save(data.join("anger").join("blank.png"))
        .expect("png");
    let out_dir = dir.join("out");
    let eval_folder = |folder: &Path| {
        run_shipped(
            "eval",
            &[
                "--folder".as_ref(),
                folder.as_os_str(),
                "--out".as_ref(),
                out_dir.as_os_str(),
            ],
        )
    };
    let out = eval_folder(&data);
    assert!(out.status.success(), "{}", stderr_line(&out));
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        report.contains("7 labelled photos, the face found by the detector in 6 (the other 1")
            && report.contains("passed over: 1 outside an expression's folder, 1 unreadable"),
        "{report}"
    );
    let csv = std::fs::read_to_string(out_dir.join("predictions_folder.csv")).expect("csv");
    let rows: Vec<Vec<String>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    assert_eq!(rows.len(), 7);
    let (blank, rows): (Vec<_>, Vec<_>) =
        rows.into_iter().partition(|r| r[0].ends_with("blank.png"));
    assert_eq!(blank[0][3], "false", "{blank:?}");
    assert!(rows.iter().all(|r| r[3] == "true"), "{rows:?}");
    let files: Vec<PathBuf> = rows.iter().map(|r| PathBuf::from(&r[0])).collect();
    let answers = infer_ok(&[], &files.iter().map(PathBuf::as_path).collect::<Vec<_>>());
    for (row, answer) in rows.iter().zip(&answers) {
        let folder = Path::new(&row[0]).parent().and_then(|p| p.file_name());
        let want = match folder.and_then(|f| f.to_str()) {
            Some("happiness") => "happy",
            Some("sadness") => "sad",
            _ => "angry",
        };
        assert_eq!(row[1], want, "{row:?}");
        assert_eq!(
            answer["faces"][0]["label"].as_str(),
            Some(row[2].as_str()),
            "{row:?}"
        );
    }
    let right = rows.iter().chain(&blank).filter(|r| r[1] == r[2]).count();
    let accuracy = format!("Accuracy **{:.2} %**", right as f64 * 100.0 / 7.0);
    assert!(report.contains(&accuracy), "{accuracy} not in {report}");

    let plain = dir.join("plain");
    std::fs::create_dir_all(&plain).expect("mkdir");
    std::fs::write(
        plain.join("a.jpg"),
        util::archive_file(DatasetKind::Tfeid, "0111b01.jpg"),
    )
    .expect("write");
    let out = eval_folder(&plain);
    assert_eq!(out.status.code(), Some(1));
    let line = stderr_line(&out);
    assert!(
        line.contains("no image in a folder named after an expression"),
        "{line}"
    );
}

/// A minimal Exif block (little-endian TIFF) holding only an orientation tag.
fn exif_orientation(tag: u16) -> Vec<u8> {
    let mut exif = b"II*\0".to_vec();
    exif.extend_from_slice(&8u32.to_le_bytes()); // first directory right after the header
    exif.extend_from_slice(&1u16.to_le_bytes()); // one entry:
    exif.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation,
    exif.extend_from_slice(&3u16.to_le_bytes()); // a SHORT,
    exif.extend_from_slice(&1u32.to_le_bytes()); // one of them,
    exif.extend_from_slice(&u32::from(tag).to_le_bytes()); // this value
    exif.extend_from_slice(&0u32.to_le_bytes()); // no next directory
    exif
}

/// Encodes `pixels` with `encoder`, an Exif block saying orientation `tag` included.
fn encode_with_exif(mut encoder: impl image::ImageEncoder, pixels: &image::RgbImage, tag: u16) {
    encoder
        .set_exif_metadata(exif_orientation(tag))
        .expect("the format takes Exif");
    encoder
        .write_image(
            pixels,
            pixels.width(),
            pixels.height(),
            image::ExtendedColorType::Rgb8,
        )
        .expect("encoded");
}

/// A camera that stores a photo sideways and says so in its Exif orientation (as phones do for
/// portrait photos): the face is found and answers as the upright photo does. One TFEID photo
/// stored turned a quarter left (tag 6), upside down (3) and a quarter right (8), as PNGs (the
/// same pixels: probabilities within 1e-4) and once as a JPEG (re-encoded: same label).
#[test]
fn a_photo_stored_sideways_is_read_upright_by_its_exif_orientation() {
    let dir = util::temp_dir("exif");
    let photo = util::temp_image(DatasetKind::Tfeid, "0111b01.jpg", "exif_source.jpg");
    let rgb = image::open(&photo).expect("JPEG decodes").to_rgb8();
    let upright = dir.join("upright.png");
    rgb.save(&upright).expect("PNG written");
    let stored = [
        (6u16, image::imageops::rotate270(&rgb)),
        (3, image::imageops::rotate180(&rgb)),
        (8, image::imageops::rotate90(&rgb)),
    ];
    let mut files = vec![upright];
    for (tag, pixels) in &stored {
        let path = dir.join(format!("turned{tag}.png"));
        let mut bytes = Vec::new();
        let encoder = image::codecs::png::PngEncoder::new(&mut bytes);
        encode_with_exif(encoder, pixels, *tag);
        std::fs::write(&path, bytes).expect("written");
        files.push(path);
    }
    let jpeg = dir.join("turned6.jpg");
    let mut bytes = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95);
    encode_with_exif(encoder, &stored[0].1, 6);
    std::fs::write(&jpeg, bytes).expect("written");
    files.push(jpeg);

    let answers = infer_ok(&[], &files.iter().map(PathBuf::as_path).collect::<Vec<_>>());
    assert_eq!(answers.len(), files.len());
    let face = |v: &serde_json::Value| -> (String, Vec<f64>) {
        let faces = v["faces"].as_array().expect("faces");
        assert_eq!(faces.len(), 1, "{v}");
        let probs = faces[0]["probs"].as_object().expect("probs");
        (
            faces[0]["label"].as_str().expect("label").to_string(),
            probs
                .values()
                .map(|p| p.as_f64().expect("number"))
                .collect(),
        )
    };
    let (label, probs) = face(&answers[0]);
    for (v, file) in answers.iter().zip(&files).skip(1) {
        let (l, p) = face(v);
        assert_eq!(l, label, "{}", file.display());
        if file.extension().is_some_and(|e| e == "png") {
            let worst = p
                .iter()
                .zip(&probs)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(worst <= 1e-4, "{}: |Δp| {worst}", file.display());
        }
    }
}

#[test]
fn infer_aligned_and_an_image_without_a_face() {
    let face = util::temp_image(
        DatasetKind::Ckplus48,
        "S010_006_00000015.png",
        "ck_face.png",
    );
    let blank = util::temp_dir("blank").join("blank.png");
    image::RgbImage::from_pixel(200, 150, image::Rgb([30, 90, 160]))
        .save(&blank)
        .expect("png");
    let v = infer_ok(&["--aligned"], &[&face]);
    assert_eq!(v[0]["faces"].as_array().map(|f| f.len()), Some(1));
    let v = infer_ok(&[], &[&blank]);
    assert_eq!(v[0]["faces"], serde_json::json!([]));
}

#[test]
fn infer_on_a_thin_strip_answers_no_face_without_growing() {
    // 8×4000 once made the small-image enlargement ask for a 40160×120000 canvas (14.7 GB).
    let strip = util::temp_dir("strip").join("strip.png");
    image::RgbImage::from_pixel(8, 4000, image::Rgb([200, 180, 160]))
        .save(&strip)
        .expect("png");
    let out = run_shipped("infer", &[strip.as_os_str()]);
    assert!(out.status.success(), "{}", stderr_line(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["faces"], serde_json::json!([]));
}

/// Runs `dgcn infer --weights W IMAGE`, returning the exit code and the whole of stderr.
fn infer_error(weights: &Path, image: &Path) -> (Option<i32>, String) {
    let out = dgcn()
        .args(["infer", "--weights"])
        .arg(weights)
        .arg(image)
        .output()
        .expect("runs");
    (out.status.code(), stderr_line(&out))
}

#[test]
fn bad_weights_images_and_datasets_give_one_line_errors() {
    let dir = util::temp_dir("bad-input");
    let img = util::temp_image(DatasetKind::Tfeid, "0111b01.jpg", "tfeid_for_errors.jpg");
    let one_line = |(code, err): (Option<i32>, String), needles: &[&str]| {
        assert_eq!(code, Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        for n in needles {
            assert!(err.contains(n), "{err} should mention {n}");
        }
    };
    // Missing weights.
    one_line(
        infer_error(&dir.join("none.safetensors"), &img),
        &["none.safetensors", "not found"],
    );
    // Corrupt weights (a valid sidecar beside garbage).
    let bad = dir.join("bad.safetensors");
    std::fs::write(&bad, b"garbage").expect("write");
    std::fs::copy(
        shipped_weights().with_extension("json"),
        dir.join("bad.json"),
    )
    .expect("sidecar");
    one_line(
        infer_error(&bad, &img),
        &["bad.safetensors", "expected GCNet safetensors"],
    );
    // Unreadable image.
    let notimg = dir.join("photo.jpg");
    std::fs::write(&notimg, b"this is text").expect("write");
    one_line(
        infer_error(&shipped_weights(), &notimg),
        &["photo.jpg", "expected a JPEG, PNG"],
    );
    // A video given to `infer` (which reads images) says where videos go.
    let video = dir.join("clip.mp4");
    std::fs::copy(
        util::shared_dir().join("clips/carphone_pristine.mp4"),
        &video,
    )
    .expect("copy");
    one_line(
        infer_error(&shipped_weights(), &video),
        &["clip.mp4", "live --headless --source"],
    );
    // A dataset folder in the wrong layout.
    std::fs::create_dir_all(dir.join("data/tfeid")).expect("mkdir");
    std::fs::write(dir.join("data/tfeid/readme.txt"), b"x").expect("write");
    let out = dgcn()
        .args(["train", "--datasets", "tfeid", "--epochs", "1", "--data"])
        .arg(dir.join("data"))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .output()
        .expect("runs");
    one_line(
        (out.status.code(), stderr_line(&out)),
        &["wrong layout", "faces_256x256"],
    );
    // A file given as a pack that is not one, and a pack size that is not one.
    let notpack = dir.join("data.pack");
    std::fs::write(&notpack, b"this is text").expect("write");
    let out = dgcn()
        .args(["train", "--datasets", "tfeid", "--epochs", "1", "--pack"])
        .arg(&notpack)
        .output()
        .expect("runs");
    one_line(
        (out.status.code(), stderr_line(&out)),
        &["data.pack", "not a dgcn pack"],
    );
    let out = dgcn()
        .args(["data", "pack", "--max-mb", "0", "--out"])
        .arg(dir.join("out.pack"))
        .output()
        .expect("runs");
    one_line((out.status.code(), stderr_line(&out)), &["--max-mb 0"]);
}

#[test]
fn doctor_names_libtorch_and_says_whether_cuda_loaded() {
    let out = dgcn().arg("doctor").output().expect("runs");
    assert!(out.status.success(), "{}", stderr_line(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in\n{text}"))
            .to_string()
    };
    assert!(line("libtorch: ").contains("torch/lib"), "{text}");
    let cuda = line("libtorch CUDA: ");
    let available = line("CUDA available to libtorch: ");
    if available.contains("false") {
        // Without a GPU the doctor says why CUDA is not in use, and the model runs on the CPU.
        assert!(
            !cuda.contains("loaded (") || text.contains("GPU: none"),
            "{text}"
        );
        assert_eq!(line("model device: "), "model device: cpu");
        // With native bf16, `auto` keeps whichever of the two runs faster here (timed).
        let format = line("model number format: ");
        let expected: &[&str] = if dgcn::device::cpu_has_native_bf16() {
            &["bf16", "f32"]
        } else {
            &["f32"]
        };
        assert!(
            expected
                .iter()
                .any(|e| format.starts_with(&format!("model number format: {e} ("))),
            "{text}"
        );
    } else {
        assert!(cuda.contains("loaded ("), "{text}");
        assert!(line("GPU 0: ").contains("GiB"), "{text}");
    }
    // A sidecar whose hash is not ASCII (hand-edited, corrupt) is printed, not sliced mid-char.
    let dir = util::temp_dir("doctor-sidecar");
    let weights = dir.join("w.safetensors");
    std::fs::copy(shipped_weights(), &weights).expect("copy weights");
    let mut side: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(shipped_weights().with_extension("json")).expect("sidecar"),
    )
    .expect("sidecar JSON");
    side["sha256"] = serde_json::json!("aéééééééééééééééé");
    std::fs::write(weights.with_extension("json"), side.to_string()).expect("write sidecar");
    let out = dgcn()
        .arg("doctor")
        .env("DGCN_WEIGHTS", &weights)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr_line(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("(sha256 aééééééééééééééé)"), "{text}");
}

/// The first `n` images of a FER+ split (e.g. "FER2013Train") and their rows of its label.csv,
/// written to `data/ferplus/<split>` as a user's copy would be; returns the images' names and
/// the rows.
fn copy_ferplus_split(
    data: &std::path::Path,
    split: &str,
    n: usize,
) -> (std::collections::HashSet<String>, Vec<String>) {
    use std::cell::Cell;
    let to = data.join("ferplus").join(split);
    std::fs::create_dir_all(&to).expect("mkdir");
    let taken = Cell::new(0usize);
    let files = dgcn::data::source::read_files(
        &dgcn::data::locate(DatasetKind::Ferplus, &util::data_dir()),
        |p| {
            if p.ends_with(&format!("{split}/label.csv")) {
                return true;
            }
            let keep = p.contains(&format!("{split}/")) && p.ends_with(".png") && taken.get() < n;
            taken.set(taken.get() + keep as usize);
            keep
        },
    )
    .expect("FER+ archive");
    let mut names = std::collections::HashSet::new();
    let mut csv = Vec::new();
    for (path, bytes) in &files {
        if path.ends_with("label.csv") {
            csv = bytes.clone();
        } else {
            let name = path.rsplit('/').next().expect("name").to_string();
            std::fs::write(to.join(&name), bytes).expect("write");
            names.insert(name);
        }
    }
    let rows: Vec<String> = std::str::from_utf8(&csv)
        .expect("utf-8")
        .lines()
        .filter(|l| names.contains(l.split(',').next().unwrap_or("")))
        .map(str::to_string)
        .collect();
    std::fs::write(to.join("label.csv"), rows.join("\n")).expect("write");
    (names, rows)
}

/// `eval --add-datasets ferplus --add-per-class N`: every fold also trains on the added set's
/// training faces, at most N per class (here 200 real FER+ training images, detected and aligned
/// as any data folder is), and the report says so; a lab dataset cannot be added.
/// `eval --intensity-on-valid` fits each fold's intensity on FER+ Valid (here 150 of its images),
/// which no fold trains on, and says so; without FER+ in the data it stops with one line. Each
/// run writes every scored face to predictions_tfeid.csv.
#[test]
fn eval_adds_capped_training_faces_and_fits_intensity_on_ferplus_valid() {
    let dir = util::temp_dir("add-datasets");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    for kind in [DatasetKind::Tfeid, DatasetKind::Ckplus48] {
        let real = dgcn::data::locate(kind, &util::data_dir());
        std::os::unix::fs::symlink(&real, data.join(real.file_name().expect("name")))
            .expect("link");
    }
    let (names, rows) = copy_ferplus_split(&data, "FER2013Train", 200);
    copy_ferplus_split(&data, "FER2013Valid", 150);
    // What the cap leaves: at most 3 faces per class among those with a majority label.
    let paths: Vec<String> = names
        .iter()
        .map(|n| format!("ferplus/FER2013Train/{n}"))
        .collect();
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    let csvs = [(
        "ferplus/FER2013Train/label.csv".to_string(),
        rows.join("\n").into_bytes(),
    )]
    .into_iter()
    .collect();
    let mut per_class = std::collections::HashMap::new();
    for s in DatasetKind::Ferplus.samples(&refs, &csvs) {
        *per_class.entry(s.label).or_insert(0usize) += 1;
    }
    let added: usize = per_class.values().map(|&n| n.min(3)).sum();
    assert!(added >= 12, "{per_class:?}");

    let fold_train = |extra: &[&str]| -> (usize, String) {
        let out_dir = dir.join(format!("eval{}", extra.len()));
        let out = dgcn()
            .env("DGCN_LOG", "info")
            .args([
                "eval",
                "--datasets",
                "tfeid",
                "--only-folds",
                "1",
                "--gen-epochs",
                "1",
            ])
            .args([
                "--epochs",
                "1",
                "--max-per-class",
                "10",
                "--no-reconstruction",
            ])
            .args(extra)
            .arg("--data")
            .arg(&data)
            .arg("--cache-dir")
            .arg(util::cache_dir())
            .arg("--out")
            .arg(&out_dir)
            .output()
            .expect("runs");
        let log = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{log}");
        // The log without its colours (ESC [ … m).
        let mut plain = String::new();
        let mut chars = log.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                chars.by_ref().find(|&c| c == 'm');
            } else {
                plain.push(c);
            }
        }
        let train = plain
            .lines()
            .find(|l| l.contains("cross-validation fold"))
            .and_then(|l| l.split("train=").nth(1))
            .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no fold line in {plain}"));
        let report = std::fs::read_to_string(out_dir.join("report.md")).expect("report");
        // Every face of the fold, scored, beside the report: as many as the report counts, and
        // right as often as its accuracy says.
        let json = eval_report(&out_dir);
        let csv = std::fs::read_to_string(out_dir.join("predictions_tfeid.csv")).expect("csv");
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some("path,subject,fold,label,predicted,neutral,happy,surprise,sad,angry,disgust,fear,contempt")
        );
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        assert_eq!(Some(rows.len() as u64), json[0]["samples"].as_u64());
        assert!(rows
            .iter()
            .all(|r| r.len() == 13 && r[2] == "1" && r[0].ends_with(".jpg")));
        let right = rows.iter().filter(|r| r[3] == r[4]).count() as f64 / rows.len() as f64;
        let accuracy = json[0]["accuracy"].as_f64().expect("accuracy");
        assert!((right - accuracy).abs() < 1e-9, "{right} vs {accuracy}");
        (train, report)
    };
    let (without, _) = fold_train(&[]);
    let (with, report) = fold_train(&["--add-datasets", "ferplus", "--add-per-class", "3"]);
    assert_eq!(with, without + added, "fold training faces");
    assert!(
        report.contains("with ckplus48, ferplus (training split, ≤ 3 per class) added to training"),
        "{report}"
    );
    let (on_valid, report) = fold_train(&["--intensity-on-valid"]);
    assert_eq!(on_valid, without, "FER+ Valid is not trained on");
    assert!(
        report.contains("added to training; each fold's intensity fitted on FER+ Valid"),
        "{report}"
    );
    let lab_only = dir.join("lab-only");
    std::fs::create_dir_all(&lab_only).expect("mkdir");
    let real = dgcn::data::locate(DatasetKind::Tfeid, &util::data_dir());
    std::os::unix::fs::symlink(&real, lab_only.join(real.file_name().expect("name")))
        .expect("link");
    // A mistake is one line on stderr naming the flag, and exit code 1.
    let fails_with = |args: &[&str], folder: &std::path::Path, says: &str| {
        let out = dgcn()
            .args(args)
            .arg("--data")
            .arg(folder)
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(1));
        let err = stderr_line(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(says), "{err}");
    };
    fails_with(
        &["eval", "--datasets", "tfeid", "--intensity-on-valid"],
        &lab_only,
        "--intensity-on-valid needs FER+",
    );
    fails_with(
        &["eval", "--datasets", "ckplus48", "--add-datasets", "tfeid"],
        &data,
        "--add-datasets tfeid",
    );
}

/// Distillation as a user runs it: `eval --split train` writes the shipped network's predictions
/// on real FER+ training faces (a copy of 120 of them with their label.csv); `train
/// --teacher-predictions` on the same faces blends them into every face's target, writes their
/// combination to the run folder and records in the sidecar how many faces it matched. A
/// predictions file of other faces, or a file that is not one, stops it with one line.
#[test]
fn train_distils_from_a_networks_predictions_on_its_training_faces() {
    let dir = util::temp_dir("distil");
    let data = dir.join("data");
    let (names, _) = copy_ferplus_split(&data, "FER2013Train", 120);
    copy_ferplus_split(&data, "FER2013Valid", 40);
    let cache = dir.join("cache");
    let on_data = |args: &[&str]| -> std::process::Output {
        dgcn()
            .args(args)
            .arg("--data")
            .arg(&data)
            .arg("--cache-dir")
            .arg(&cache)
            .output()
            .expect("runs")
    };
    let run_ok = |args: &[&str]| {
        let out = on_data(args);
        assert!(out.status.success(), "{}", stderr_line(&out));
    };
    let teacher_dir = dir.join("teacher");
    let weights = shipped_weights();
    run_ok(&[
        "eval",
        "--datasets",
        "ferplus",
        "--split",
        "train",
        "--weights",
        weights.to_str().expect("utf-8"),
        "--out",
        teacher_dir.to_str().expect("utf-8"),
    ]);
    let predictions = teacher_dir.join("predictions_ferplus.csv");
    let scored = std::fs::read_to_string(&predictions).expect("predictions");
    let scored_faces = scored.lines().count() - 1;
    // Faces with a majority label and a detected face; all of the copied images' names.
    assert!(
        scored_faces >= 80 && scored_faces <= names.len(),
        "{scored_faces}"
    );
    let run = dir.join("run");
    let student = run.join("gcnet.safetensors");
    let train_args = |teacher: &Path| -> Vec<String> {
        [
            "train",
            "--datasets",
            "ferplus",
            "--gen-epochs",
            "0",
            "--epochs",
            "1",
            "--no-reconstruction",
            "--teacher-share",
            "0.5",
            "--teacher-predictions",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([teacher.display().to_string()])
        .chain(["--init".into(), weights.display().to_string()])
        .chain(["--run".into(), run.display().to_string()])
        .chain(["--weights".into(), student.display().to_string()])
        .collect()
    };
    let args = train_args(&predictions);
    run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // The combination of one teacher is that teacher's call on each face, to the 5 digits kept.
    let combined = std::fs::read_to_string(run.join("teacher_targets.csv")).expect("combined");
    assert_eq!(combined.lines().count() - 1, scored_faces);
    let row_of = |text: &str, path: &str, skip: usize| -> Vec<f64> {
        text.lines()
            .find(|l| l.starts_with(&format!("{path},")))
            .unwrap_or_else(|| panic!("{path} missing"))
            .split(',')
            .skip(skip)
            .map(|v| v.parse().expect("number"))
            .collect()
    };
    let first = scored.lines().nth(1).expect("a row");
    let path = first.split(',').next().expect("path");
    let (theirs, ours) = (row_of(&scored, path, 5), row_of(&combined, path, 1));
    assert_eq!(theirs.len(), 8);
    assert!(theirs.iter().zip(&ours).all(|(a, b)| (a - b).abs() < 1e-4));
    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("gcnet.json")).expect("sidecar"))
            .expect("JSON");
    let taught = &sidecar["training"]["teachers"];
    assert_eq!(
        taught["faces_matched"].as_u64(),
        Some(scored_faces as u64),
        "{taught}"
    );
    assert_eq!(taught["share"].as_f64(), Some(0.5));
    // Predictions of faces this run does not train on: one line naming what to do.
    let other = dir.join("other.csv");
    std::fs::write(
        &other,
        "path,neutral,happy,surprise,sad,angry,disgust,fear,contempt\nelsewhere.png,1,0,0,0,0,0,0,0\n",
    )
    .expect("write");
    for (file, says) in [
        (
            other.clone(),
            "none of the 1 faces in the teacher predictions",
        ),
        (
            data.join("ferplus/FER2013Train/label.csv"),
            "no `path` column",
        ),
    ] {
        let args = train_args(&file);
        let out = on_data(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(out.status.code(), Some(1));
        let err = stderr_line(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(says), "{err}");
    }
    // A share without teachers is a usage error, not a setting silently unused.
    let out = on_data(&[
        "train",
        "--teacher-share",
        "0.7",
        "--run",
        run.to_str().expect("UTF-8"),
        "--weights",
        student.to_str().expect("UTF-8"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--teacher-predictions"), "{err}");
}

/// The `report.json` that `dgcn eval` wrote to `out`.
fn eval_report(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report.json"))
        .expect("json")
}

/// `dgcn eval` of the shipped weights on the FER+ test faces copied to `data`, with `extra` flags,
/// its report written to `out`.
fn eval_ferplus_test(
    data: &Path,
    cache: &Path,
    out: &Path,
    extra: &[&str],
) -> std::process::Output {
    dgcn()
        .args([
            "eval",
            "--datasets",
            "ferplus",
            "--split",
            "test",
            "--weights",
        ])
        .arg(shipped_weights())
        .args(extra)
        .arg("--out")
        .arg(out)
        .arg("--data")
        .arg(data)
        .arg("--cache-dir")
        .arg(cache)
        .output()
        .expect("runs")
}

/// `eval --degrade`: the same FER+ test faces scored again as a camera would degrade them. A
/// barely compressed face keeps its prediction; a face a dozen pixels wide in a noisy frame
/// loses much of the accuracy; the report has a row per degradation and bad specs stop it
/// before any work.
#[test]
fn eval_scores_faces_degraded_as_cameras_degrade_them() {
    let dir = util::temp_dir("degrade");
    let data = dir.join("data");
    copy_ferplus_split(&data, "FER2013Test", 300);
    let out = dir.join("eval");
    let run =
        |degrade: &str| eval_ferplus_test(&data, &dir.join("cache"), &out, &["--degrade", degrade]);
    let bad = run("sharpen:2");
    assert!(!bad.status.success());
    assert!(
        stderr_line(&bad).contains("not an effect"),
        "{}",
        stderr_line(&bad)
    );
    let done = run("jpeg:90,faraway:12+noise:0.1");
    assert!(done.status.success(), "{}", stderr_line(&done));
    let report = eval_report(&out);
    let r = &report[0];
    let clean = r["accuracy"].as_f64().expect("accuracy");
    let rows = r["robustness"].as_array().expect("robustness rows");
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (mild, heavy) = (&rows[0], &rows[1]);
    assert_eq!(mild["degradation"], "JPEG quality 90");
    assert_eq!(heavy["degradation"], "face 12 px wide + noise σ 0.1");
    let acc = |row: &serde_json::Value| row["accuracy"].as_f64().expect("accuracy");
    let unchanged = |row: &serde_json::Value| row["unchanged"].as_f64().expect("unchanged");
    assert!(clean > 0.6, "clean accuracy {clean}");
    assert!((acc(mild) - clean).abs() < 0.03, "{} vs {clean}", acc(mild));
    assert!(unchanged(mild) > 0.9, "{}", unchanged(mild));
    assert!(acc(heavy) < clean - 0.1, "{} vs {clean}", acc(heavy));
    assert!(unchanged(heavy) < unchanged(mild));
    let md = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(md.contains("| face 12 px wide + noise σ 0.1 |"), "{md}");
    let mean = format!(
        "| mean of the 2 degraded sets | {:.2} % |",
        (acc(mild) + acc(heavy)) / 2.0 * 100.0
    );
    assert!(md.contains(&mean), "{mean} not in {md}");
}

/// The shipped weights' smoothing of noisy input faces: clean faces read as before, noisy ones
/// keep much of the accuracy the raw network loses.
#[test]
fn eval_smooths_noisy_faces_and_leaves_clean_ones_as_they_were() {
    // 300 real FER+ test faces, scored clean and with sensor noise, by the shipped weights with
    // and without the noise-adaptive smoothing of their input.
    let dir = util::temp_dir("denoise");
    let data = dir.join("data");
    copy_ferplus_split(&data, "FER2013Test", 300);
    let run = |switch: &str| {
        let out = dir.join(format!("eval-{switch}"));
        let done = eval_ferplus_test(
            &data,
            &dir.join("cache"),
            &out,
            &["--degrade", "noise:0.05", "--weights-denoise", switch],
        );
        assert!(done.status.success(), "{}", stderr_line(&done));
        let report = eval_report(&out);
        let r = &report[0];
        let clean = r["accuracy"].as_f64().expect("accuracy");
        let noisy = r["robustness"][0]["accuracy"].as_f64().expect("accuracy");
        let protocol = r["protocol"].as_str().unwrap_or_default().to_string();
        (clean, noisy, protocol)
    };
    let (clean_off, noisy_off, protocol_off) = run("off");
    let (clean_on, noisy_on, protocol_on) = run("on");
    assert!(!protocol_off.contains("smoothed"), "{protocol_off}");
    assert!(
        protocol_on.contains("noisy faces smoothed"),
        "{protocol_on}"
    );
    // Clean faces read as clean: at most a face or two of 300 is smoothed at all.
    assert!(
        (clean_on - clean_off).abs() <= 2.0 / 300.0,
        "clean {clean_on} with smoothing, {clean_off} without"
    );
    // Noise that costs the raw network many faces costs the smoothed one far fewer.
    assert!(noisy_off < clean_off - 0.1, "{noisy_off} vs {clean_off}");
    assert!(
        noisy_on > noisy_off + 0.08,
        "noisy {noisy_on} with smoothing, {noisy_off} without"
    );
    let bad = dgcn()
        .args(["eval", "--weights-denoise", "maybe"])
        .output()
        .expect("runs");
    assert!(!bad.status.success());
    assert!(
        stderr_line(&bad).contains("expected on or off"),
        "{}",
        stderr_line(&bad)
    );
}
