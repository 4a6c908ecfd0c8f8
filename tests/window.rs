//! The real window under Xvfb (Mesa's software renderer): the app runs on the labelled clip,
//! saves a screenshot of its own window with the layout of what it drew, and the test checks the
//! pixels: the frame and the query show a face, the reference is a face like the query, the
//! difference is a colour heat map, and each expression bar is filled as far as its value.
mod util;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    fn start() -> Xvfb {
        for n in 90..120 {
            let lock = PathBuf::from(format!("/tmp/.X{n}-lock"));
            if lock.exists() {
                // A lock whose server is gone (killed without cleaning up) is stale: reuse it.
                let pid = std::fs::read_to_string(&lock).unwrap_or_default();
                let alive = pid
                    .trim()
                    .parse::<u32>()
                    .is_ok_and(|p| Path::new(&format!("/proc/{p}")).exists());
                if alive {
                    continue;
                }
                let _ = std::fs::remove_file(&lock);
                let _ = std::fs::remove_file(format!("/tmp/.X11-unix/X{n}"));
            }
            let mut child = Command::new("Xvfb")
                .arg(format!(":{n}"))
                .args(["-screen", "0", "1600x1000x24", "-nolisten", "tcp"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("Xvfb runs (scripts/setup.sh installs it)");
            let socket = PathBuf::from(format!("/tmp/.X11-unix/X{n}"));
            let t0 = Instant::now();
            while !socket.exists() && t0.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(50));
            }
            if socket.exists() {
                return Xvfb {
                    child,
                    display: format!(":{n}"),
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("no free X display for Xvfb");
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Killed, the server leaves its lock and socket behind: remove them.
        let n = self.display.trim_start_matches(':');
        let _ = std::fs::remove_file(format!("/tmp/.X{n}-lock"));
        let _ = std::fs::remove_file(format!("/tmp/.X11-unix/X{n}"));
    }
}

type Rect = [u32; 4];

fn rect(v: &serde_json::Value) -> Rect {
    let a: Vec<u32> = v
        .as_array()
        .expect("rect")
        .iter()
        .map(|x| x.as_f64().expect("number") as u32)
        .collect();
    [a[0], a[1], a[2], a[3]]
}

/// Pixels strictly inside a rectangle (a 2-pixel margin avoids borders and rounding).
fn pixels(img: &image::RgbaImage, r: Rect) -> Vec<[u8; 3]> {
    let mut out = Vec::new();
    for y in r[1] + 2..r[3].saturating_sub(2) {
        for x in r[0] + 2..r[2].saturating_sub(2) {
            let p = img.get_pixel(x, y).0;
            out.push([p[0], p[1], p[2]]);
        }
    }
    out
}

/// Both rectangles cut to the width and height they share, from their top-left corners.
fn same_size(a: Rect, b: Rect) -> (Rect, Rect) {
    let w = (a[2] - a[0]).min(b[2] - b[0]);
    let h = (a[3] - a[1]).min(b[3] - b[1]);
    let cut = |r: Rect| [r[0], r[1], r[0] + w, r[1] + h];
    (cut(a), cut(b))
}

fn luma(p: [u8; 3]) -> f64 {
    0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64
}

fn std_dev(v: &[f64]) -> f64 {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
}

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va.sqrt() * vb.sqrt())
}

fn is_grey(p: [u8; 3]) -> bool {
    p[0].abs_diff(p[1]) <= 3 && p[1].abs_diff(p[2]) <= 3
}

