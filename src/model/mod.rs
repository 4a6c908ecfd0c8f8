//! GCNet, the deep generative-contrastive network of Kim, Roh & Lee, "Deep Generative-Contrastive
//! Networks for Facial Expression Recognition" (arXiv 1703.07140), Fig. 3:
//!
//! query x ──Generator──▶ reference G(x) (the person's neutral face)
//! x, G(x) ──ContrastiveEncoder (shared weights)──▶ unit embeddings e_q, e_r
//! |e_q − e_r| (the contrastive representation) ──Classifier──▶ 8 expression logits
//! (training only) ReconstructionDecoder(e) ≈ input, for L_Recon.
pub mod blocks;
pub mod deepen;
pub mod denoise;
pub mod intensity;
pub mod losses;
pub mod standardize;
pub mod subspace;
pub mod weights;
pub mod widen;

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

pub use blocks::{
    Classifier, ContrastiveEncoder, EncoderLayout, Generator, ReconstructionDecoder,
    DEFAULT_DROPOUT,
};

pub use intensity::{IntensityCalibration, IntensityScale, IntensityScales, IntensityWeights};

use crate::labels::NUM_CLASSES;

/// What the classifier is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ClassifierInput {
    /// The paper's Fig. 3: only the contrastive representation |e_q − e_r|.
    Contrast,
    /// The query's embedding beside the contrastive representation, [e_q, |e_q − e_r|]: the
    /// classifier no longer depends on the generator alone to make expressions visible (a face
    /// the generator cannot neutralise still carries its expression in e_q).
    QueryAndContrast,
}

impl ClassifierInput {
    /// Weights written before this choice existed used the paper's layout.
    fn paper() -> ClassifierInput {
        ClassifierInput::Contrast
    }
}

/// The switches of the paper's variants and the width multiplier. Stored in every weights sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Multiplies the 32/64/96 channel widths of every encoder and decoder.
    pub width: f64,
    /// Train with L_Contr (the paper's full model) or without (an ablation).
    pub use_contrastive: bool,
    /// Build the auxiliary reconstruction decoder and train with L_Recon.
    pub use_reconstruction: bool,
    /// Hidden units of the first fully connected layer of the classifier.
    pub hidden: i64,
    #[serde(default = "ClassifierInput::paper")]
    pub classifier_input: ClassifierInput,
    /// Each encoder standardises its input face (zero mean, unit variance per image) instead of
    /// only centring it, so a darker or flatter camera image gives the same features. Part of the
    /// network, hence applied identically in training and live.
    #[serde(default)]
    pub standardize: bool,
    /// Width multiplier of the contrastive encoder alone (None: `width`). The encoder carries
    /// the recognition; the generator only has to take the expression away.
    #[serde(default)]
    pub encoder_width: Option<f64>,
    /// Convolutions in the contrastive encoder's second and third stage (1: the paper).
    #[serde(default = "one")]
    pub encoder_convs: i64,
    /// The contrastive encoder's further convolutions (`encoder_convs` > 1) are residual blocks,
    /// ReLU(y + BN(conv(y))), as `train --deepen-encoder` adds them to trained weights.
    #[serde(default)]
    pub encoder_residual: bool,
    /// At inference, average the logits of the face and of its mirror image (test-time flip;
    /// training is unaffected). Set on existing weights by `dgcn calibrate --flip`.
    #[serde(default)]
    pub flip_average: bool,
    /// The generator also moves pixels: its decoder gives a displacement field that warps the
    /// face before its edit in logit space, so that an open mouth can close by moving the lips
    /// together instead of being painted over (`train --generator-warp`).
    #[serde(default)]
    pub generator_warp: bool,
    /// The reference's mouth region is projected onto this many principal components of neutral
    /// faces' mouths (fitted on the training data's neutral faces, stored with the weights) and
    /// blended back: whatever the generator leaves of an open mouth or bared teeth, the reference
    /// shows a closed one, and the rest of its face stays the generator's. 0: none.
    #[serde(default)]
    pub reference_mouth: usize,
    /// Faces whose pixels carry noise (a webcam in dim light) are smoothed as much as their
    /// estimated noise asks before the generator and the encoder read them; clean faces pass
    /// unchanged ([`denoise`]). Set on existing weights by `dgcn calibrate --denoise`.
    #[serde(default)]
    pub denoise: bool,
}

