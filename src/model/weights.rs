//! Weights on disk: `NAME.safetensors` (the VarStore) plus `NAME.json`, a sidecar with the class
//! order, input size, model variant, training data, metrics and the data's research-only caveat.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::{nn::VarStore, Device};

use super::{
    GcNet, IntensityCalibration, IntensityScale, IntensityScales, IntensityWeights, ModelConfig,
};
use crate::face::FACE_SIZE;
use crate::labels::class_names;

pub const FORMAT: &str = "dgcn-weights/1";

/// Caveat carried by every weights file trained on the research datasets.
pub const RESEARCH_CAVEAT: &str = "Trained on TFEID, CK+ and FER2013/FER+ images, which their owners license for non-commercial research only; these weights inherit that restriction.";

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("weights file {0} not found (expected a .safetensors file written by `dgcn train`)")]
    Missing(PathBuf),
    #[error("weights sidecar {path}: {reason} (expected the JSON written beside the .safetensors by `dgcn train`)")]
    Sidecar { path: PathBuf, reason: String },
    #[error("weights file {path}: {reason} (expected GCNet safetensors matching its sidecar)")]
    Corrupt { path: PathBuf, reason: String },
    #[error("writing weights {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sidecar {
    pub format: String,
    pub classes: Vec<String>,
    pub input_size: usize,
    pub model: ModelConfig,
    /// Free-form description of the training run (datasets, epochs, seed, command).
    pub training: serde_json::Value,
    /// Metrics measured on held-out data, when any.
    pub metrics: serde_json::Value,
    pub caveat: String,
    /// SHA-256 of the .safetensors file.
    pub sha256: String,
    /// Softmax temperature fitted on validation data (temperature scaling): the probabilities
    /// shown and written are softmax(logits / T). 1 for weights written before it was fitted.
    #[serde(default = "unit_temperature")]
    pub temperature: f64,
    /// How embedding distances map to the 0–1 intensity, fitted on the training faces (absent in
    /// weights written before it was: L_Contr's margin is used then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intensity_scale: Option<IntensityScale>,
    /// The same for the person's own neutral face as the reference (fitted on faces with another
    /// neutral photo of the same person; absent in weights written before it was: the scale above
    /// is used then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own_intensity_scale: Option<IntensityScale>,
    /// Added to the logits before the temperature (logit adjustment, −τ·log prior, fitted on
    /// validation data): rare expressions are not drowned by frequent ones. None: no adjustment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_bias: Option<Vec<f64>>,
    /// The intensity distance's weights, one per embedding element (see
    /// [`crate::model::intensity`]); absent in weights written before they were fitted: the
    /// Euclidean distance is used then. Last, being long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intensity_weights: Option<IntensityWeights>,
}

impl Sidecar {
    /// The intensity scales the sidecar holds.
    pub fn intensity_scales(&self) -> IntensityScales {
        IntensityScales {
            generated: self.intensity_scale,
            own: self.own_intensity_scale,
        }
    }

    /// The scale for a face's intensity: `own` when its reference is the person's own neutral face.
    pub fn intensity_scale_for(&self, own: bool) -> IntensityScale {
        let own = if own { self.own_intensity_scale } else { None };
        own.or(self.intensity_scale)
            .unwrap_or(IntensityScale::FROM_MARGIN)
    }

    /// Probabilities from raw logits (N×8): softmax((logits + bias) / T).
    pub fn probabilities(&self, logits: &tch::Tensor) -> tch::Tensor {
        self.adjusted_logits(logits).softmax(-1, tch::Kind::Float)
    }

    /// (logits + bias) / T, the logits the app's probabilities come from.
    pub fn adjusted_logits(&self, logits: &tch::Tensor) -> tch::Tensor {
        let biased = match &self.class_bias {
            Some(b) => {
                let b: Vec<f32> = b.iter().map(|&v| v as f32).collect();
                logits + tch::Tensor::from_slice(&b).to_device(logits.device())
            }
            None => logits.shallow_clone(),
        };
        biased / self.temperature
    }
}