/// Runs `dgcn ARGS --screenshot DIR/NAME.png` under its own Xvfb and returns the screenshot and
/// the layout the window saved beside it.
fn screenshot_of(
    dir: &Path,
    name: &str,
    args: &[&std::ffi::OsStr],
) -> (image::RgbaImage, serde_json::Value) {
    let xvfb = Xvfb::start();
    let shot = dir.join(format!("{name}.png"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_dgcn"))
        .env("DISPLAY", &xvfb.display)
        .env_remove("WAYLAND_DISPLAY")
        .env("XDG_RUNTIME_DIR", dir)
        .env("DGCN_BLAZEFACE", util::blazeface_path())
        .env("DGCN_LOG", "dgcn=info,warn")
        .env(
            "DGCN_WEIGHTS",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/gcnet.safetensors"),
        )
        .args(args)
        .arg("--screenshot")
        .arg(&shot)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dgcn starts");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(240) {
            let _ = child.kill();
            panic!("the window did not take its screenshot within 240 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(status.success(), "{stderr}");
    let img = image::open(&shot).expect("screenshot PNG").to_rgba8();
    let mut json = shot.into_os_string();
    json.push(".json");
    let layout = serde_json::from_str(&std::fs::read_to_string(&json).expect("layout"))
        .expect("layout JSON");
    (img, layout)
}

/// Query and reference are grey faces, the generated reference resembles the query (drawn as the
/// reference, or beside the person's own neutral face when that is the reference), the difference
/// is a mostly dark colour map, and each bar is filled as far as its value.
fn assert_faces_and_bars_drawn(img: &image::RgbaImage, layout: &serde_json::Value) {
    let query = pixels(img, rect(&layout["query"]));
    let reference = pixels(img, rect(&layout["reference"]));
    let generated_tile = rect(layout.get("generated").unwrap_or(&layout["reference"]));
    let generated = pixels(img, generated_tile);
    for (name, px) in [
        ("query", &query),
        ("reference", &reference),
        ("generated", &generated),
    ] {
        let grey = px.iter().filter(|p| is_grey(**p)).count() as f64 / px.len() as f64;
        assert!(grey > 0.98, "{name}: {:.2} of pixels grey", grey);
        let l: Vec<f64> = px.iter().map(|p| luma(*p)).collect();
        assert!(std_dev(&l) > 20.0, "{name}: std {:.1}", std_dev(&l));
    }
    let ql: Vec<f64> = query.iter().map(|p| luma(*p)).collect();
    // Pixel by pixel over the size both tiles have (a tile can be a pixel wider than another,
    // and rows of different lengths would be compared sheared).
    let (q_tile, g_tile) = same_size(rect(&layout["query"]), generated_tile);
    let luma_of = |r: Rect| -> Vec<f64> { pixels(img, r).into_iter().map(luma).collect() };
    let r = correlation(&luma_of(q_tile), &luma_of(g_tile));
    assert!(r > 0.7, "generated reference vs query correlation {r:.2}");

    let diff = pixels(img, rect(&layout["difference"]));
    let coloured = diff.iter().filter(|p| !is_grey(**p)).count() as f64 / diff.len() as f64;
    let mean_diff = diff.iter().map(|p| luma(*p)).sum::<f64>() / diff.len() as f64;
    let mean_query = ql.iter().sum::<f64>() / ql.len() as f64;
    assert!(coloured > 0.3, "difference: {coloured:.2} coloured");
    assert!(
        mean_diff < mean_query,
        "difference {mean_diff:.0} vs query {mean_query:.0}"
    );

    let bars = layout["bars"].as_array().expect("bars");
    assert_eq!(bars.len(), 8);
    let mut total = 0.0;
    for bar in bars {
        let r = rect(&bar["rect"]);
        let value = bar["value"].as_f64().expect("value");
        let c: Vec<u8> = bar["color"]
            .as_array()
            .expect("color")
            .iter()
            .map(|v| v.as_u64().expect("u8") as u8)
            .collect();
        let y = (r[1] + r[3]) / 2;
        let width = r[2] - r[0];
        let filled = (r[0]..r[2])
            .filter(|&x| {
                let p = img.get_pixel(x, y).0;
                (0..3).all(|i| p[i].abs_diff(c[i]) <= 12)
            })
            .count() as f64;
        let drawn = filled / width as f64;
        assert!(
            (drawn - value).abs() <= 0.02 + 2.0 / width as f64,
            "{}: value {value:.3}, drawn {drawn:.3}",
            bar["label"]
        );
        total += value;
    }
    assert!((total - 1.0).abs() < 0.02, "bars sum to {total}");
}

#[test]
fn the_window_draws_face_reference_difference_and_bars_and_records() {
    let dir = util::temp_dir("window");
    let clip = util::shared_dir().join("clips/synth_tfeid_s01_expressions.mp4");
    let labels = util::shared_dir().join("clips/synth_tfeid_s01_expressions_labels.csv");
    let session = dir.join("session");
    let (img, layout) = screenshot_of(
        &dir,
        "window",
        &[
            "live".as_ref(),
            "--source".as_ref(),
            clip.as_os_str(),
            "--screenshot-after".as_ref(),
            "20".as_ref(),
            "--record".as_ref(),
            session.as_os_str(),
            "--labels".as_ref(),
            labels.as_os_str(),
        ],
    );
    assert_eq!(layout["faces"].as_u64(), Some(1), "one face selected");
    // The own neutral face is taken by itself unless switched off; when it has been (the clip opens
    // on a calm face, but how many frames reach the model under Xvfb varies), the reference tile
    // says so and the generated reference is drawn beside it.
    assert_eq!(layout["auto_neutral"].as_bool(), Some(true));
    let caption = layout["reference_caption"].as_str().expect("caption");
    eprintln!("reference tile: {caption}");
    assert!(
        caption == "generated neutral"
            || (caption == "your neutral face (taken by itself)"
                && layout.get("generated").is_some()),
        "{caption}"
    );
    // The status bar shows the process's CPU use, a figure between 0 and the machine's cores.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
    let cpu = layout["cpu_cores"]
        .as_f64()
        .expect("a CPU figure in the status bar");
    assert!(cpu > 0.0 && cpu <= cores + 0.5, "CPU {cpu} cores");
    // The intensity bar is filled as far as its value.
    let intensity = &layout["intensity"];
    let value = intensity["value"].as_f64().expect("intensity value");
    assert!((0.0..=1.0).contains(&value), "intensity {value}");
    let r = rect(&intensity["track"]);
    let y = (r[1] + r[3]) / 2;
    let filled = (r[0]..r[2])
        .filter(|&x| {
            let p = img.get_pixel(x, y).0;
            (0..3).all(|i| p[i].abs_diff(230) <= 12)
        })
        .count() as f64;
    let width = (r[2] - r[0]) as f64;
    assert!(
        (filled / width - value).abs() <= 0.02 + 2.0 / width,
        "intensity {value:.3}, drawn {:.3}",
        filled / width
    );
    // The live frame holds the performer's face: far from flat.
    let frame: Vec<f64> = pixels(&img, rect(&layout["frame"]))
        .into_iter()
        .map(luma)
        .collect();
    assert!(std_dev(&frame) > 20.0, "frame std {:.1}", std_dev(&frame));
    assert_faces_and_bars_drawn(&img, &layout);

    // What the window recorded reopens: every frame it showed, labelled from the CSV.
    let s = dgcn::session::open_session(&session).expect("the window's recording opens");
    assert!(
        s.manifest.ended_at.is_some(),
        "closing the window ended the recording"
    );
    assert!(
        s.frames().len() >= 20,
        "{} frames recorded",
        s.frames().len()
    );
    let truth = dgcn::session::labels::read_label_csv(&labels).expect("labels");
    for row in &s.rows {
        assert_eq!(row.label, truth[&row.frame], "frame {}", row.frame);
    }
}

#[test]
fn the_session_browser_shows_frame_reference_bars_and_label_bands() {
    let dir = util::temp_dir("browser");
    let session = dir.join("session");
    util::run_ok(
        Command::new(env!("CARGO_BIN_EXE_dgcn"))
            .env("DGCN_BLAZEFACE", util::blazeface_path())
            .env("DGCN_LOG", "error")
            .args([
                "live",
                "--headless",
                "--out",
                "/dev/null",
                "--max-frames",
                "250",
                "--source",
            ])
            .arg(util::shared_dir().join("clips/synth_tfeid_s01_expressions.mp4"))
            .arg("--labels")
            .arg(util::shared_dir().join("clips/synth_tfeid_s01_expressions_labels.csv"))
            .arg("--record")
            .arg(&session),
    );
    let (img, layout) = screenshot_of(
        &dir,
        "browser",
        &[
            "open".as_ref(),
            session.as_os_str(),
            "--frame".as_ref(),
            "45".as_ref(),
        ],
    );
    assert_eq!(layout["frame"].as_u64(), Some(45));
    assert_faces_and_bars_drawn(&img, &layout);
    // The timeline shows the label bands: each band's colour, blended over the dark plot, is
    // present in the plot area.
    let plot = pixels(&img, rect(&layout["timeline"]));
    let bands = layout["bands"].as_array().expect("bands");
    assert!(bands.len() >= 4, "{} bands", bands.len());
    for band in bands {
        let c: Vec<f64> = band["color"]
            .as_array()
            .expect("color")
            .iter()
            .map(|v| v.as_f64().expect("number"))
            .collect();
        if c[0] == c[1] && c[1] == c[2] {
            continue; // neutral's grey band: no hue to look for
        }
        // Same hue as the label colour: the pixel's channels order like the colour's.
        let tinted = plot
            .iter()
            .filter(|p| {
                let q: Vec<f64> = p.iter().map(|&v| v as f64).collect();
                let dot: f64 = (0..3).map(|i| (q[i] - 30.0) * (c[i] - 128.0)).sum();
                !is_grey(**p) && dot > 0.0 && {
                    let qn = (0..3).map(|i| (q[i] - 30.0).powi(2)).sum::<f64>().sqrt();
                    let cn = (0..3).map(|i| (c[i] - 128.0).powi(2)).sum::<f64>().sqrt();
                    dot / (qn * cn + 1e-9) > 0.9
                }
            })
            .count();
        assert!(
            tinted > 500,
            "band {}: {tinted} tinted pixels",
            band["label"]
        );
    }
}

/// A source that ends before `--screenshot-after` frames were shown (one image, 500 asked for):
/// the screenshot is taken at the source's end and the window closes.
#[test]
fn a_source_shorter_than_screenshot_after_still_gets_its_screenshot() {
    let dir = util::temp_dir("short-source");
    let image = util::temp_image(
        dgcn::data::DatasetKind::Tfeid,
        "0111b01.jpg",
        "short_source.jpg",
    );
    let (_img, layout) = screenshot_of(
        &dir,
        "short",
        &[
            "live".as_ref(),
            "--source".as_ref(),
            image.as_os_str(),
            "--screenshot-after".as_ref(),
            "500".as_ref(),
        ],
    );
    assert_eq!(
        layout["faces"].as_u64(),
        Some(1),
        "the image's face is shown"
    );
}