fn one() -> i64 {
    1
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            width: 1.0,
            use_contrastive: true,
            use_reconstruction: true,
            hidden: 256,
            classifier_input: ClassifierInput::Contrast,
            standardize: false,
            encoder_width: None,
            encoder_convs: 1,
            encoder_residual: false,
            flip_average: false,
            generator_warp: false,
            reference_mouth: 0,
            denoise: false,
        }
    }
}

impl ModelConfig {
    /// The variant the shipped weights use, at `width`: query + contrast classifier input,
    /// standardised input, no reconstruction decoder (L_Contr on).
    pub fn shipped_variant(width: f64) -> ModelConfig {
        ModelConfig {
            width,
            use_reconstruction: false,
            classifier_input: ClassifierInput::QueryAndContrast,
            standardize: true,
            ..ModelConfig::default()
        }
    }

    /// Channels of the three conv stages: 32, 64, 96 times the width multiplier.
    pub fn channels(&self) -> [i64; 3] {
        scaled_channels(self.width)
    }

    /// Channels of the contrastive encoder's three stages.
    pub fn encoder_channels(&self) -> [i64; 3] {
        scaled_channels(self.encoder_width.unwrap_or(self.width))
    }

    fn generator_layout(&self) -> EncoderLayout {
        EncoderLayout {
            channels: self.channels(),
            convs_per_stage: 1,
            residual: false,
            standardize: self.standardize,
            denoise: self.denoise,
        }
    }

    fn encoder_layout(&self) -> EncoderLayout {
        EncoderLayout {
            channels: self.encoder_channels(),
            convs_per_stage: self.encoder_convs,
            residual: self.encoder_residual,
            standardize: self.standardize,
            denoise: self.denoise,
        }
    }

    /// Length of the flattened 8×8×C3 embedding.
    pub fn embedding_len(&self) -> i64 {
        self.encoder_channels()[2] * 8 * 8
    }

    /// Length of the classifier's input.
    pub fn classifier_input_len(&self) -> i64 {
        match self.classifier_input {
            ClassifierInput::Contrast => self.embedding_len(),
            ClassifierInput::QueryAndContrast => 2 * self.embedding_len(),
        }
    }

    /// Checks values that come from flags or a sidecar before a network is built from them
    /// (libtorch panics on a negative layer size).
    pub fn validate(&self) -> Result<(), String> {
        for (name, w) in [
            ("width", Some(self.width)),
            ("encoder width", self.encoder_width),
        ] {
            if let Some(w) = w {
                if !(w.is_finite() && w > 0.0 && w <= 8.0) {
                    return Err(format!("{name} {w} (expected 0 < width ≤ 8)"));
                }
            }
        }
        if !(1..=4).contains(&self.encoder_convs) {
            return Err(format!(
                "encoder convs {} (expected 1 to 4 per stage)",
                self.encoder_convs
            ));
        }
        if self.encoder_residual && self.encoder_convs < 2 {
            return Err("a residual encoder needs 2 or more convolutions per stage".into());
        }
        let mouth_pixels = subspace::FaceRegion::Mouth.pixels() as usize;
        if self.reference_mouth > mouth_pixels {
            return Err(format!(
                "reference mouth {} (expected at most the mouth region's {mouth_pixels} components)",
                self.reference_mouth
            ));
        }
        if !(1..=65_536).contains(&self.hidden) {
            return Err(format!("hidden {} (expected 1 to 65536)", self.hidden));
        }
        Ok(())
    }
}

fn scaled_channels(width: f64) -> [i64; 3] {
    [32.0, 64.0, 96.0].map(|c| ((c * width).round() as i64).max(4))
}

