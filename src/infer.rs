//! Inference on aligned faces: GCNet in eval mode without gradients, on the chosen device.
//! Used by `dgcn infer` and by the live app's inference thread.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tch::{Device, Tensor};

use crate::device::Precision;
use crate::face::{AlignedFace, FACE_SIZE};
use crate::labels::{Expression, NUM_CLASSES};
use crate::model::weights::{self, LoadedModel, WeightsError};
use crate::model::{tensor_values, ReferenceEmbedding};

/// The weights the app loads when none are named: `$DGCN_WEIGHTS`, else the shipped file.
pub fn default_weights_path() -> PathBuf {
    std::env::var_os("DGCN_WEIGHTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/gcnet.safetensors"))
}

#[derive(Debug, Clone)]
pub struct FacePrediction {
    pub probs: [f32; NUM_CLASSES],
    pub label: Expression,
    /// The reference the query was compared with (generated or the user's own), 64×64 grey.
    pub reference: AlignedFace,
    /// The generator's neutral face for this query (equal to `reference` unless `own_reference`).
    pub generated: AlignedFace,
    /// With the person's own neutral face as the reference: every frame of it the model compares
    /// with (the first is `reference`), for recording and re-scoring. None: the generated one.
    pub own_crops: Option<Arc<Vec<AlignedFace>>>,
    /// How far the face is from its reference in the contrastive embedding, scaled to 0 (as
    /// neutral as the reference) … 1 (a typical expression or more).
    pub intensity: f32,
}

/// The person's own neutral face as the model compares with it: the frames of it that were taken
/// (the first is the one shown) and their mean embedding ([`crate::model::GcNet::mean_embedding`]).
#[derive(Debug)]
pub struct OwnFace {
    /// Never empty ([`Predictor::own_face`] refuses an empty list).
    crops: Arc<Vec<AlignedFace>>,
    embedding: ReferenceEmbedding,
}

impl OwnFace {
    /// The frame shown as the own reference.
    pub fn shown(&self) -> &AlignedFace {
        &self.crops[0]
    }
}

impl FacePrediction {
    /// Whether `reference` is the person's own neutral face.
    pub fn own_reference(&self) -> bool {
        self.own_crops.is_some()
    }
}

pub struct Predictor {
    pub model: LoadedModel,
    pub device: Device,
    /// The number format the network runs in: `F32` or `Bf16`, never `Auto`.
    pub format: Precision,
}

fn faces_to_tensor(faces: &[&AlignedFace], device: Device) -> Tensor {
    let mut buf = Vec::with_capacity(faces.len() * FACE_SIZE * FACE_SIZE);
    for f in faces {
        buf.extend_from_slice(&f.pixels);
    }
    let side = FACE_SIZE as i64;
    Tensor::from_slice(&buf)
        .view([faces.len() as i64, 1, side, side])
        .to_device(device)
}

impl Predictor {
    /// Loads the weights to run on `device` in `precision`. `Auto` is f32 on a GPU and on a CPU
    /// without native bf16; on a CPU with native bf16 it is whichever of f32 and bf16 runs these
    /// weights faster here, timed once per process ([`Predictor::timed_on_cpu`]): bf16 was the
    /// faster on two of this project's machines and the slower on a third.
    pub fn load(
        path: &Path,
        device: Device,
        precision: Precision,
    ) -> Result<Predictor, WeightsError> {
        if precision.is_timed_on(device) {
            return Self::timed_on_cpu(path, device);
        }
        let format = match precision.kind_on(device) {
            tch::Kind::BFloat16 => Precision::Bf16,
            _ => Precision::F32,
        };
        let mut model = weights::load(path, device)?;
        model.prepare_for_inference(format.kind_on(device));
        Ok(Predictor {
            model,
            device,
            format,
        })
    }

