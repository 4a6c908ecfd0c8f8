//! Still images as a source: one image, or every image of a folder in name order.
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use super::{CaptureError, FrameSource, SourceFrame};

/// File name endings taken as images in a folder (any case).
const IMAGE_EXTENSIONS: [&str; 15] = [
    "jpg", "jpeg", "jpe", "png", "bmp", "webp", "tif", "tiff", "gif", "pgm", "ppm", "pnm", "pbm",
    "pam", "tga",
];

/// The image formats dgcn reads, for messages.
pub const IMAGE_FORMATS: &str = "JPEG, PNG, BMP, WebP, TIFF, GIF, PNM or TGA";

/// Reads an image by its content (a PNG named `.jpg` still reads), in any of [`IMAGE_FORMATS`],
/// turned upright as its Exif orientation says (a phone's portrait photo is stored sideways).
pub fn read_image(path: &Path) -> Result<image::DynamicImage, String> {
    let reader = image::ImageReader::open(path)
        .map_err(|e| e.to_string())?
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    decode_upright(reader)
}

/// [`read_image`] for an image already in memory (a dataset archive's member).
pub fn decode_image(bytes: &[u8]) -> Result<image::DynamicImage, String> {
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    decode_upright(reader)
}

fn decode_upright<R: std::io::BufRead + std::io::Seek>(
    reader: image::ImageReader<R>,
) -> Result<image::DynamicImage, String> {
    use image::ImageDecoder;
    let mut decoder = reader.into_decoder().map_err(|e| e.to_string())?;
    // A broken Exif block leaves the pixels as stored rather than losing the image.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = image::DynamicImage::from_decoder(decoder).map_err(|e| e.to_string())?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// The image format a file's content shows, if any ([`IMAGE_FORMATS`]); `None` for anything
/// else (a video, text, an unreadable file).
pub fn image_format(path: &Path) -> Option<image::ImageFormat> {
    image::ImageReader::open(path)
        .ok()?
        .with_guessed_format()
        .ok()?
        .format()
}

/// Whether a GIF file holds more than one frame (an animation, read as a video).
pub fn is_animated_gif(path: &Path) -> bool {
    use image::AnimationDecoder;
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    image::codecs::gif::GifDecoder::new(std::io::BufReader::new(file))
        .map(|d| d.into_frames().take(2).filter_map(Result::ok).count() > 1)
        .unwrap_or(false)
}

pub fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

pub struct ImageFiles {
    origin: PathBuf,
    files: Vec<PathBuf>,
    next: usize,
    /// Images read and images skipped as unreadable so far.
    read: usize,
    skipped: usize,
}

impl ImageFiles {
    pub fn open(path: &Path) -> Result<ImageFiles, CaptureError> {
        let err = |reason: String| CaptureError::Open {
            path: path.to_path_buf(),
            reason,
        };
        let files = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| err(e.to_string()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_image(p))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(err(format!("no images ({IMAGE_FORMATS}) in this folder")));
            }
            files
        } else if path.is_file() {
            vec![path.to_path_buf()]
        } else {
            return Err(err("no such file or folder".into()));
        };
        Ok(ImageFiles {
            origin: path.to_path_buf(),
            files,
            next: 0,
            read: 0,
            skipped: 0,
        })
    }
}

impl FrameSource for ImageFiles {
    /// The next image. In a folder an unreadable image is skipped with a warning (the rest are
    /// not lost), and the source fails only when none of its images could be read.
    fn next_frame(&mut self, _stop: &AtomicBool) -> Result<Option<SourceFrame>, CaptureError> {
        while let Some(path) = self.files.get(self.next) {
            self.next += 1;
            match read_image(path) {
                Ok(img) => {
                    self.read += 1;
                    return Ok(Some(SourceFrame {
                        rgb: img.to_rgb8(),
                        time_s: None,
                    }));
                }
                Err(reason) if self.origin.is_dir() => {
                    tracing::warn!(path = %path.display(), %reason, "unreadable image skipped");
                    self.skipped += 1;
                }
                Err(reason) => {
                    return Err(CaptureError::Decode {
                        path: path.clone(),
                        reason,
                    })
                }
            }
        }
        if self.read == 0 && self.skipped > 0 {
            return Err(CaptureError::Decode {
                path: self.origin.clone(),
                reason: format!("none of its {} images could be read", self.skipped),
            });
        }
        Ok(None)
    }

    fn describe(&self) -> String {
        format!("{} ({} images)", self.origin.display(), self.files.len())
    }
}
