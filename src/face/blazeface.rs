//! BlazeFace on our own ONNX Runtime session. rust-faces builds its session with ONNX Runtime's
//! defaults (a thread per core whose workers spin between calls; measured: one thread at 0.5–1
//! core while the camera-paced pipeline needed 0.3 in all) and ignores its own thread settings,
//! so we run the model ourselves: one process-wide thread pool of the size asked for, without
//! spinning, and rust-faces' anchor decoding and non-maximum suppression on the outputs. The
//! model's subnormal weights are flushed to zero as it is loaded (`super::subnormal`: the same
//! outputs; on an Intel CPU a whole frame 29 ms instead of 54 in `dgcn bench`).
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use image::RgbImage;
use ndarray::{Array4, CowArray};
use ort::tensor::OrtOwnedTensor;
use rust_faces::priorboxes::PriorBoxes;
use rust_faces::{BlazeFaceParams, Face};

/// The ONNX Runtime environment, made once per process with its intra-op pool: sessions share
/// it, and its workers block instead of spinning when there is no work.
fn environment(threads: usize) -> Result<Arc<ort::Environment>, String> {
    static ENV: OnceLock<Result<Arc<ort::Environment>, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let threads = threads.clamp(1, 64).to_string();
        ort::Environment::builder()
            .with_name("dgcn-blazeface")
            .with_global_thread_pool(vec![
                ("intra_op_parallelism".into(), threads),
                ("inter_op_parallelism".into(), "1".into()),
                ("spin_control".into(), "0".into()),
            ])
            .build()
            .map(|e| e.into_arc())
            .map_err(|e| e.to_string())
    })
    .clone()
}

