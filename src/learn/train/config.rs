//! What a training run is asked to do: `dgcn train`'s flags, also written as the run's
//! `config.json` and into the weights' sidecar.
use serde::{Deserialize, Serialize};

use crate::model::subspace::FaceRegion;
use crate::model::ModelConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    pub model: ModelConfig,
    /// Step 1: epochs of generator-only training on neutral pairs.
    pub gen_epochs: usize,
    /// Step 2: epochs of end-to-end training.
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// Step 1's learning rate when it differs from step 2's (fine-tuning a pretrained network
    /// with a small `lr` while its generator learns from scratch).
    #[serde(default)]
    pub gen_lr: Option<f64>,
    pub seed: u64,
    pub lambda_gen: f64,
    pub lambda_contr: f64,
    pub lambda_recon: f64,
    pub margin: f64,
    pub label_smoothing: f64,
    pub augment: bool,
    /// Class weights ∝ (class frequency)^−balance in L_Cls: 0 off, 1 fully inverse frequency.
    pub class_balance: f64,
    /// Let L_Cls, L_Contr and L_Gen reach the generator in step 2 (the paper's end-to-end step)
    /// instead of holding it.
    pub generator_in_step2: bool,
    /// A frozen network trained on real faces that judges, while the generator learns (step 1),
    /// whether G(x) of an expressive face looks neutral (the neutrality loss); `None`: off.
    #[serde(default)]
    pub neutrality_guide: Option<std::path::PathBuf>,
    /// Weight of the neutrality loss in step 1.
    #[serde(default)]
    pub lambda_neutral: f64,
    /// Weight of the total variation of the generator's edit G(x) − x in step 1: edits made of
    /// smooth regions (a mouth closed, brows lowered), not the pixel patterns that fool a guide.
    #[serde(default)]
    pub lambda_tv: f64,
    /// Weight of the total variation of a warping generator's displacement field in step 1:
    /// the face moves in smooth regions (lips together), not pixel by pixel.
    #[serde(default)]
    pub lambda_flow: f64,
    /// Weight of the structural term 1 − SSIM(G(x), neutral) beside L_Gen's L1 in step 1.
    #[serde(default)]
    pub lambda_ssim: f64,
    /// Step 1: components of the neutral-face subspace (`subspace`) fitted on the training
    /// faces' neutral ones; an expressive face without a neutral photo of its own (FER+, CK+48)
    /// learns toward its projection onto it. 0: off.
    #[serde(default)]
    pub subspace_components: usize,
    /// Weight of L1(G(x), projection of x) for those faces (with `subspace_components`).
    #[serde(default)]
    pub lambda_subspace: f64,
    /// Where those subspaces act: one per region, fitted and applied in this order (the whole
    /// face by default; e.g. the mouth alone, which leaves the rest of the face as it is).
    #[serde(default = "default_subspace_regions")]
    pub subspace_regions: Vec<FaceRegion>,
    /// A neutral face is always its own generator target (G(n) = n), not a random neutral photo
    /// of the same person: another photo differs in pose and light, which taught G to change
    /// neutral faces.
    #[serde(default)]
    pub neutral_identity: bool,
    /// Weights whose trained generator this network starts from (its `gen.…` variables, batch
    /// norm statistics included); the encoder and classifier may have another layout and start
    /// as `init` or a fresh network leaves them. `None`: off.
    #[serde(default)]
    pub generator_from: Option<std::path::PathBuf>,
    /// Step 2 draws the samples of these datasets this many times per epoch (e.g. the posed lab
    /// sets beside FER+'s 28 k faces); the class weights count the repeats. Empty: once each.
    #[serde(default)]
    pub repeat: Vec<(crate::data::DatasetKind, usize)>,
    /// The repeated datasets' draws spread evenly over each one's classes (`TrainData::epoch_order`).
    #[serde(default)]
    pub repeat_balanced: bool,
    /// Step 2 keeps an exponential moving average of the network's variables with this decay per
    /// batch, validates and writes it at the end of every epoch, and ends with it; 0: off.
    #[serde(default)]
    pub ema_decay: f64,
    /// `init`'s contrastive encoder has half this network's channels: start from it widened
    /// without changing what it computes (`model::widen`).
    #[serde(default)]
    pub widen_encoder: bool,
    /// `init`'s contrastive encoder has one convolution per stage where this network has a
    /// residual second one: start from it deepened without changing what it computes
    /// (`model::deepen`).
    #[serde(default)]
    pub deepen_encoder: bool,
    /// End step 2 with the epoch that scored best on the validation data (not the last one).
    #[serde(default)]
    pub keep_best: bool,
    /// Dropout probability on the classifier's hidden layer in step 2.
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    /// Blur and sensor noise on half the classifier's queries each in step 2 (`degrade`).
    #[serde(default = "default_true")]
    pub degrade: bool,
    /// Step 2: probability of random erasing per query (`erase`); 0: off.
    #[serde(default)]
    pub erase: f64,
    /// Step 2: probability that a query is degraded as a camera degrades faces (blur, noise,
    /// JPEG, a far face, exposure; `camera_effects`); 0: off.
    #[serde(default)]
    pub camera_effects: f64,
    /// Step 2: Beta(α, α) of mixup on half the batches (`mixup`); 0: off.
    #[serde(default)]
    pub mixup: f64,
    /// Step 2: the share of faces that have another neutral photo of their person compared with
    /// that photo instead of G(x) (`own_partners`), as the window's "Use my neutral face" does at
    /// run time; 0: off.
    #[serde(default)]
    pub own_reference_share: f64,
}

fn default_subspace_regions() -> Vec<FaceRegion> {
    vec![FaceRegion::Face]
}

fn default_dropout() -> f64 {
    crate::model::DEFAULT_DROPOUT
}

fn default_true() -> bool {
    true
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: ModelConfig::default(),
            gen_epochs: 10,
            epochs: 20,
            batch_size: 64,
            lr: 1e-3,
            gen_lr: None,
            seed: 1,
            lambda_gen: 1.0,
            lambda_contr: 0.5,
            lambda_recon: 0.5,
            margin: 0.5,
            label_smoothing: 0.1,
            augment: true,
            class_balance: 0.0,
            generator_in_step2: true,
            neutrality_guide: None,
            generator_from: None,
            lambda_ssim: 0.0,
            subspace_components: 0,
            lambda_subspace: 0.0,
            subspace_regions: default_subspace_regions(),
            neutral_identity: false,
            lambda_neutral: 0.1,
            lambda_tv: 0.0,
            lambda_flow: 0.0,
            repeat: Vec::new(),
            repeat_balanced: true,
            ema_decay: 0.0,
            widen_encoder: false,
            deepen_encoder: false,
            keep_best: false,
            dropout: default_dropout(),
            degrade: true,
            erase: 0.0,
            camera_effects: 0.0,
            mixup: 0.0,
            own_reference_share: 0.0,
        }
    }
}
