//! Datasets: read a layout (archive or folder), detect and align every face once, cache the
//! 64×64 crops, and split them (subject-independent folds, official test splits).
pub mod datasets;
pub mod folds;
pub mod pack;
pub mod source;

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use datasets::{DatasetKind, SampleInfo, Split};

use crate::face::{aligned_from_image, AlignedFace, Detector, FACE_SIZE};

/// Bumped whenever alignment or preparation changes, so stale caches are not reused. 3
/// (2026-12-01): photos turned upright by their Exif orientation, and faces filling or lost in
/// large photos found (the four supported datasets' faces are unchanged: their images carry no
/// orientation and are too small for either search; a user's own photos may differ). 4
/// (2026-12-02): a face larger than the crop is averaged over each crop pixel's footprint
/// (TFEID's faces change; CK+48's, FER2013's and FER+'s are smaller than the crop and do not).
const PREPARE_VERSION: u32 = 4;
const FACE_PIXELS: usize = FACE_SIZE * FACE_SIZE;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("dataset {path}: wrong layout, expected {expected}")]
    Layout { path: PathBuf, expected: String },
    #[error("preparation cache {path}: {reason}")]
    Cache { path: PathBuf, reason: String },
    #[error(transparent)]
    Detect(#[from] crate::face::detect::DetectError),
}

/// A dataset with every face aligned: `faces` holds N 64×64 grey crops, row-major u8.
#[derive(Debug, Clone)]
pub struct PreparedSet {
    pub kind: DatasetKind,
    pub samples: Vec<SampleInfo>,
    pub faces: Vec<u8>,
    /// Whether BlazeFace found the face (false: aligned with the dataset's mean landmarks).
    pub detected: Vec<bool>,
    /// Images that could not be decoded, skipped.
    pub unreadable: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct CacheMeta {
    version: u32,
    kind: DatasetKind,
    samples: Vec<SampleInfo>,
    detected: Vec<bool>,
    unreadable: Vec<String>,
}

impl PreparedSet {
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn face(&self, i: usize) -> &[u8] {
        &self.faces[i * FACE_PIXELS..(i + 1) * FACE_PIXELS]
    }

    /// Share of faces BlazeFace found.
    pub fn hit_rate(&self) -> f64 {
        if self.detected.is_empty() {
            return 0.0;
        }
        self.detected.iter().filter(|d| **d).count() as f64 / self.detected.len() as f64
    }

    /// Indices of samples in a split.
    pub fn split_indices(&self, split: Split) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| self.samples[i].split == split)
            .collect()
    }

    /// Keeps only the first `n` samples of each (label, split), for quick runs and tests.
    pub fn truncated_per_class(&self, n: usize) -> PreparedSet {
        let mut counts = std::collections::HashMap::new();
        let keep: Vec<usize> = (0..self.len())
            .filter(|&i| {
                let c = counts
                    .entry((self.samples[i].label, self.samples[i].split))
                    .or_insert(0);
                *c += 1;
                *c <= n
            })
            .collect();
        self.subset(&keep)
    }

    pub fn subset(&self, keep: &[usize]) -> PreparedSet {
        PreparedSet {
            kind: self.kind,
            samples: keep.iter().map(|&i| self.samples[i].clone()).collect(),
            faces: keep
                .iter()
                .flat_map(|&i| self.face(i).iter().copied())
                .collect(),
            detected: keep.iter().map(|&i| self.detected[i]).collect(),
            unreadable: self.unreadable.clone(),
        }
    }
}

/// Where prepared sets are cached: `$DGCN_CACHE_DIR`, else `~/.cache/dgcn/prepared`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DGCN_CACHE_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("dgcn").join("prepared")
}

fn cache_key(kind: DatasetKind, root: &Path, detector_model: &Path) -> String {
    let mut h = Sha256::new();
    h.update(format!("v{PREPARE_VERSION} {} ", kind.name()));
    let canonical = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    h.update(canonical.to_string_lossy().as_bytes());
    // An archive by content (a copy of the same archive, or the same one unpacked again with a
    // new time stamp, reuses the cache; hashing 60 MB takes a fraction of a second); a folder by
    // its time stamp.
    let by_content = std::fs::File::open(root)
        .ok()
        .filter(|f| f.metadata().is_ok_and(|m| m.is_file()))
        .and_then(|mut f| {
            let mut content = Sha256::new();
            std::io::copy(&mut f, &mut content).ok()?;
            Some(content.finalize())
        });
    match by_content {
        Some(digest) => h.update(digest),
        None => {
            if let Ok(meta) = std::fs::metadata(root) {
                h.update(meta.len().to_le_bytes());
                if let Ok(t) = meta.modified() {
                    h.update(format!("{t:?}"));
                }
            }
        }
    }
    // The detector model by content, so the same model at another path reuses the cache.
    match std::fs::read(detector_model) {
        Ok(bytes) => h.update(Sha256::digest(&bytes)),
        Err(_) => h.update(detector_model.to_string_lossy().as_bytes()),
    }
    format!("{:x}", h.finalize())[..16].to_string()
}

