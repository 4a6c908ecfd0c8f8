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
            if Path::new(&format!("/tmp/.X{n}-lock")).exists() {
                continue;
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

#[test]
fn the_window_draws_face_reference_difference_and_bars() {
    let xvfb = Xvfb::start();
    let dir = util::temp_dir("window");
    let shot = dir.join("window.png");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dgcn"))
        .env("DISPLAY", &xvfb.display)
        .env_remove("WAYLAND_DISPLAY")
        .env("XDG_RUNTIME_DIR", &dir)
        .env("DGCN_BLAZEFACE", util::blazeface_path())
        .env("DGCN_LOG", "dgcn=info,warn")
        .env(
            "DGCN_WEIGHTS",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/gcnet.safetensors"),
        )
        .args(["live", "--source"])
        .arg(util::shared_dir().join("clips/synth_tfeid_s01_expressions.mp4"))
        .arg("--screenshot")
        .arg(&shot)
        .args(["--screenshot-after", "20"])
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
    let layout: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("window.png.json")).expect("layout"),
    )
    .expect("layout JSON");
    assert_eq!(layout["faces"].as_u64(), Some(1), "one face selected");

    // The live frame holds the performer's face: far from flat.
    let frame: Vec<f64> = pixels(&img, rect(&layout["frame"]))
        .into_iter()
        .map(luma)
        .collect();
    assert!(std_dev(&frame) > 20.0, "frame std {:.1}", std_dev(&frame));

    // Query and reference: grey faces, and the reference resembles the query.
    let query = pixels(&img, rect(&layout["query"]));
    let reference = pixels(&img, rect(&layout["reference"]));
    for (name, px) in [("query", &query), ("reference", &reference)] {
        let grey = px.iter().filter(|p| is_grey(**p)).count() as f64 / px.len() as f64;
        assert!(grey > 0.98, "{name}: {:.2} of pixels grey", grey);
        let l: Vec<f64> = px.iter().map(|p| luma(*p)).collect();
        assert!(std_dev(&l) > 20.0, "{name}: std {:.1}", std_dev(&l));
    }
    let ql: Vec<f64> = query.iter().map(|p| luma(*p)).collect();
    let rl: Vec<f64> = reference.iter().map(|p| luma(*p)).collect();
    let r = correlation(&ql, &rl);
    assert!(r > 0.7, "reference vs query correlation {r:.2}");

    // Difference: a colour map, mostly dark (the faces agree in most places).
    let diff = pixels(&img, rect(&layout["difference"]));
    let coloured = diff.iter().filter(|p| !is_grey(**p)).count() as f64 / diff.len() as f64;
    let mean_diff = diff.iter().map(|p| luma(*p)).sum::<f64>() / diff.len() as f64;
    let mean_query = ql.iter().sum::<f64>() / ql.len() as f64;
    assert!(coloured > 0.3, "difference: {coloured:.2} coloured");
    assert!(
        mean_diff < mean_query,
        "difference {mean_diff:.0} vs query {mean_query:.0}"
    );

    // Bars: along each track's middle row, the expression's colour covers its value.
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
