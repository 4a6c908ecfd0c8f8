//! Helpers shared by the integration tests: where ../shared is, a detector on its BlazeFace
//! model, prepared datasets cached under the target folder, and real images pulled from archives.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dgcn::data::{self, source::read_files, DatasetKind, PreparedSet};
use dgcn::face::{Detector, DetectorConfig};

pub fn shared_dir() -> PathBuf {
    std::env::var_os("DGCN_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

pub fn data_dir() -> PathBuf {
    shared_dir().join("data")
}

pub fn blazeface_path() -> PathBuf {
    shared_dir().join("models/blazefaces-640.onnx")
}

pub fn detector() -> Detector {
    Detector::new(&DetectorConfig {
        model_path: Some(blazeface_path()),
        ..DetectorConfig::default()
    })
    .expect("BlazeFace from ../shared/models")
}

pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("prepared")
}

pub fn prepared(kind: DatasetKind) -> PreparedSet {
    let root = data::locate(kind, &data_dir());
    data::prepare(kind, &root, &detector(), &cache_dir()).expect("dataset prepares")
}

/// The bytes of the first file in a dataset archive whose path ends with `suffix`.
pub fn archive_file(kind: DatasetKind, suffix: &str) -> Vec<u8> {
    let files = read_files(&data::locate(kind, &data_dir()), |p| p.ends_with(suffix))
        .expect("archive reads");
    files.into_values().next().expect("file present in archive")
}

/// Writes a real dataset image to a temporary file and returns its path.
pub fn temp_image(kind: DatasetKind, suffix: &str, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("images");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, archive_file(kind, suffix)).expect("write image");
    path
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The `dgcn` binary with the development BlazeFace model and the shipped weights.
pub fn dgcn() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dgcn"));
    c.env("DGCN_BLAZEFACE", blazeface_path())
        .env("DGCN_LOG", "dgcn=info,warn")
        .env(
            "DGCN_WEIGHTS",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/gcnet.safetensors"),
        );
    c
}

/// Runs a command and asserts that it succeeded, showing its standard error if not.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The last line of a command's standard error: where dgcn prints its one-line `error: …`.
pub fn last_stderr_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .trim()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}