fn progress(len: u64, msg: String) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>18} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(msg);
    pb
}

/// Prepares a dataset (cached): every image decoded, its largest face detected and aligned.
/// Faces the detector misses are aligned with the mean landmarks (relative to the image size) of
/// the faces it found in the same dataset, so the 48×48 crops get the same framing as the rest.
pub fn prepare(
    kind: DatasetKind,
    root: &Path,
    detector: &Detector,
    cache_dir: &Path,
) -> Result<PreparedSet, DataError> {
    let key = cache_key(kind, root, &detector.model_path);
    let faces_path = cache_dir.join(format!("{}-{key}.faces", kind.name()));
    let meta_path = faces_path.with_extension("json");
    if let Some(set) = load_cache(&faces_path, &meta_path) {
        tracing::info!(dataset = kind.name(), path = %faces_path.display(), "using prepared cache");
        return Ok(set);
    }

    let files = source::read_files(root, |p| kind.wants(p))?;
    let (csvs, images): (
        std::collections::BTreeMap<_, _>,
        std::collections::BTreeMap<_, _>,
    ) = files.into_iter().partition(|(p, _)| p.ends_with(".csv"));
    let paths: Vec<&str> = images.keys().map(String::as_str).collect();
    let samples = kind.samples(&paths, &csvs);
    if samples.is_empty() {
        return Err(DataError::Layout {
            path: root.to_path_buf(),
            expected: format!(
                "{} (found {} candidate files, none matching)",
                kind.expected_layout(),
                images.len()
            ),
        });
    }

    // Pass 1: decode and detect.
    let pb = progress(samples.len() as u64, format!("detect {}", kind.name()));
    let mut decoded = Vec::with_capacity(samples.len());
    let mut unreadable = Vec::new();
    for (n, s) in samples.iter().enumerate() {
        pb.inc(1);
        if n % 5000 == 0 && pb.is_hidden() {
            tracing::info!(
                dataset = kind.name(),
                done = n,
                of = samples.len(),
                "detecting faces"
            );
        }
        let Some(bytes) = images.get(&s.path) else {
            continue;
        };
        match crate::capture::decode_image(bytes) {
            Ok(img) => {
                let rgb = img.to_rgb8();
                let lms = detector.detect(&rgb)?.first().map(|f| f.landmarks);
                decoded.push((s.clone(), rgb, lms));
            }
            Err(e) => {
                tracing::warn!(path = %s.path, error = %e, "unreadable image skipped");
                unreadable.push(s.path.clone());
            }
        }
    }
    pb.finish_and_clear();

    // Mean landmarks relative to image size, over the detected faces.
    let hits: Vec<[[f32; 2]; 5]> = decoded
        .iter()
        .filter_map(|(_, img, l)| l.map(|l| relative_landmarks(&l, img.dimensions())))
        .collect();
    let mean_rel = mean_relative_landmarks(&hits);

    // Pass 2: align.
    let mut set = PreparedSet {
        kind,
        samples: Vec::with_capacity(decoded.len()),
        faces: Vec::with_capacity(decoded.len() * FACE_PIXELS),
        detected: Vec::with_capacity(decoded.len()),
        unreadable,
    };
    for (s, img, lms) in decoded {
        let face = match lms {
            Some(l) => {
                aligned_from_image(&img, &l).unwrap_or_else(|| AlignedFace::from_whole_image(&img))
            }
            None => aligned_without_a_face(&img, mean_rel.as_ref()),
        };
        set.faces.extend(face.to_luma8().into_raw());
        set.detected.push(lms.is_some());
        set.samples.push(s);
    }
    tracing::info!(
        dataset = kind.name(),
        faces = set.len(),
        hit_rate = set.hit_rate(),
        unreadable = set.unreadable.len(),
        "prepared"
    );
    save_cache(&set, &faces_path, &meta_path)?;
    Ok(set)
}

/// Five landmarks as fractions of the image's width and height.
pub fn relative_landmarks(landmarks: &[[f32; 2]; 5], (w, h): (u32, u32)) -> [[f32; 2]; 5] {
    landmarks.map(|[x, y]| [x / w as f32, y / h as f32])
}