/// Variable group of the generator's weights, so that step 2 can hold them still.
pub const GENERATOR_GROUP: usize = 1;

/// Everything one forward pass produces.
pub struct GcNetOutput {
    /// Synthesised neutral reference G(x), N×1×64×64 in [0, 1].
    pub generated: Tensor,
    /// Unit-length embeddings of query and reference (the one actually compared).
    pub emb_query: Tensor,
    pub emb_reference: Tensor,
    /// Expression logits, N×8.
    pub logits: Tensor,
    /// Reconstructions of query and reference (only with L_Recon, only in training).
    pub recon_query: Option<Tensor>,
    pub recon_reference: Option<Tensor>,
}

/// What [`GcNet::compare`] gives: class logits (N×8, f32) and intensity distances (N) of each
/// face against its reference, and, when an own reference was given, face `i`'s logits (1×8) and
/// distance (1) against it.
pub struct Comparison {
    pub logits: Tensor,
    pub distance: Tensor,
    pub own: Option<(Tensor, Tensor)>,
}

/// A reference given by its embedding (1×D, unit length) rather than an image: the person's own
/// neutral face over several frames ([`GcNet::mean_embedding`]).
#[derive(Debug)]
pub struct ReferenceEmbedding {
    pub direct: Tensor,
    /// The mirror images' embedding, for test-time flip.
    pub mirrored: Option<Tensor>,
}

pub struct GcNet {
    pub config: ModelConfig,
    pub generator: Generator,
    pub encoder: ContrastiveEncoder,
    pub reconstruction: Option<ReconstructionDecoder>,
    pub classifier: Classifier,
    /// The intensity distance's weights (D, f32, on the network's device; see [`intensity`]):
    /// set from the sidecar when weights load, or by fitting; None: the Euclidean distance.
    pub intensity_weights: Option<Tensor>,
}

impl GcNet {
    /// Variables are named `gen/…`, `contr/…`, `recon/…`, `cls/…` so checkpoints stay stable.
    pub fn new(root: &nn::Path, config: ModelConfig) -> GcNet {
        GcNet {
            config,
            generator: Generator::new(
                &(root / "gen").set_group(GENERATOR_GROUP),
                config.generator_layout(),
                config.generator_warp,
                config.reference_mouth,
            ),
            encoder: ContrastiveEncoder::new(
                &(root / "contr"),
                config.encoder_layout(),
                config.use_reconstruction,
            ),
            reconstruction: config
                .use_reconstruction
                .then(|| ReconstructionDecoder::new(&(root / "recon"), config.encoder_channels())),
            classifier: Classifier::new(
                &(root / "cls"),
                config.classifier_input_len(),
                config.hidden,
                NUM_CLASSES as i64,
            ),
            intensity_weights: None,
        }
    }

    /// Reads intensities with `weights` from now on (None: the Euclidean distance).
    pub fn set_intensity_weights(
        &mut self,
        weights: Option<&IntensityWeights>,
        device: tch::Device,
    ) {
        self.intensity_weights = weights.map(|w| w.tensor(device));
    }

    /// |e_q − e_r| of each face and its reference (N×D, f32): what the intensity weights weigh.
    pub fn contrast_of(&self, query: &Tensor, reference: &Tensor) -> Tensor {
        let (emb_query, emb_reference) = self.pair_embeddings(query, reference);
        (emb_query - emb_reference).abs().to_kind(tch::Kind::Float)
    }

    /// Folds every batch norm of the generator and the contrastive encoder into the convolution
    /// before it (the reconstruction decoder is not run at inference): the same function in
    /// fewer operations, for inference only — the variables change in their store, so the
    /// network must not be trained or saved afterwards ([`weights::LoadedModel::prepare_for_inference`]).
    pub fn fold_batch_norms(&mut self) {
        self.generator.fold_batch_norms();
        self.encoder.fold_batch_norms();
    }