/// Rewrites only the calibration of a weights file's sidecar (the variables stay as they are),
/// with the inference switches (test-time flip, denoising) of `switches`.
pub fn write_calibration(
    weights: &Path,
    temperature: f64,
    class_bias: Option<Vec<f64>>,
    calibration: serde_json::Value,
    intensity: IntensityCalibration,
    switches: &ModelConfig,
) -> Result<Sidecar, WeightsError> {
    let mut side = read_sidecar(weights)?;
    side.model.flip_average = switches.flip_average;
    side.model.denoise = switches.denoise;
    side.temperature = temperature;
    side.class_bias = class_bias;
    // New scales go with the distance they were fitted on: the weights they were measured with
    // replace the old ones, or are dropped when the scales were fitted on the Euclidean distance.
    let scales = intensity.scales;
    if scales.generated.is_some() || scales.own.is_some() {
        side.intensity_weights = intensity.weights;
    }
    side.intensity_scale = scales.generated.or(side.intensity_scale);
    side.own_intensity_scale = scales.own.or(side.own_intensity_scale);
    if let serde_json::Value::Object(m) = &mut side.metrics {
        m.insert("calibration".into(), calibration);
    }
    let path = sidecar_path(weights);
    let werr = |reason: String| WeightsError::Write {
        path: path.clone(),
        reason,
    };
    let json = serde_json::to_string_pretty(&side).map_err(|e| werr(e.to_string()))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json).map_err(|e| werr(e.to_string()))?;
    std::fs::rename(&tmp, &path).map_err(|e| werr(e.to_string()))?;
    Ok(side)
}

fn unit_temperature() -> f64 {
    1.0
}

pub fn sidecar_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

/// A loaded model with its variable store and sidecar.
pub struct LoadedModel {
    pub vs: VarStore,
    pub net: GcNet,
    pub sidecar: Sidecar,
    pub path: PathBuf,
}

impl LoadedModel {
    /// Readies the network for inference: its batch norms folded into the convolutions before
    /// them (computed in f32), then the weights stored in `kind` (f32 or bf16); the network casts
    /// its input to match and returns its logits and images in f32. Never for weights that are
    /// trained or saved again.
    pub fn prepare_for_inference(&mut self, kind: tch::Kind) {
        self.vs.float();
        self.net.fold_batch_norms();
        if kind == tch::Kind::BFloat16 {
            self.vs.bfloat16();
        }
    }
}

/// What a sidecar says beside the variables: the model variant, how it was trained, what it
/// measured and its fitted temperature.
pub struct SidecarInfo {
    pub config: ModelConfig,
    pub training: serde_json::Value,
    pub metrics: serde_json::Value,
    pub temperature: f64,
    pub intensity: IntensityCalibration,
}

pub fn save(vs: &VarStore, path: &Path, info: SidecarInfo) -> Result<Sidecar, WeightsError> {
    let werr = |reason: String| WeightsError::Write {
        path: path.to_path_buf(),
        reason,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| werr(e.to_string()))?;
    }
    // Write to a temporary name and rename, so a crash never leaves half a weights file. The
    // name keeps the .safetensors extension: tch picks the format from it.
    let tmp = path.with_extension("tmp.safetensors");
    vs.save(&tmp).map_err(|e| werr(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| werr(e.to_string()))?;
    let sidecar = Sidecar {
        format: FORMAT.into(),
        classes: class_names(),
        input_size: FACE_SIZE,
        model: info.config,
        training: info.training,
        metrics: info.metrics,
        caveat: RESEARCH_CAVEAT.into(),
        sha256: sha256_file(path).map_err(|e| werr(e.to_string()))?,
        temperature: info.temperature,
        intensity_scale: info.intensity.scales.generated,
        own_intensity_scale: info.intensity.scales.own,
        class_bias: None,
        intensity_weights: info.intensity.weights,
    };
    let json = serde_json::to_string_pretty(&sidecar).map_err(|e| werr(e.to_string()))?;
    let side = sidecar_path(path);
    let tmp = side.with_extension("json.tmp");
    std::fs::write(&tmp, json).map_err(|e| werr(e.to_string()))?;
    std::fs::rename(&tmp, &side).map_err(|e| werr(e.to_string()))?;
    Ok(sidecar)
}