    /// `Auto` on a CPU with native bf16: the weights loaded in both formats, GCNet's forward at
    /// batch 1 timed alternately (3 warm-up and 15 timed runs each, medians), the faster kept. The
    /// choice is remembered for the rest of the process (per weights file), so that every
    /// predictor of one run computes alike; sessions record the format they were made in
    /// (re-scoring uses it).
    fn timed_on_cpu(path: &Path, device: Device) -> Result<Predictor, WeightsError> {
        use std::collections::HashMap;
        use std::sync::{Mutex, OnceLock};
        static CHOSEN: OnceLock<Mutex<HashMap<PathBuf, Precision>>> = OnceLock::new();
        let chosen = CHOSEN.get_or_init(|| Mutex::new(HashMap::new()));
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let known = chosen.lock().ok().and_then(|m| m.get(&key).copied());
        if let Some(format) = known {
            return Self::load(path, device, format);
        }
        let full = Self::load(path, device, Precision::F32)?;
        let half = Self::load(path, device, Precision::Bf16)?;
        let face = [AlignedFace {
            pixels: vec![0.5; FACE_SIZE * FACE_SIZE],
        }];
        let mut times = [Vec::new(), Vec::new()];
        for round in 0..18 {
            for (slot, p) in [&full, &half].into_iter().enumerate() {
                let t0 = std::time::Instant::now();
                p.predict(&face, None).map_err(|e| WeightsError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!("the network does not run: {e}"),
                })?;
                if round >= 3 {
                    times[slot].push(t0.elapsed().as_secs_f64() * 1000.0);
                }
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::INFINITY)
        };
        let (f32_ms, bf16_ms) = (median(&mut times[0]), median(&mut times[1]));
        let keep = if bf16_ms < f32_ms { half } else { full };
        tracing::info!(
            f32_ms,
            bf16_ms,
            chosen = keep.format.format_on(device),
            "number format chosen by timing GCNet on this CPU"
        );
        if let Ok(mut m) = chosen.lock() {
            m.insert(key, keep.format);
        }
        Ok(keep)
    }

    /// The person's own neutral face from one or more frames of it (the first is the one shown).
    pub fn own_face(&self, crops: Vec<AlignedFace>) -> Result<OwnFace, tch::TchError> {
        if crops.is_empty() {
            return Err(tch::TchError::Shape(
                "an own neutral face needs at least one frame".into(),
            ));
        }
        let refs: Vec<&AlignedFace> = crops.iter().collect();
        let x = faces_to_tensor(&refs, self.device);
        let embedding = tch::no_grad(|| self.model.net.mean_embedding(&x));
        Ok(OwnFace {
            crops: Arc::new(crops),
            embedding,
        })
    }

    /// Predicts all faces in one batch. `own` gives face `i` the person's own neutral face as its
    /// reference: its intensity is read against it, and its probabilities are the mean of those
    /// against its own face and against its generated reference (still returned). The classifier
    /// was trained with generated references only, and the own face alone cost labels: on TFEID
    /// photos jittered as a webcam's frames (1,113 faces of performers it trained on,
    /// 2026-11-30) 1,033 right against 1,075 with the generated reference, both averaged 1,074.
    /// An output that cannot be read back is an error, not a row of zeros.
    pub fn predict(
        &self,
        faces: &[AlignedFace],
        own: Option<(usize, &OwnFace)>,
    ) -> Result<Vec<FacePrediction>, tch::TchError> {
        if faces.is_empty() {
            return Ok(Vec::new());
        }
        let all: Vec<&AlignedFace> = faces.iter().collect();
        let x = faces_to_tensor(&all, self.device);
        let own = own.filter(|(i, _)| *i < faces.len());
        let (probs, distance, reference, generated) = tch::no_grad(|| {
            let net = &self.model.net;
            let generated = net.generator.forward_t(&x, false);
            let reference = match own {
                Some((i, face)) => {
                    let reference = generated.copy();
                    reference
                        .narrow(0, i as i64, 1)
                        .copy_(&faces_to_tensor(&[face.shown()], self.device));
                    reference
                }
                None => generated.shallow_clone(),
            };
            let c = net.compare(
                &x,
                &generated,
                own.map(|(i, face)| (i as i64, &face.embedding)),
            );
            let sidecar = &self.model.sidecar;
            let probs = sidecar.probabilities(&c.logits);
            if let (Some((i, _)), Some((logits, distance))) = (own, &c.own) {
                // The face with its own reference: probabilities of both comparisons averaged,
                // the intensity against its own face.
                let i = i as i64;
                let both = (probs.narrow(0, i, 1) + sidecar.probabilities(logits)) / 2.0;
                probs.narrow(0, i, 1).copy_(&both);
                c.distance.narrow(0, i, 1).copy_(distance);
            }
            (probs, c.distance, reference, generated)
        });
        let (probs, distance, reference, generated) = (
            tensor_values::<f32>(&probs)?,
            tensor_values::<f32>(&distance)?,
            tensor_values::<f32>(&reference)?,
            tensor_values::<f32>(&generated)?,
        );
        let sidecar = &self.model.sidecar;
        let px = FACE_SIZE * FACE_SIZE;
        let n = faces.len();
        if probs.len() != n * NUM_CLASSES
            || distance.len() != n
            || reference.len() != n * px
            || generated.len() != n * px
        {
            return Err(tch::TchError::Shape(format!(
                "model outputs for {n} faces: {} probabilities, {} distances, {} and {} pixels",
                probs.len(),
                distance.len(),
                reference.len(),
                generated.len()
            )));
        }
        let face_at = |v: &[f32], i: usize| AlignedFace {
            pixels: v.get(i * px..(i + 1) * px).unwrap_or_default().to_vec(),
        };
        Ok((0..n)
            .map(|i| {
                let own_reference = own.is_some_and(|(j, _)| j == i);
                let scale = sidecar.intensity_scale_for(own_reference);
                let mut p = [0.0f32; NUM_CLASSES];
                if let Some(src) = probs.get(i * NUM_CLASSES..(i + 1) * NUM_CLASSES) {
                    p.copy_from_slice(src);
                }
                FacePrediction {
                    probs: p,
                    label: Expression::most_likely(&p),
                    reference: face_at(&reference, i),
                    generated: face_at(&generated, i),
                    own_crops: own
                        .filter(|_| own_reference)
                        .map(|(_, face)| face.crops.clone()),
                    intensity: distance
                        .get(i)
                        .map(|&d| scale.intensity(d as f64) as f32)
                        .unwrap_or(0.0),
                }
            })
            .collect())
    }
}

/// `{"neutral": p, "happy": p, …}` in model order.
pub fn probs_json(probs: &[f32; NUM_CLASSES]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for e in Expression::ALL {
        m.insert(
            e.name().into(),
            serde_json::json!((probs[e.index()] as f64 * 1e6).round() / 1e6),
        );
    }
    serde_json::Value::Object(m)
}