/// The mean of landmarks given relative to their images' sizes; `None` for none.
pub fn mean_relative_landmarks(hits: &[[[f32; 2]; 5]]) -> Option<[[f32; 2]; 5]> {
    (!hits.is_empty()).then(|| {
        let mut m = [[0.0f32; 2]; 5];
        for h in hits {
            for k in 0..5 {
                m[k][0] += h[k][0] / hits.len() as f32;
                m[k][1] += h[k][1] / hits.len() as f32;
            }
        }
        m
    })
}

/// The crop of an image in which the detector found no face, as preparation makes it: aligned
/// with the mean landmarks (relative to image size) of the faces found in the same dataset, so
/// that the 48×48 crops get the same framing as the rest; the whole image when there are none.
pub fn aligned_without_a_face(
    img: &image::RgbImage,
    mean_rel: Option<&[[f32; 2]; 5]>,
) -> AlignedFace {
    mean_rel
        .map(|m| m.map(|[x, y]| [x * img.width() as f32, y * img.height() as f32]))
        .and_then(|l| aligned_from_image(img, &l))
        .unwrap_or_else(|| AlignedFace::from_whole_image(img))
}

fn load_cache(faces_path: &Path, meta_path: &Path) -> Option<PreparedSet> {
    let meta: CacheMeta = serde_json::from_slice(&std::fs::read(meta_path).ok()?).ok()?;
    let faces = std::fs::read(faces_path).ok()?;
    // FER+ caches written before the votes were kept are rebuilt once.
    let votes_missing =
        meta.kind == DatasetKind::Ferplus && meta.samples.iter().any(|s| s.votes.is_none());
    if meta.version != PREPARE_VERSION
        || votes_missing
        || faces.len() != meta.samples.len() * FACE_PIXELS
        || meta.detected.len() != meta.samples.len()
    {
        return None;
    }
    Some(PreparedSet {
        kind: meta.kind,
        samples: meta.samples,
        faces,
        detected: meta.detected,
        unreadable: meta.unreadable,
    })
}

fn save_cache(set: &PreparedSet, faces_path: &Path, meta_path: &Path) -> Result<(), DataError> {
    let err = |e: String| DataError::Cache {
        path: faces_path.to_path_buf(),
        reason: e,
    };
    if let Some(dir) = faces_path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    let meta = CacheMeta {
        version: PREPARE_VERSION,
        kind: set.kind,
        samples: set.samples.clone(),
        detected: set.detected.clone(),
        unreadable: set.unreadable.clone(),
    };
    let json = serde_json::to_vec(&meta).map_err(|e| err(e.to_string()))?;
    let tmp = faces_path.with_extension("faces.tmp");
    std::fs::write(&tmp, &set.faces).map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, faces_path).map_err(|e| err(e.to_string()))?;
    let tmp = meta_path.with_extension("json.tmp");
    std::fs::write(&tmp, json).map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, meta_path).map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// Where a dataset lives in a data folder: its archive, or a folder of the same name without
/// `.tar.gz`.
pub fn locate(kind: DatasetKind, data_dir: &Path) -> PathBuf {
    let archive = data_dir.join(kind.archive_name());
    if archive.exists() {
        return archive;
    }
    let folder = data_dir.join(kind.name());
    if folder.exists() {
        return folder;
    }
    archive
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_follows_an_archives_content_not_its_time_stamp() {
        let dir = std::env::temp_dir().join(format!("dgcn-cache-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (a, b) = (
            dir.join("a").join("tfeid.tar.gz"),
            dir.join("b").join("tfeid.tar.gz"),
        );
        for p in [&a, &b] {
            std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
            std::fs::write(p, b"the same archive").expect("write");
        }
        let model = Path::new("no-such-detector.onnx");
        // The same bytes at a path unpacked later (newer time stamp): the same key once the
        // path is the same; a copy elsewhere differs only by its path.
        let before = cache_key(DatasetKind::Tfeid, &a, model);
        let file = std::fs::File::options().write(true).open(&a).expect("open");
        file.set_modified(std::time::SystemTime::UNIX_EPOCH)
            .expect("set time stamp");
        assert_eq!(before, cache_key(DatasetKind::Tfeid, &a, model));
        assert_ne!(before, cache_key(DatasetKind::Tfeid, &b, model));
        // Other bytes: another key.
        std::fs::write(&a, b"another archive").expect("write");
        assert_ne!(before, cache_key(DatasetKind::Tfeid, &a, model));
        // Another dataset kind: another key.
        assert_ne!(
            cache_key(DatasetKind::Tfeid, &a, model),
            cache_key(DatasetKind::Ckplus48, &a, model)
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