    /// Smooth noisy input faces ([`denoise`]) from now on, or stop: the config and the network
    /// together.
    pub fn set_denoise(&mut self, on: bool) {
        self.config.denoise = on;
        self.generator.set_denoise(on);
        self.encoder.set_denoise(on);
    }

    /// Inference half of [`GcNet::forward_t`]: class logits of `query` against a given reference
    /// (generated or the person's own), without running the generator again, and the distance
    /// of their embeddings (N). Query and reference go through the shared encoder as one batch.
    pub fn logits_against(&self, query: &Tensor, reference: &Tensor) -> (Tensor, Tensor) {
        let (emb_query, emb_reference) = self.pair_embeddings(query, reference);
        self.head(&emb_query, &emb_reference)
    }

    /// Unit-length embeddings of `query` and `reference` (N each), as one batch.
    fn pair_embeddings(&self, query: &Tensor, reference: &Tensor) -> (Tensor, Tensor) {
        let n = query.size()[0];
        let (both, _) = self
            .encoder
            .embed_t(&Tensor::cat(&[query, reference], 0), false);
        (both.narrow(0, 0, n), both.narrow(0, n, n))
    }

    /// Inference: class logits and intensity distance for a pair of embeddings.
    fn head(&self, emb_query: &Tensor, emb_reference: &Tensor) -> (Tensor, Tensor) {
        let logits = self
            .classifier
            .forward_t(&self.classifier_input(emb_query, emb_reference), false);
        // f32 whatever the weights compute in (bf16 at inference on some CPUs).
        (
            logits.to_kind(tch::Kind::Float),
            intensity::intensity_distance(
                emb_query,
                emb_reference,
                self.intensity_weights.as_ref(),
            ),
        )
    }

    /// Inference: class logits of `query` against `reference` and their intensity distance,
    /// averaged over the pair and its mirror image when the config asks for test-time flip
    /// (the mirror of the reference stands in for the reference of the mirror).
    pub fn eval_logits(&self, query: &Tensor, reference: &Tensor) -> (Tensor, Tensor) {
        let c = self.compare(query, reference, None);
        (c.logits, c.distance)
    }

    /// [`GcNet::eval_logits`], and face `i` also compared with a reference given by its embedding
    /// (`own`: the person's own neutral face over several frames), from the same embeddings.
    pub fn compare(
        &self,
        query: &Tensor,
        reference: &Tensor,
        own: Option<(i64, &ReferenceEmbedding)>,
    ) -> Comparison {
        let n = query.size()[0];
        let flip = self.config.flip_average;
        let (q, r) = if flip {
            (
                Tensor::cat(&[query, &query.flip([3])], 0),
                Tensor::cat(&[reference, &reference.flip([3])], 0),
            )
        } else {
            (query.shallow_clone(), reference.shallow_clone())
        };
        let (emb_query, emb_reference) = self.pair_embeddings(&q, &r);
        let own = own.filter(|(i, _)| (0..n).contains(i)).map(|(i, own)| {
            let kind = emb_reference.kind();
            let mut rows = vec![emb_query.narrow(0, i, 1)];
            let mut refs = vec![own.direct.to_kind(kind)];
            if flip {
                rows.push(emb_query.narrow(0, n + i, 1));
                refs.push(own.mirrored.as_ref().unwrap_or(&own.direct).to_kind(kind));
            }
            let (l, d) = self.head(&Tensor::cat(&rows, 0), &Tensor::cat(&refs, 0));
            let mean = |t: &Tensor| t.mean_dim(0, true, tch::Kind::Float);
            (mean(&l), mean(&d))
        });
        let (logits, distance) = self.head(&emb_query, &emb_reference);
        if !flip {
            return Comparison {
                logits,
                distance,
                own,
            };
        }
        let avg = |t: &Tensor| (t.narrow(0, 0, n) + t.narrow(0, n, n)) / 2.0;
        Comparison {
            logits: avg(&logits),
            distance: avg(&distance),
            own,
        }
    }