/// The model file's bytes, its subnormal weights flushed (`flush`), and how many were. Read
/// once per file and kept for the process (ONNX Runtime's in-memory session borrows them; a
/// process loads one or two models of 0.7 MB); a file replaced since (another size or time) is
/// read again.
fn model_bytes(path: &Path, flush: bool) -> Result<(&'static [u8], usize), String> {
    type Key = (PathBuf, bool, u64, Option<SystemTime>);
    type Loaded = HashMap<Key, (&'static [u8], usize)>;
    static MODELS: OnceLock<Mutex<Loaded>> = OnceLock::new();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
    let key = (path.to_path_buf(), flush, meta.len(), meta.modified().ok());
    let mut models = MODELS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(&loaded) = models.get(&key) {
        return Ok(loaded);
    }
    let mut bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let mut flushed = 0;
    if flush {
        match super::subnormal::flush_subnormal_weights(&mut bytes) {
            Ok(n) => flushed = n,
            // ONNX Runtime reads the file as it is and says what is wrong with it.
            Err(e) => tracing::warn!(path = %path.display(), "weights not checked: {e}"),
        }
    }
    let loaded = (&*Box::leak(bytes.into_boxed_slice()), flushed);
    models.insert(key, loaded);
    Ok(loaded)
}

pub struct BlazeFaceSession {
    session: ort::InMemorySession<'static>,
    params: BlazeFaceParams,
    /// How many subnormal weights were flushed to zero as the model was loaded.
    pub subnormal_weights_flushed: usize,
}

impl BlazeFaceSession {
    /// Loads the model, its subnormal weights flushed to zero unless `flush` is false. The
    /// first session of the process sets the pool's size (`threads`).
    pub fn load(
        path: &Path,
        threads: usize,
        params: BlazeFaceParams,
        flush: bool,
    ) -> Result<Self, String> {
        let env = environment(threads)?;
        let (bytes, subnormal_weights_flushed) = model_bytes(path, flush)?;
        let session = ort::SessionBuilder::new(&env)
            .and_then(|b| b.with_disable_per_session_threads())
            .and_then(|b| b.with_model_from_memory(bytes))
            .map_err(|e| e.to_string())?;
        if session.outputs.len() < 3 {
            return Err(format!(
                "{} outputs (a BlazeFace model has boxes, scores and landmarks)",
                session.outputs.len()
            ));
        }
        Ok(BlazeFaceSession {
            session,
            params,
            subnormal_weights_flushed,
        })
    }

    /// Faces in an image whose sides are multiples of 16 (see `fit_to_grid`), in its pixels.
    pub fn detect(&self, img: &RgbImage) -> Result<Vec<Face>, String> {
        let (w, h) = (img.width() as usize, img.height() as usize);
        // BGR planes, mean-subtracted, as the model was trained (OpenCV order); filled as one
        // flat buffer, without a bounds-checked 4-D index per value.
        const MEAN: [f32; 3] = [104.0, 117.0, 123.0];
        let plane = h * w;
        let mut planes = vec![0.0f32; 3 * plane];
        for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
            for c in 0..3 {
                planes[c * plane + i] = px[2 - c] as f32 - MEAN[c];
            }
        }
        let input = Array4::from_shape_vec((1, 3, h, w), planes).map_err(|e| e.to_string())?;
        let input = CowArray::from(input.into_dyn());
        let value =
            ort::Value::from_array(self.session.allocator(), &input).map_err(|e| e.to_string())?;
        let outputs = self.session.run(vec![value]).map_err(|e| e.to_string())?;
        let extract = |i: usize| -> Result<Vec<f32>, String> {
            let t: OrtOwnedTensor<f32, _> = outputs[i].try_extract().map_err(|e| e.to_string())?;
            Ok(t.view().iter().copied().collect())
        };
        let (boxes, scores, landmarks) = (extract(0)?, extract(1)?, extract(2)?);
        let priors = PriorBoxes::new(&self.params.prior_boxes, (w, h));
        let n = priors.anchors.len();
        if boxes.len() != n * 4 || scores.len() != n * 2 || landmarks.len() != n * 10 {
            return Err(format!(
                "unexpected output sizes {}, {}, {} for {n} anchors",
                boxes.len(),
                scores.len(),
                landmarks.len()
            ));
        }
        let faces = priors
            .anchors
            .iter()
            .enumerate()
            .filter(|(i, _)| scores[i * 2 + 1] > self.params.score_threshold)
            .map(|(i, prior)| {
                let b = &boxes[i * 4..i * 4 + 4];
                let rect = priors
                    .decode_box(prior, &(b[0], b[1], b[2], b[3]))
                    .scale(w as f32, h as f32);
                let marks = landmarks[i * 10..i * 10 + 10]
                    .chunks_exact(2)
                    .map(|p| {
                        let (x, y) = priors.decode_landmark(prior, (p[0], p[1]));
                        (x * w as f32, y * h as f32)
                    })
                    .collect();
                Face {
                    rect,
                    landmarks: Some(marks),
                    confidence: scores[i * 2 + 1],
                }
            })
            .collect();
        Ok(self.params.nms.suppress_non_maxima(faces))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_file_is_read_once_and_again_when_it_is_replaced() {
        let path = std::env::temp_dir().join(format!("dgcn-model-bytes-{}", std::process::id()));
        std::fs::write(&path, b"first").expect("temp file");
        let (first, flushed) = model_bytes(&path, false).expect("reads");
        assert_eq!((first, flushed), (&b"first"[..], 0));
        let (again, _) = model_bytes(&path, false).expect("reads");
        assert!(
            std::ptr::eq(first, again),
            "the same file is not read twice"
        );
        // A corrupt or wrong file replaced by another: the new bytes, not the kept ones.
        std::fs::write(&path, b"a longer second file").expect("temp file");
        let (second, _) = model_bytes(&path, false).expect("reads");
        assert_eq!(second, b"a longer second file");
        // Not a model: nothing to flush, the bytes as they are (ONNX Runtime says what is wrong).
        let (as_is, flushed) = model_bytes(&path, true).expect("reads");
        assert_eq!((as_is, flushed), (&b"a longer second file"[..], 0));
        std::fs::remove_file(&path).expect("removes");
        assert!(
            model_bytes(&path, true).is_err(),
            "a missing file is an error"
        );
    }
}