pub fn read_sidecar(weights: &Path) -> Result<Sidecar, WeightsError> {
    let path = sidecar_path(weights);
    let text = std::fs::read_to_string(&path).map_err(|e| WeightsError::Sidecar {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let sidecar: Sidecar = serde_json::from_str(&text).map_err(|e| WeightsError::Sidecar {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if sidecar.classes != class_names() || sidecar.input_size != FACE_SIZE {
        return Err(WeightsError::Sidecar {
            path,
            reason: format!(
                "classes {:?} / input size {} do not match this build's {:?} / {}",
                sidecar.classes,
                sidecar.input_size,
                class_names(),
                FACE_SIZE
            ),
        });
    }
    if let Err(reason) = sidecar.model.validate() {
        return Err(WeightsError::Sidecar {
            path,
            reason: format!("model {reason}"),
        });
    }
    if let Some(b) = &sidecar.class_bias {
        if b.len() != sidecar.classes.len() || !b.iter().all(|v| v.is_finite()) {
            return Err(WeightsError::Sidecar {
                path,
                reason: format!(
                    "class_bias: expected {} finite numbers",
                    sidecar.classes.len()
                ),
            });
        }
    }
    if let Some(w) = &sidecar.intensity_weights {
        if let Err(reason) = w.check(sidecar.model.embedding_len()) {
            return Err(WeightsError::Sidecar { path, reason });
        }
    }
    if !(sidecar.temperature.is_finite() && sidecar.temperature > 0.0) {
        return Err(WeightsError::Sidecar {
            path,
            reason: format!("temperature {} (expected > 0)", sidecar.temperature),
        });
    }
    Ok(sidecar)
}

pub fn load(path: &Path, device: Device) -> Result<LoadedModel, WeightsError> {
    if !path.is_file() {
        return Err(WeightsError::Missing(path.to_path_buf()));
    }
    let sidecar = read_sidecar(path)?;
    let mut vs = VarStore::new(device);
    let mut net = GcNet::new(&vs.root(), sidecar.model);
    net.set_intensity_weights(sidecar.intensity_weights.as_ref(), device);
    let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| vs.load(path)));
    match loaded {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err(WeightsError::Corrupt {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
        }
        Err(_) => {
            return Err(WeightsError::Corrupt {
                path: path.to_path_buf(),
                reason: "libtorch could not read it".into(),
            })
        }
    }
    Ok(LoadedModel {
        vs,
        net,
        sidecar,
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load_round_trips_and_corruption_is_an_error() {
        let dir = std::env::temp_dir().join(format!("dgcn-weights-{}", std::process::id()));
        let path = dir.join("w.safetensors");
        let vs = VarStore::new(Device::Cpu);
        let cfg = ModelConfig {
            width: 0.25,
            ..ModelConfig::default()
        };
        let _net = GcNet::new(&vs.root(), cfg);
        let side = save(
            &vs,
            &path,
            SidecarInfo {
                config: cfg,
                training: serde_json::json!({}),
                metrics: serde_json::json!({}),
                temperature: 1.5,
                intensity: IntensityCalibration {
                    weights: Some(
                        IntensityWeights::new(
                            vec![0.5; cfg.embedding_len() as usize],
                            cfg.embedding_len(),
                        )
                        .expect("weights"),
                    ),
                    scales: IntensityScales {
                        generated: Some(IntensityScale {
                            neutral: 0.1,
                            expressive: 0.6,
                        }),
                        own: Some(IntensityScale {
                            neutral: 0.5,
                            expressive: 0.9,
                        }),
                    },
                },
            },
        )
        .expect("saved");
        assert_eq!(side.temperature, 1.5);
        let read = read_sidecar(&path).expect("sidecar");
        assert_eq!(read.intensity_scale, side.intensity_scale);
        assert_eq!(read.own_intensity_scale, side.own_intensity_scale);
        assert_eq!(read.intensity_weights, side.intensity_weights);
        assert_eq!(read.intensity_scale_for(true).neutral, 0.5);
        assert_eq!(read.intensity_scale_for(false).neutral, 0.1);
        assert_eq!(side.sha256, sha256_file(&path).expect("hash"));
        let loaded = load(&path, Device::Cpu).expect("loaded");
        assert_eq!(loaded.sidecar.model, cfg);
        assert!(loaded.net.intensity_weights.is_some());
        let a = vs.variables();
        let b = loaded.vs.variables();
        for (k, v) in &a {
            let w = b.get(k).expect("same keys");
            assert!(v.equal(w), "{k}");
        }
        std::fs::write(&path, b"not a safetensors file").expect("write");
        assert!(matches!(
            load(&path, Device::Cpu),
            Err(WeightsError::Corrupt { .. })
        ));
        assert!(matches!(
            load(&dir.join("nope.safetensors"), Device::Cpu),
            Err(WeightsError::Missing(_))
        ));
        // A sidecar whose model cannot be built is refused, not a libtorch panic.
        let side_path = sidecar_path(&path);
        let text = std::fs::read_to_string(&side_path).expect("sidecar");
        let bad = text.replace("\"hidden\": 256", "\"hidden\": -1");
        assert_ne!(bad, text);
        std::fs::write(&side_path, bad).expect("write");
        let err = read_sidecar(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("hidden -1"), "{err}");
        // Intensity weights of the wrong length or sign are refused with what was expected.
        let mut side: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let mut refusal = |weights: serde_json::Value| {
            side["intensity_weights"] = weights;
            std::fs::write(&side_path, side.to_string()).expect("write");
            read_sidecar(&path)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let err = refusal(serde_json::json!([0.5, 0.5]));
        assert!(err.contains("2 intensity weights"), "{err}");
        let err = refusal(serde_json::json!(vec![-0.5; cfg.embedding_len() as usize]));
        assert!(err.contains("non-negative"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