    /// Several frames of one face (K×1×64×64) as one reference: the unit-length mean of their
    /// embeddings (and of their mirror images' when the config asks for test-time flip). Frames
    /// of a still face differ by a pixel of alignment and by camera noise; their mean embedding
    /// is nearer the face's than any one frame's, where a mean image would be blurred.
    pub fn mean_embedding(&self, faces: &Tensor) -> ReferenceEmbedding {
        let mean = |x: &Tensor| {
            let (e, _) = self.encoder.embed_t(x, false);
            let m = e
                .to_kind(tch::Kind::Float)
                .mean_dim(0, true, tch::Kind::Float);
            let norm = m.norm_scalaropt_dim(2.0, [1], true).clamp_min(1e-8);
            m / norm
        };
        ReferenceEmbedding {
            direct: mean(faces),
            mirrored: self.config.flip_average.then(|| mean(&faces.flip([3]))),
        }
    }

    /// The classifier's input for a pair of embeddings, as the config says.
    fn classifier_input(&self, e_q: &Tensor, e_r: &Tensor) -> Tensor {
        let contrast = contrastive_representation(e_q, e_r);
        match self.config.classifier_input {
            ClassifierInput::Contrast => contrast,
            ClassifierInput::QueryAndContrast => {
                let d = e_q.size().last().copied().unwrap_or(1) as f64;
                Tensor::cat(&[e_q * d.sqrt(), contrast], 1)
            }
        }
    }

    /// Runs the whole network. `own_reference`, when given, replaces G(x) as the reference the
    /// query is compared with (the live app's "use my neutral face").
    pub fn forward_t(
        &self,
        query: &Tensor,
        own_reference: Option<&Tensor>,
        train: bool,
    ) -> GcNetOutput {
        let generated = self.generator.forward_t(query, train);
        self.forward_with_generated(query, generated, own_reference, train)
    }

    /// [`GcNet::forward_t`] with G(x) already computed (step 2 runs a held generator without
    /// gradients).
    pub fn forward_with_generated(
        &self,
        query: &Tensor,
        generated: Tensor,
        own_reference: Option<&Tensor>,
        train: bool,
    ) -> GcNetOutput {
        let reference = own_reference.unwrap_or(&generated);
        let (emb_query, idx_q) = self.encoder.embed_t(query, train);
        let (emb_reference, idx_r) = self.encoder.embed_t(reference, train);
        let logits = self
            .classifier
            .forward_t(&self.classifier_input(&emb_query, &emb_reference), train);
        let (recon_query, recon_reference) = match (&self.reconstruction, train) {
            (Some(dec), true) => (
                Some(dec.forward_t(&emb_query, &idx_q, train)),
                Some(dec.forward_t(&emb_reference, &idx_r, train)),
            ),
            _ => (None, None),
        };
        GcNetOutput {
            generated,
            emb_query,
            emb_reference,
            logits,
            recon_query,
            recon_reference,
        }
    }
}

/// Sets the variables of `to` from another network: `value(name, var)` gives a variable's new
/// value (`None`: left as it is), which must have the variable's shape. Runs without gradients;
/// returns how many variables were set. The one loop behind growing a trained network
/// (`widen`, `deepen`) and copying a part of one into another.
pub fn fill_variables(
    to: &nn::VarStore,
    mut value: impl FnMut(&str, &Tensor) -> anyhow::Result<Option<Tensor>>,
) -> anyhow::Result<usize> {
    tch::no_grad(|| {
        let mut set = 0;
        for (name, mut var) in to.variables() {
            let Some(v) = value(&name, &var)? else {
                continue;
            };
            anyhow::ensure!(
                v.size() == var.size(),
                "{name}: shape {:?}, expected {:?}",
                v.size(),
                var.size()
            );
            var.copy_(&v);
            set += 1;
        }
        Ok(set)
    })
}

/// The values of a tensor, copied to the CPU, flattened and converted to `T`. A tensor that
/// cannot be read is an error, never a vector of zeros (which would read as "neutral").
pub fn tensor_values<T: tch::kind::Element + Copy>(t: &Tensor) -> Result<Vec<T>, tch::TchError> {
    Vec::<T>::try_from(&t.f_to_device(tch::Device::Cpu)?.f_flatten(0, -1)?)
}

/// Element-wise distance of two unit embeddings, rescaled by √D so that its entries are O(1)
/// whatever the embedding length.
pub fn contrastive_representation(e_q: &Tensor, e_r: &Tensor) -> Tensor {
    let d = e_q.size().last().copied().unwrap_or(1) as f64;
    (e_q - e_r).abs() * d.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::VarStore, Device, Kind};

    fn check_shapes(device: Device) {
        let vs = VarStore::new(device);
        let net = GcNet::new(&vs.root(), ModelConfig::default());
        let x = Tensor::rand([3, 1, 64, 64], (Kind::Float, device));
        let out = net.forward_t(&x, None, true);
        assert_eq!(out.generated.size(), [3, 1, 64, 64]);
        assert_eq!(out.emb_query.size(), [3, 96 * 8 * 8]);
        assert_eq!(out.logits.size(), [3, 8]);
        let rq = out.recon_query.expect("reconstruction in training");
        assert_eq!(rq.size(), [3, 1, 64, 64]);
        // Embeddings are unit length.
        let norms = out.emb_query.norm_scalaropt_dim(2.0, [1], false);
        let max_err = (norms - 1.0).abs().max().double_value(&[]);
        assert!(max_err < 1e-4, "norm error {max_err}");
        // Generated reference is an image in [0, 1].
        let (lo, hi) = (
            out.generated.min().double_value(&[]),
            out.generated.max().double_value(&[]),
        );
        assert!((0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi));
        // No reconstruction at test time.
        let eval = net.forward_t(&x, None, false);
        assert!(eval.recon_query.is_none());
    }

    #[test]
    fn layer_shapes_follow_fig3_on_cpu() {
        check_shapes(Device::Cpu);
    }

    #[cfg(feature = "cuda-tests")]
    #[test]
    fn layer_shapes_follow_fig3_on_cuda() {
        // A test binary is linked without libtorch_cuda (as-needed): load it as `dgcn` does.
        crate::device::load_cuda();
        assert!(tch::Cuda::is_available(), "cuda-tests needs a GPU");
        check_shapes(Device::Cuda(0));
    }

    #[test]
    fn width_multiplier_scales_channels_and_variant_switch_drops_decoder() {
        let cfg = ModelConfig {
            width: 0.5,
            use_reconstruction: false,
            ..ModelConfig::default()
        };
        assert_eq!(cfg.channels(), [16, 32, 48]);
        let vs = VarStore::new(Device::Cpu);
        let net = GcNet::new(&vs.root(), cfg);
        assert!(net.reconstruction.is_none());
        assert!(vs.variables().keys().all(|k| !k.starts_with("recon")));
        let x = Tensor::rand([2, 1, 64, 64], (Kind::Float, Device::Cpu));
        let out = net.forward_t(&x, None, true);
        assert_eq!(out.emb_query.size(), [2, 48 * 64]);
        assert!(out.recon_query.is_none());
    }

    #[test]
    fn query_and_contrast_doubles_the_classifier_input_and_validation_refuses_bad_sizes() {
        let cfg = ModelConfig {
            width: 0.25,
            classifier_input: ClassifierInput::QueryAndContrast,
            standardize: true,
            ..ModelConfig::default()
        };
        assert_eq!(cfg.classifier_input_len(), 2 * cfg.embedding_len());
        let vs = VarStore::new(Device::Cpu);
        let net = GcNet::new(&vs.root(), cfg);
        let x = Tensor::rand([2, 1, 64, 64], (Kind::Float, Device::Cpu));
        let (logits, distance) = net.logits_against(&x, &x);
        assert_eq!(logits.size(), [2, 8]);
        // Compared with itself, a face is at distance 0.
        assert!(distance.abs().max().double_value(&[]) < 1e-4);
        // Standardised input: a darker, flatter copy of a face embeds the same.
        let dim = &x * 0.5 + 0.1;
        let (e1, _) = net.encoder.embed_t(&x, false);
        let (e2, _) = net.encoder.embed_t(&dim, false);
        assert!((e1 - e2).abs().max().double_value(&[]) < 1e-3);
        for bad in [
            ModelConfig { hidden: -1, ..cfg },
            ModelConfig { width: 0.0, ..cfg },
            ModelConfig {
                width: f64::NAN,
                ..cfg
            },
        ] {
            assert!(bad.validate().is_err());
        }
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn a_wider_deeper_encoder_leaves_the_generator_as_it_is() {
        let cfg = ModelConfig {
            encoder_width: Some(1.0),
            encoder_convs: 2,
            ..ModelConfig::shipped_variant(0.5)
        };
        assert!(cfg.validate().is_ok());
        assert_eq!(cfg.channels(), [16, 32, 48]);
        assert_eq!(cfg.encoder_channels(), [32, 64, 96]);
        let vs = VarStore::new(Device::Cpu);
        let net = GcNet::new(&vs.root(), cfg);
        let vars = vs.variables();
        let shape = |k: &str| vars.get(k).map(|t| t.size());
        assert_eq!(
            shape("gen.enc.stage3.conv.weight"),
            Some(vec![48, 32, 3, 3])
        );
        assert_eq!(
            shape("contr.enc.stage3.conv2.weight"),
            Some(vec![96, 96, 3, 3])
        );
        assert_eq!(
            shape("contr.enc.stage1.conv2.weight"),
            None,
            "stage 1 stays single"
        );
        assert!(vars
            .keys()
            .all(|k| !k.starts_with("gen.") || !k.contains(".conv2.")));
        let x = Tensor::rand([2, 1, 64, 64], (Kind::Float, Device::Cpu));
        let out = net.forward_t(&x, None, true);
        assert_eq!(out.generated.size(), [2, 1, 64, 64]);
        assert_eq!(out.emb_query.size(), [2, 96 * 64]);
        assert_eq!(out.logits.size(), [2, 8]);
        // Sidecars written before these fields existed read as the paper's encoder.
        let old: ModelConfig = serde_json::from_str(
            r#"{"width":0.5,"use_contrastive":true,"use_reconstruction":false,"hidden":256}"#,
        )
        .expect("old sidecar model");
        assert_eq!((old.encoder_width, old.encoder_convs), (None, 1));
        assert_eq!(old.encoder_channels(), old.channels());
        for bad in [
            ModelConfig {
                encoder_convs: 0,
                ..cfg
            },
            ModelConfig {
                encoder_width: Some(-1.0),
                ..cfg
            },
        ] {
            assert!(bad.validate().is_err());
        }
    }

    #[test]
    fn a_tensor_that_cannot_be_read_is_an_error_not_zeros() {
        let probs = Tensor::from_slice(&[0.25f32, 0.75]);
        assert_eq!(
            tensor_values::<f32>(&probs).expect("floats"),
            vec![0.25, 0.75]
        );
        let labels = Tensor::from_slice(&[3i64, 1]);
        assert_eq!(tensor_values::<i64>(&labels).expect("ints"), vec![3, 1]);
        // An undefined tensor (a failed op upstream) is an error, not an empty or zero vector.
        assert!(tensor_values::<f32>(&Tensor::new()).is_err());
    }

    #[test]
    fn test_time_flip_averages_the_face_and_its_mirror_image() {
        let cfg = ModelConfig::shipped_variant(0.25);
        let vs = VarStore::new(Device::Cpu);
        let mut net = GcNet::new(&vs.root(), cfg);
        let x = Tensor::rand([3, 1, 64, 64], (Kind::Float, Device::Cpu));
        let r = Tensor::rand([3, 1, 64, 64], (Kind::Float, Device::Cpu));
        let (plain, _) = net.eval_logits(&x, &r);
        let (direct, _) = net.logits_against(&x, &r);
        assert!(
            (&plain - &direct).abs().max().double_value(&[]) < 1e-6,
            "off: unchanged"
        );
        let (mirrored, _) = net.logits_against(&x.flip([3]), &r.flip([3]));
        net.config.flip_average = true;
        let (averaged, _) = net.eval_logits(&x, &r);
        let expected = (&direct + &mirrored) / 2.0;
        assert!((&averaged - &expected).abs().max().double_value(&[]) < 1e-5);
        assert!(
            (&averaged - &direct).abs().max().double_value(&[]) > 1e-6,
            "on: it changes"
        );
    }

    #[test]
    fn smoothing_changes_noisy_faces_only_and_survives_the_sidecar() {
        let cfg = ModelConfig::shipped_variant(0.25);
        let vs = VarStore::new(Device::Cpu);
        let mut net = GcNet::new(&vs.root(), cfg);
        // A smooth face (a soft vertical ramp with a brighter oval) and the same face with noise.
        let ys = Tensor::arange(64, (Kind::Float, Device::Cpu)).view([64, 1]);
        let xs = Tensor::arange(64, (Kind::Float, Device::Cpu)).view([1, 64]);
        let oval = ((-((&ys - 30.0) / 24.0).square() - ((&xs - 32.0) / 18.0).square() + 1.0) * 5.0)
            .sigmoid();
        let clean = (oval * 0.4 + &ys / 160.0 + 0.2).view([1, 1, 64, 64]);
        let noisy = (&clean + Tensor::randn([1, 1, 64, 64], (Kind::Float, Device::Cpu)) * 0.05)
            .clamp(0.0, 1.0);
        let run = |net: &GcNet, x: &Tensor| {
            let g = net.generator.forward_t(x, false);
            let (logits, _) = net.eval_logits(x, &g);
            (g, logits)
        };
        let (g_clean, l_clean) = run(&net, &clean);
        let (g_noisy, l_noisy) = run(&net, &noisy);
        net.set_denoise(true);
        assert!(net.config.denoise);
        let (g_clean_on, l_clean_on) = run(&net, &clean);
        let (g_noisy_on, l_noisy_on) = run(&net, &noisy);
        assert!(
            g_clean_on.equal(&g_clean),
            "a clean face's reference is unchanged"
        );
        assert!(
            l_clean_on.equal(&l_clean),
            "a clean face's logits are unchanged"
        );
        let moved = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
        assert!(
            moved(&g_noisy_on, &g_noisy) > 1e-3,
            "a noisy face is smoothed"
        );
        assert!(moved(&l_noisy_on, &l_noisy) > 1e-6);
        // Weights written with it on load with it on; a sidecar without the field reads off.
        let on: ModelConfig =
            serde_json::from_value(serde_json::to_value(net.config).expect("json")).expect("cfg");
        assert!(on.denoise);
        let mut old = serde_json::to_value(cfg).expect("json");
        old.as_object_mut().expect("object").remove("denoise");
        let old: ModelConfig = serde_json::from_value(old).expect("old sidecar's model");
        assert!(!old.denoise);
        let mut vs2 = VarStore::new(Device::Cpu);
        let rebuilt = GcNet::new(&vs2.root(), on);
        vs2.copy(&vs).expect("same variables");
        let (g_rebuilt, _) = run(&rebuilt, &noisy);
        assert!(
            moved(&g_rebuilt, &g_noisy_on) < 1e-5,
            "built smoothing from the config"
        );
    }

    #[test]
    fn own_reference_replaces_the_generated_one() {
        let vs = VarStore::new(Device::Cpu);
        let net = GcNet::new(&vs.root(), ModelConfig::default());
        let x = Tensor::rand([1, 1, 64, 64], (Kind::Float, Device::Cpu));
        let same = net.forward_t(&x, Some(&x), false);
        // Query compared with itself: identical embeddings, zero contrastive representation.
        let diff = (&same.emb_query - &same.emb_reference)
            .abs()
            .max()
            .double_value(&[]);
        assert!(diff < 1e-6);
    }
}
