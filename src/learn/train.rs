//! `dgcn train`: the paper's two steps. Step 1 trains the generator alone on (expressive, neutral)
//! pairs of the same person (L_Gen), and on neutral faces as their own target (identity: a neutral
//! face must come back unchanged). Step 2 trains the contrastive encoder and the classifier with
//! L_Cls + λ_contr·L_Contr + λ_recon·L_Recon while the generator is held as step 1 left it
//! (measured: letting L_Cls reach it pulls its references away from neutral); the paper's fully
//! end-to-end step 2 (+ λ_gen·L_Gen) stays available. Soft targets (FER+ votes), class-balanced
//! loss weights, geometric and photometric augmentation; Adam with a cosine schedule, fixed seeds,
//! checkpoints every epoch, resume, and a start from given weights (`--init`).
use std::path::Path;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

use super::metrics::evaluate;
use super::pool::TrainData;
use crate::face::FACE_SIZE;
use crate::labels::Expression;
use crate::model::subspace::{FaceRegion, NeutralSubspace};
use crate::model::{losses, GcNet, ModelConfig, GENERATOR_GROUP};

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
            mixup: 0.0,
            own_reference_share: 0.0,
        }
    }
}

/// Per-epoch figures, written to `metrics.csv` in the run folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub step: u8,
    pub epoch: usize,
    pub loss: f64,
    pub loss_gen: f64,
    pub loss_cls: f64,
    pub loss_contr: f64,
    pub loss_recon: f64,
    /// Step 1's neutrality loss (0 without a guide).
    #[serde(default)]
    pub loss_neutral: f64,
    pub train_acc: f64,
    pub val_acc: Option<f64>,
    /// Mean recall over the classes present in the validation data.
    pub val_mean_recall: Option<f64>,
    pub seconds: f64,
    /// Training samples per second in this epoch (augmentation included, validation not).
    pub samples_per_sec: f64,
}

#[derive(Serialize, Deserialize)]
struct ResumeState {
    step: u8,
    epoch: usize,
}

pub struct Trained {
    pub vs: nn::VarStore,
    pub net: GcNet,
    pub history: Vec<EpochMetrics>,
    /// With `keep_best`: the step-2 epoch the network ended with (its weights were put back).
    pub kept_epoch: Option<usize>,
}

impl Trained {
    /// The metrics of the epoch the network ended with: the kept one, else the last.
    pub fn final_metrics(&self) -> Option<&EpochMetrics> {
        match self.kept_epoch {
            Some(e) => self.history.iter().find(|m| m.step == 2 && m.epoch == e),
            None => self.history.last(),
        }
    }
}

/// Random flips, small similarity warps and brightness/contrast/gamma jitter, the same for a query
/// and its neutral target.
fn augment(query: &Tensor, target: &Tensor, rng: &mut impl Rng) -> (Tensor, Tensor) {
    let n = query.size()[0];
    let device = query.device();
    let mut theta = Vec::with_capacity(n as usize * 6);
    let mut gain = Vec::with_capacity(n as usize);
    let mut bias = Vec::with_capacity(n as usize);
    let mut gamma = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let flip = if rng.gen_bool(0.5) { -1.0f32 } else { 1.0 };
        let angle = rng.gen_range(-0.17f32..0.17);
        let scale = rng.gen_range(0.92f32..1.08);
        let (tx, ty) = (rng.gen_range(-0.06f32..0.06), rng.gen_range(-0.06f32..0.06));
        let (c, s) = (angle.cos() * scale, angle.sin() * scale);
        theta.extend_from_slice(&[c * flip, -s, tx, s * flip, c, ty]);
        gain.push(rng.gen_range(0.75f32..1.25));
        bias.push(rng.gen_range(-0.1f32..0.1));
        gamma.push(rng.gen_range(-0.4f32..0.4).exp());
    }
    let theta = Tensor::from_slice(&theta).view([n, 2, 3]).to_device(device);
    let grid =
        Tensor::affine_grid_generator(&theta, [n, 1, FACE_SIZE as i64, FACE_SIZE as i64], false);
    let warp = |x: &Tensor| x.grid_sampler(&grid, 0, 1, false);
    let gain = Tensor::from_slice(&gain)
        .view([n, 1, 1, 1])
        .to_device(device);
    let bias = Tensor::from_slice(&bias)
        .view([n, 1, 1, 1])
        .to_device(device);
    let gamma = Tensor::from_slice(&gamma)
        .view([n, 1, 1, 1])
        .to_device(device);
    // The same photometric change for both: the generator keeps the lighting it is given.
    let jitter = |x: Tensor| {
        let x = x.clamp(1e-4, 1.0).pow(&gamma);
        let mean = x.mean_dim([1i64, 2, 3].as_slice(), true, Kind::Float);
        ((x - &mean) * &gain + mean + &bias).clamp(0.0, 1.0)
    };
    (jitter(warp(query)), jitter(warp(target)))
}

/// For each face of `idx`, another neutral photo of its person (never the face itself), drawn at
/// random; `None` where its person has none.
fn own_partners(data: &TrainData, idx: &[usize], rng: &mut impl Rng) -> Vec<Option<usize>> {
    idx.iter()
        .map(|&i| {
            let others: Vec<usize> = data.other_neutrals(i).collect();
            others.choose(rng).copied()
        })
        .collect()
}

/// The references of a step-2 batch with `share` of the faces that have another neutral photo of
/// their person compared with it (moved, scaled and lit on its own, as a second photo of a face
/// differs) instead of their generated reference `generated`.
fn with_own_references(
    data: &TrainData,
    idx: &[usize],
    generated: &Tensor,
    share: f64,
    rng: &mut impl Rng,
) -> Tensor {
    let partners = own_partners(data, idx, rng);
    let chosen: Vec<f32> = partners
        .iter()
        .map(|p| (p.is_some() && rng.gen_bool(share)) as u8 as f32)
        .collect();
    let rows: Vec<usize> = partners
        .iter()
        .zip(idx)
        .map(|(p, &i)| p.unwrap_or(i))
        .collect();
    let device = generated.device();
    let photos = data.batch(&rows, device);
    let (photos, _) = augment(&photos, &photos, rng);
    let use_own = Tensor::from_slice(&chosen)
        .to_device(device)
        .view([-1, 1, 1, 1])
        .gt(0.5);
    photos
        .to_kind(generated.kind())
        .where_self(&use_own, generated)
}

/// Random erasing (Zhong et al. 2020): each face, with probability `p`, has one rectangle of
/// 2–25 % of its area and aspect 1:3 to 3:1 replaced by uniform noise.
fn erase(x: &Tensor, p: f64, rng: &mut impl Rng) -> Tensor {
    let n = x.size()[0];
    let side = FACE_SIZE;
    let mut mask = vec![0f32; n as usize * side * side];
    for face in mask.chunks_mut(side * side) {
        if !rng.gen_bool(p) {
            continue;
        }
        let area = rng.gen_range(0.02f32..0.25) * (side * side) as f32;
        let aspect = rng.gen_range((1.0f32 / 3.0).ln()..3.0f32.ln()).exp();
        let h = ((area * aspect).sqrt().round() as usize).clamp(1, side);
        let w = ((area / aspect).sqrt().round() as usize).clamp(1, side);
        let (top, left) = (rng.gen_range(0..=side - h), rng.gen_range(0..=side - w));
        for row in face[top * side..(top + h) * side].chunks_mut(side) {
            row[left..left + w].fill(1.0);
        }
    }
    let mask = Tensor::from_slice(&mask)
        .view([n, 1, side as i64, side as i64])
        .to_device(x.device());
    let noise = Tensor::rand_like(x);
    x * (1.0 - &mask) + noise * mask
}

/// A draw from Beta(α, α) (Jöhnk's method, from `rng` so that a run repeats with its seed).
fn beta_symmetric(alpha: f64, rng: &mut impl Rng) -> f64 {
    loop {
        let x = rng.gen::<f64>().powf(1.0 / alpha);
        let y = rng.gen::<f64>().powf(1.0 / alpha);
        if x + y <= 1.0 && x + y > 0.0 {
            return x / (x + y);
        }
    }
}

/// Mixup (Zhang et al. 2018): each face blended with another face of the batch, `lam` of its own;
/// returns the blended faces and the permutation that chose the partners (on the faces' device,
/// to blend their targets alike).
fn mixup(query: &Tensor, lam: f64, rng: &mut impl Rng) -> (Tensor, Tensor) {
    let n = query.size()[0];
    let mut perm: Vec<i64> = (0..n).collect();
    perm.shuffle(rng);
    let idx = Tensor::from_slice(&perm).to_device(query.device());
    (query * lam + query.index_select(0, &idx) * (1.0 - lam), idx)
}

/// Camera degradations for a query the classifier sees: a Gaussian blur of random width
/// (σ 0–1.2 px, as from focus or a small face scaled up) and sensor noise (σ 0–0.04), each on
/// half of the faces.
fn degrade(x: &Tensor, rng: &mut impl Rng) -> Tensor {
    let n = x.size()[0];
    let device = x.device();
    let mut kernels = Vec::with_capacity(n as usize * 25);
    let mut noise = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let sigma = if rng.gen_bool(0.5) {
            rng.gen_range(0.3f32..1.2)
        } else {
            0.0
        };
        kernels.extend(losses::gaussian_kernel(2, sigma));
        noise.push(if rng.gen_bool(0.5) {
            rng.gen_range(0.0f32..0.04)
        } else {
            0.0
        });
    }
    let side = FACE_SIZE as i64;
    let kernels = Tensor::from_slice(&kernels)
        .view([n, 1, 5, 5])
        .to_device(device);
    // One group per face: each face gets its own kernel.
    let blurred = x
        .view([1, n, side, side])
        .pad([2, 2, 2, 2], "replicate", None)
        .conv2d(&kernels, None::<Tensor>, [1, 1], [0, 0], [1, 1], n)
        .view([n, 1, side, side]);
    let sigma = Tensor::from_slice(&noise)
        .view([n, 1, 1, 1])
        .to_device(device);
    let noise = blurred.randn_like() * sigma;
    (blurred + noise).clamp(0.0, 1.0)
}

/// Where the generator's reference-mouth subspace lives in the variable store.
const MOUTH_VARIABLES: &str = "gen.mouth.";

/// Copies the generator (`gen.…` variables) of the weights at `path` into `vs`. The generator's
/// layout (width, input standardisation) must be the one `model` builds.
fn copy_generator(
    vs: &mut nn::VarStore,
    path: &Path,
    model: &ModelConfig,
    device: Device,
) -> Result<()> {
    let source = crate::model::weights::load(path, device)
        .with_context(|| format!("loading the generator to start from, {}", path.display()))?;
    let theirs = source.net.config;
    anyhow::ensure!(
        theirs.channels() == model.channels() && theirs.standardize == model.standardize,
        "{}: its generator has channels {:?} (standardised input: {}), this network's {:?} ({})",
        path.display(),
        theirs.channels(),
        theirs.standardize,
        model.channels(),
        model.standardize
    );
    let from = source.vs.variables();
    let copied = crate::model::fill_variables(vs, |name, target| {
        if !name.starts_with("gen.") {
            return Ok(None);
        }
        if name.starts_with(MOUTH_VARIABLES) && !from.contains_key(name) {
            // Fitted when training starts.
            return Ok(None);
        }
        let src = from
            .get(name)
            .with_context(|| format!("no variable {name}"))?;
        // Into a warping generator from a plain one: the last layer's edit channel is theirs,
        // the displacement channels start at zero (the function unchanged).
        if model.generator_warp && !theirs.generator_warp && name.starts_with("gen.dec.deconv1.") {
            // A transposed convolution's weight is in × out × k × k; its bias has out values.
            let out_dim = if target.dim() > 1 { 1 } else { 0 };
            let value = Tensor::zeros_like(target);
            value.narrow(out_dim, 0, 1).copy_(src);
            return Ok(Some(value));
        }
        Ok(Some(src.shallow_clone()))
    })
    .with_context(|| format!("copying the generator of {}", path.display()))?;
    anyhow::ensure!(
        copied > 0,
        "this network has no generator variables to copy"
    );
    tracing::info!(from = %path.display(), variables = copied, "generator copied");
    Ok(())
}

/// The step-2 epoch that scored best on validation so far, with a copy of its variables.
struct BestEpoch {
    val_acc: f64,
    epoch: usize,
    variables: Vec<(String, Tensor)>,
}

/// An exponential moving average of a network's floating-point variables (weights and batch-norm
/// statistics), updated after every optimiser step: the average of the last ≈ 1/(1 − decay)
/// batches, less noisy than the weights of any one batch.
struct WeightAverage {
    decay: f64,
    /// (the live variable, its average).
    pairs: Vec<(Tensor, Tensor)>,
}

impl WeightAverage {
    fn new(vs: &nn::VarStore, decay: f64) -> WeightAverage {
        let pairs = vs
            .variables()
            .into_values()
            .filter(|v| v.is_floating_point())
            .map(|v| {
                let average = v.detach().copy();
                (v, average)
            })
            .collect();
        WeightAverage { decay, pairs }
    }

    fn update(&mut self) {
        tch::no_grad(|| {
            for (live, average) in &mut self.pairs {
                let _ = average.lerp_(live, 1.0 - self.decay);
            }
        });
    }

    /// Exchanges the live variables and their averages (the network then holds the average).
    fn swap(&mut self) {
        tch::no_grad(|| {
            for (live, average) in &mut self.pairs {
                let held = live.copy();
                live.copy_(average);
                average.copy_(&held);
            }
        });
    }
}

fn progress_bar(len: u64, label: String) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{prefix:>10} [{bar:25}] {pos}/{len} {msg} ({elapsed}<{eta})")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(label);
    pb
}

/// Trains GCNet on `data`, reporting accuracy on `val` each epoch. With a run folder, writes
/// `config.json`, `metrics.csv`, `checkpoint.safetensors` after every epoch and, when `grid` has
/// held-out (face, neutral) pairs, `grid_stepS_epochE.png`; `resume` continues from the checkpoint.
/// `init` starts from given weights (of the same model variant) instead of a random network.
pub fn train(
    data: &TrainData,
    val: Option<&TrainData>,
    cfg: &TrainConfig,
    device: Device,
    run_dir: Option<&Path>,
    resume: bool,
    init: Option<&Path>,
) -> Result<Trained> {
    anyhow::ensure!(!data.is_empty(), "no training samples");
    cfg.model
        .validate()
        .map_err(|e| anyhow::anyhow!("model configuration: {e}"))?;
    tch::manual_seed(cfg.seed as i64);
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let mut vs = nn::VarStore::new(device);
    let mut net = GcNet::new(&vs.root(), cfg.model);
    net.classifier.dropout = cfg.dropout;
    match init {
        Some(path) if cfg.widen_encoder || cfg.deepen_encoder => {
            // `init` grown into this network without changing what it computes.
            type Grow =
                fn(&nn::VarStore, &ModelConfig, &mut nn::VarStore, &ModelConfig) -> Result<()>;
            let (verb, grow): (&str, Grow) = if cfg.widen_encoder {
                ("widen", crate::model::widen::widen_encoder)
            } else {
                ("deepen", crate::model::deepen::deepen_encoder)
            };
            let source = crate::model::weights::load(path, device)
                .with_context(|| format!("loading the network to {verb}, {}", path.display()))?;
            grow(&source.vs, &source.net.config, &mut vs, &cfg.model)
                .with_context(|| format!("{verb}ing the encoder of {}", path.display()))?;
            tracing::info!(from = %path.display(), model = ?cfg.model, "encoder {verb}ed");
        }
        Some(path) => {
            // The reconstruction decoder may be absent on either side; everything else must match.
            let missing = vs
                .load_partial(path)
                .with_context(|| format!("starting from {}", path.display()))?;
            // A reference-mouth subspace the initial weights lack is fitted below.
            let missing: Vec<&String> = missing
                .iter()
                .filter(|k| !k.starts_with("recon") && !k.starts_with(MOUTH_VARIABLES))
                .collect();
            anyhow::ensure!(
                missing.is_empty(),
                "{}: not the same model variant (missing {:?})",
                path.display(),
                missing
            );
        }
        None => anyhow::ensure!(
            !cfg.widen_encoder && !cfg.deepen_encoder,
            "widening or deepening the encoder needs --init"
        ),
    }
    if let Some(path) = &cfg.generator_from {
        copy_generator(&mut vs, path, &cfg.model, device)?;
    }
    let mut start = (1u8, 0usize);
    if let Some(dir) = run_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating run folder {}", dir.display()))?;
        std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(cfg)?)
            .with_context(|| format!("writing {}", dir.join("config.json").display()))?;
        let ckpt = dir.join("checkpoint.safetensors");
        if resume && ckpt.exists() {
            vs.load(&ckpt)
                .with_context(|| format!("resuming from {}", ckpt.display()))?;
            let state: ResumeState = serde_json::from_str(
                &std::fs::read_to_string(dir.join("state.json")).context("reading state.json")?,
            )?;
            start = (state.step, state.epoch);
            tracing::info!(step = state.step, epoch = state.epoch, "resumed");
        }
    }
    let mut history = Vec::new();
    // With `keep_best`: step 2's best epoch on validation so far.
    let mut best: Option<BestEpoch> = None;
    let expressive = data.expressive_pairs();
    // Every neutral face is its own target (G(n) = n): TFEID's and, in the wild, FER+'s.
    let identities: Vec<usize> = (0..data.len()).filter(|&i| data.labels[i] == 0).collect();
    // Expressive faces without a neutral partner (CK+48, FER+) teach the generator through the
    // guide and the neutral-face subspace.
    let unpaired: Vec<usize> = (0..data.len())
        .filter(|&i| data.labels[i] != 0 && data.neutral_of[i].is_empty())
        .collect();
    let guide = match &cfg.neutrality_guide {
        Some(path) => {
            let mut g = crate::model::weights::load(path, device)
                .with_context(|| format!("loading the neutrality guide {}", path.display()))?;
            g.vs.freeze();
            tracing::info!(guide = %path.display(), weight = cfg.lambda_neutral, "neutrality loss on");
            Some(g)
        }
        None => None,
    };
    // The training data's neutral faces, which the subspaces below are fitted on (only if one is).
    let unfitted_mouth = net.generator.mouth.as_ref().filter(|m| !m.is_fitted());
    let neutral_faces = (unfitted_mouth.is_some() || cfg.subspace_components > 0)
        .then(|| data.batch(&identities, Device::Cpu));
    // The reference's mouth subspace, unless the weights started from (or resumed) hold it.
    if let (Some(mouth), Some(faces)) = (unfitted_mouth, &neutral_faces) {
        anyhow::ensure!(
            mouth.fit_in_place(faces),
            "the reference's mouth subspace of {} components needs more than {} neutral faces (the training data has {})",
            mouth.components(),
            mouth.components(),
            identities.len()
        );
        tracing::info!(
            components = mouth.components(),
            neutral_faces = identities.len(),
            "reference mouth subspace fitted"
        );
    }
    // One subspace per region, applied in turn; none when the components are 0.
    let mut subspaces = Vec::new();
    if let (k @ 1.., Some(faces)) = (cfg.subspace_components, &neutral_faces) {
        for &region in &cfg.subspace_regions {
            let t0 = std::time::Instant::now();
            let space = NeutralSubspace::fit_region(faces, k, region).with_context(|| {
                format!(
                    "a neutral-face subspace of {k} components ({region:?}) needs more than {k} neutral faces (the training data has {}) and no more components than the region's pixels",
                    identities.len()
                )
            })?;
            tracing::info!(
                components = k,
                ?region,
                neutral_faces = identities.len(),
                weight = cfg.lambda_subspace,
                seconds = t0.elapsed().as_secs_f64(),
                "neutral-face subspace fitted"
            );
            subspaces.push(space.to_device(device));
        }
    }
    // Step 2's epoch before shuffling: every sample, the repeated datasets' that often.
    let step2_order = data.epoch_order(&cfg.repeat, cfg.repeat_balanced);
    let class_weights =
        Tensor::from_slice(&data.class_weights_over(&step2_order, cfg.class_balance))
            .to_device(device);

    for step in [1u8, 2] {
        let epochs = if step == 1 {
            cfg.gen_epochs
        } else {
            cfg.epochs
        };
        if step == 1 && expressive.is_empty() {
            if epochs > 0 {
                tracing::warn!("no (face, neutral) pairs: step 1 skipped");
            }
            continue;
        }
        if (step, epochs) <= start {
            continue;
        }
        // A fresh optimiser per step; a held generator gets no step at all (its Adam moments from
        // step 1 would otherwise keep moving it).
        let mut opt = nn::Adam::default().build(&vs, cfg.lr)?;
        let hold_generator = step == 2 && !cfg.generator_in_step2;
        let mut average = (step == 2 && cfg.ema_decay > 0.0 && epochs > 0)
            .then(|| WeightAverage::new(&vs, cfg.ema_decay));
        for epoch in 1..=epochs {
            if (step, epoch) <= start {
                continue;
            }
            let base_lr = match step {
                1 => cfg.gen_lr.unwrap_or(cfg.lr),
                _ => cfg.lr,
            };
            let lr = base_lr
                * 0.5
                * (1.0 + (std::f64::consts::PI * (epoch - 1) as f64 / epochs as f64).cos());
            opt.set_lr(lr);
            if hold_generator {
                opt.set_lr_group(GENERATOR_GROUP, 0.0);
            }
            let mut order = if step == 1 {
                // Expressive pairs, and as many neutral faces as their own targets.
                let mut ids = identities.clone();
                ids.shuffle(&mut rng);
                ids.truncate(expressive.len());
                let mut free = Vec::new();
                if guide.is_some() || !subspaces.is_empty() {
                    free = unpaired.clone();
                    free.shuffle(&mut rng);
                    free.truncate(expressive.len());
                }
                [expressive.clone(), ids, free].concat()
            } else {
                step2_order.clone()
            };
            order.shuffle(&mut rng);
            let m = run_epoch(
                &net,
                &mut opt,
                data,
                &order,
                cfg,
                (step, epoch),
                &class_weights,
                Teachers {
                    guide: guide.as_ref().map(|g| &g.net),
                    subspaces: &subspaces,
                },
                average.as_mut(),
                &mut rng,
            )?;
            // Validate, write and (after the last epoch) keep the average; train on from the
            // live weights.
            if let Some(a) = average.as_mut() {
                a.swap();
            }
            let (val_acc, val_mean_recall) = match (step, val) {
                (2, Some(v)) if !v.is_empty() => {
                    let c = evaluate(&net, v, device, 256)?;
                    (Some(c.accuracy()), Some(c.mean_recall()))
                }
                _ => (None, None),
            };
            let m = EpochMetrics {
                val_acc,
                val_mean_recall,
                ..m
            };
            tracing::info!(
                step, epoch, loss = m.loss, train_acc = m.train_acc, val_acc = ?m.val_acc,
                val_mean_recall = ?m.val_mean_recall, samples_per_sec = m.samples_per_sec, "epoch done"
            );
            if let Some(dir) = run_dir {
                write_epoch(dir, &vs, &m)?;
                if let Some(v) = val {
                    write_grid(
                        &net,
                        v,
                        device,
                        &dir.join(format!("grid_step{step}_epoch{epoch:03}.png")),
                    )?;
                }
            }
            if let (true, Some(acc)) = (cfg.keep_best, m.val_acc) {
                if best.as_ref().is_none_or(|b| acc > b.val_acc) {
                    let copy = tch::no_grad(|| {
                        vs.variables()
                            .into_iter()
                            .map(|(name, v)| (name, v.copy()))
                            .collect::<Vec<_>>()
                    });
                    best = Some(BestEpoch {
                        val_acc: acc,
                        epoch,
                        variables: copy,
                    });
                }
            }
            history.push(m);
            if epoch < epochs {
                if let Some(a) = average.as_mut() {
                    a.swap();
                }
            }
        }
    }
    let kept_epoch = best.as_ref().map(|b| b.epoch);
    if let Some(BestEpoch {
        val_acc: acc,
        epoch,
        variables,
    }) = best
    {
        let mut live = vs.variables();
        tch::no_grad(|| {
            for (name, value) in &variables {
                if let Some(v) = live.get_mut(name) {
                    v.copy_(value);
                }
            }
        });
        tracing::info!(
            epoch,
            val_acc = acc,
            "ended with the best epoch on validation"
        );
    }
    Ok(Trained {
        vs,
        net,
        history,
        kept_epoch,
    })
}

/// One batch as a step trains on it: the faces, a neutral partner for each (itself when it has
/// none), whether it has one (0/1), augmented when the configuration says so (step 2 also
/// degrades the query as a camera would).
pub fn training_batch(
    data: &TrainData,
    idx: &[usize],
    cfg: &TrainConfig,
    step: u8,
    device: Device,
    rng: &mut rand::rngs::StdRng,
) -> (Tensor, Tensor, Tensor) {
    let mut partner = Vec::with_capacity(idx.len());
    let mut has = Vec::with_capacity(idx.len());
    for &i in idx {
        if cfg.neutral_identity && data.labels[i] == 0 {
            partner.push(i);
            has.push(1.0);
            continue;
        }
        match data.neutral_of[i].choose(rng) {
            Some(&j) => {
                partner.push(j);
                has.push(1.0f32);
            }
            // A neutral face is its own neutral partner.
            None if data.labels[i] == 0 => {
                partner.push(i);
                has.push(1.0);
            }
            None => {
                partner.push(i);
                has.push(0.0);
            }
        }
    }
    let mut query = data.batch(idx, device);
    let mut neutral = data.batch(&partner, device);
    if cfg.augment {
        (query, neutral) = augment(&query, &neutral, rng);
        if step == 2 && cfg.degrade {
            query = degrade(&query, rng);
        }
        if step == 2 && cfg.erase > 0.0 {
            query = erase(&query, cfg.erase, rng);
        }
    }
    (query, neutral, Tensor::from_slice(&has).to_device(device))
}

/// What teaches the generator in step 1 beside the neutral pairs: a frozen guide's call on its
/// references, and the neutral-face subspace's projection of the faces that have no pair.
#[derive(Clone, Copy)]
struct Teachers<'a> {
    guide: Option<&'a GcNet>,
    /// Applied in turn (empty: none).
    subspaces: &'a [NeutralSubspace],
}

/// Running sums of one epoch, kept on the device so that a batch costs no host round trip.
struct EpochSums {
    /// loss, L_Gen, L_Cls, L_Contr, L_Recon, L_Neutral, each times the batch size.
    losses: Tensor,
    correct: Tensor,
    seen: usize,
}

#[allow(clippy::too_many_arguments)]
fn run_epoch(
    net: &GcNet,
    opt: &mut nn::Optimizer,
    data: &TrainData,
    order: &[usize],
    cfg: &TrainConfig,
    (step, epoch): (u8, usize),
    class_weights: &Tensor,
    Teachers { guide, subspaces }: Teachers,
    mut average: Option<&mut WeightAverage>,
    rng: &mut rand::rngs::StdRng,
) -> Result<EpochMetrics> {
    let t0 = std::time::Instant::now();
    let device = class_weights.device();
    let batches: Vec<&[usize]> = order
        .chunks(cfg.batch_size)
        .filter(|b| b.len() > 1)
        .collect();
    let pb = progress_bar(batches.len() as u64, format!("step{step} ep{epoch}"));
    let mut sums = EpochSums {
        losses: Tensor::zeros([6], (Kind::Float, device)),
        correct: Tensor::zeros([], (Kind::Int64, device)),
        seen: 0,
    };
    let hold_generator = step == 2 && !cfg.generator_in_step2;
    let zero = || Tensor::zeros([], (Kind::Float, device));
    for (b, idx) in batches.iter().enumerate() {
        let (query, neutral, has) = training_batch(data, idx, cfg, step, device, rng);

        let (loss, parts) = if step == 1 {
            let (generated, flow) = net.generator.forward_with_flow(&query, true);
            let l = losses::generation_loss(&generated, &neutral, &has);
            // A new tensor (not a shallow clone): `+=` below must not change the logged L_Gen.
            let mut loss = &l + 0.0;
            let mut l_neutral = zero();
            if cfg.lambda_ssim > 0.0 {
                loss += losses::structural_loss(&generated, &neutral, &has) * cfg.lambda_ssim;
            }
            if cfg.lambda_tv > 0.0 {
                loss += losses::total_variation(&(&generated - &query)) * cfg.lambda_tv;
            }
            if let (Some(flow), true) = (&flow, cfg.lambda_flow > 0.0) {
                loss += losses::total_variation(flow) * cfg.lambda_flow;
            }
            let subspaces =
                (cfg.lambda_subspace > 0.0 && !subspaces.is_empty()).then_some(subspaces);
            // 0/1 per face: expressive, the faces the teachers below act on.
            let expressive = (subspaces.is_some() || guide.is_some()).then(|| {
                data.labels_of(idx, device)
                    .ne(Expression::Neutral.index() as i64)
                    .to_kind(Kind::Float)
            });
            if let (Some(spaces), Some(expressive)) = (subspaces, &expressive) {
                // Expressive faces without a neutral partner learn toward their projection.
                let unpaired = expressive * (1.0 - &has);
                let target = spaces
                    .iter()
                    .fold(query.shallow_clone(), |face, space| space.project(&face));
                loss +=
                    losses::generation_loss(&generated, &target, &unpaired) * cfg.lambda_subspace;
            }
            if let (Some(guide), Some(expressive)) = (guide, &expressive) {
                // The guide sees the reference slightly blurred and shifted, as a camera would
                // show it: an edit must change the face, not a pixel pattern only this guide
                // reads.
                let judged = guide
                    .forward_t(&losses::soften(&generated, rng), None, false)
                    .logits;
                l_neutral = losses::neutrality_loss(&judged, expressive);
                loss += &l_neutral * cfg.lambda_neutral;
            }
            (
                loss,
                [l.detach(), zero(), zero(), zero(), l_neutral.detach()],
            )
        } else {
            let labels = data.labels_of(idx, device);
            let mut targets = data.targets_of(idx, device);
            let mut is_neutral = labels
                .eq(Expression::Neutral.index() as i64)
                .to_kind(Kind::Float);
            let mut query = query;
            let mixed = cfg.mixup > 0.0 && rng.gen_bool(0.5);
            if mixed {
                let lam = beta_symmetric(cfg.mixup, rng);
                let (mixed, perm) = mixup(&query, lam, rng);
                query = mixed;
                targets = &targets * lam + targets.index_select(0, &perm) * (1.0 - lam);
                is_neutral = &is_neutral * lam + is_neutral.index_select(0, &perm) * (1.0 - lam);
            }
            let out = if hold_generator {
                let generated = tch::no_grad(|| net.generator.forward_t(&query, false));
                // A blended face has no own neutral photo (its two persons' photos are not its
                // neutral face): mixed batches compare with the generated reference alone.
                let own = (cfg.own_reference_share > 0.0 && !mixed).then(|| {
                    with_own_references(data, idx, &generated, cfg.own_reference_share, rng)
                });
                net.forward_with_generated(&query, generated, own.as_ref(), true)
            } else {
                net.forward_t(&query, None, true)
            };
            let l_cls = losses::classification_loss(
                &out.logits,
                &targets,
                class_weights,
                cfg.label_smoothing,
            );
            // A new tensor (not a shallow clone): `+=` below must not change the logged L_Cls.
            let mut loss = &l_cls + 0.0;
            let mut l_gen = zero();
            if !hold_generator {
                l_gen = losses::generation_loss(&out.generated, &neutral, &has);
                loss += &l_gen * cfg.lambda_gen;
            }
            let mut l_contr = zero();
            if cfg.model.use_contrastive {
                l_contr = losses::contrastive_loss(
                    &out.emb_query,
                    &out.emb_reference,
                    &is_neutral,
                    cfg.margin,
                );
                loss += &l_contr * cfg.lambda_contr;
            }
            let mut l_recon = zero();
            if let (Some(rq), Some(rr)) = (&out.recon_query, &out.recon_reference) {
                l_recon = losses::reconstruction_loss(rq, &query)
                    + losses::reconstruction_loss(rr, &out.generated.detach());
                loss += &l_recon * cfg.lambda_recon;
            }
            sums.correct += out
                .logits
                .argmax(1, false)
                .eq_tensor(&labels)
                .sum(Kind::Int64);
            (
                loss,
                [
                    l_gen.detach(),
                    l_cls.detach(),
                    l_contr.detach(),
                    l_recon.detach(),
                    zero(),
                ],
            )
        };
        opt.backward_step(&loss);
        if let Some(a) = average.as_deref_mut() {
            a.update();
        }
        let n = idx.len() as f64;
        let row = Tensor::stack(
            &[
                loss.detach(),
                parts[0].shallow_clone(),
                parts[1].shallow_clone(),
                parts[2].shallow_clone(),
                parts[3].shallow_clone(),
                parts[4].shallow_clone(),
            ],
            0,
        );
        sums.losses += row * n;
        sums.seen += idx.len();
        // One host round trip every 25 batches: the progress line and the divergence check.
        if b % 25 == 24 || b + 1 == batches.len() {
            let mean = sums.losses.double_value(&[0]) / sums.seen as f64;
            anyhow::ensure!(
                mean.is_finite(),
                "loss became {mean} at step {step} epoch {epoch}"
            );
            let acc = sums.correct.int64_value(&[]) as f64 / sums.seen as f64;
            pb.set_message(if step == 2 {
                format!("loss {mean:.4} acc {acc:.3}")
            } else {
                format!("loss {mean:.4}")
            });
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    let n = sums.seen.max(1) as f64;
    let mean: Vec<f64> = Vec::<f64>::try_from(sums.losses.to_kind(Kind::Double) / n)
        .unwrap_or_else(|_| vec![f64::NAN; 6]);
    let seconds = t0.elapsed().as_secs_f64();
    Ok(EpochMetrics {
        step,
        epoch,
        loss: mean[0],
        loss_gen: mean[1],
        loss_cls: mean[2],
        loss_contr: mean[3],
        loss_recon: mean[4],
        loss_neutral: mean[5],
        train_acc: if step == 2 {
            sums.correct.int64_value(&[]) as f64 / n
        } else {
            f64::NAN
        },
        val_acc: None,
        val_mean_recall: None,
        seconds,
        samples_per_sec: sums.seen as f64 / seconds.max(1e-9),
    })
}

fn write_epoch(dir: &Path, vs: &nn::VarStore, m: &EpochMetrics) -> Result<()> {
    let ckpt = dir.join("checkpoint.safetensors");
    let tmp = dir.join("checkpoint.tmp.safetensors");
    vs.save(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &ckpt)?;
    std::fs::write(
        dir.join("state.json"),
        serde_json::to_string(&ResumeState {
            step: m.step,
            epoch: m.epoch,
        })?,
    )?;
    let path = dir.join("metrics.csv");
    let new = !path.exists();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let mut w = csv::WriterBuilder::new().has_headers(new).from_writer(file);
    w.serialize(m)?;
    w.flush()?;
    Ok(())
}

/// Saves rows of 64×64 tiles as one PNG, each tile enlarged to `side` pixels (nearest).
pub fn save_tile_grid(rows: &[Vec<image::RgbImage>], side: u32, path: &Path) -> Result<()> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let mut canvas = image::RgbImage::new(side * cols, side * rows.len() as u32);
    for (r, row) in rows.iter().enumerate() {
        for (c, tile) in row.iter().enumerate() {
            let big =
                image::imageops::resize(tile, side, side, image::imageops::FilterType::Nearest);
            image::imageops::replace(
                &mut canvas,
                &big,
                (c as u32 * side) as i64,
                (r as u32 * side) as i64,
            );
        }
    }
    canvas
        .save(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// PNG grid, one row per held-out face: query | generated reference | true neutral (2× size).
pub fn write_grid(net: &GcNet, val: &TrainData, device: Device, path: &Path) -> Result<()> {
    let rows: Vec<usize> = val
        .with_neutral()
        .into_iter()
        .filter(|&i| val.labels[i] != 0)
        .step_by(7)
        .take(8)
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let query = val.batch(&rows, device);
    let partners: Vec<usize> = rows.iter().map(|&i| val.neutral_of[i][0]).collect();
    let neutral = val.batch(&partners, device);
    let generated = tch::no_grad(|| net.generator.forward_t(&query, false));
    let tiles = (0..rows.len())
        .map(|r| {
            [&query, &generated, &neutral]
                .iter()
                .map(|t| {
                    Ok(
                        image::DynamicImage::ImageLuma8(tensor_to_luma(&t.get(r as i64))?)
                            .to_rgb8(),
                    )
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    save_tile_grid(&tiles, FACE_SIZE as u32 * 2, path)
}

/// 1×64×64 float tensor in [0, 1] → grey image.
pub fn tensor_to_luma(t: &Tensor) -> Result<image::GrayImage> {
    let v: Vec<f32> = crate::model::tensor_values(&t.to_kind(Kind::Float))?;
    let px = v
        .iter()
        .map(|x| (x.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    image::GrayImage::from_raw(FACE_SIZE as u32, FACE_SIZE as u32, px)
        .ok_or_else(|| anyhow::anyhow!("a face tensor of {} values, not 64×64", v.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erase_replaces_one_rectangle_per_chosen_face_and_nothing_else() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let side = FACE_SIZE as i64;
        // Faces of exactly 2.0: noise is in [0, 1), so every changed pixel is an erased one.
        let x = Tensor::full([64, 1, side, side], 2.0, (Kind::Float, Device::Cpu));
        let out = erase(&x, 0.5, &mut rng);
        let changed = out.ne(2.0).to_kind(Kind::Float);
        let per_face = Vec::<f64>::try_from(changed.sum_dim_intlist(
            [1i64, 2, 3].as_slice(),
            false,
            Kind::Double,
        ))
        .expect("areas");
        let erased: Vec<f64> = per_face.iter().copied().filter(|a| *a > 0.0).collect();
        // About half the faces, each 2–25 % of 4,096 pixels (rounding of the sides aside).
        assert!(
            (20..=44).contains(&erased.len()),
            "{} faces erased",
            erased.len()
        );
        assert!(
            erased.iter().all(|a| (60.0..=1200.0).contains(a)),
            "{erased:?}"
        );
        // One rectangle: its pixel count is the product of its row and column extents.
        for f in 0..64 {
            let m = changed.get(f).get(0);
            let rows = m
                .sum_dim_intlist([1i64].as_slice(), false, Kind::Double)
                .gt(0.0)
                .sum(Kind::Double);
            let cols = m
                .sum_dim_intlist([0i64].as_slice(), false, Kind::Double)
                .gt(0.0)
                .sum(Kind::Double);
            let area = m.sum(Kind::Double).double_value(&[]);
            assert_eq!(
                area,
                rows.double_value(&[]) * cols.double_value(&[]),
                "face {f}"
            );
        }
        assert!(erase(&x, 0.0, &mut rng).equal(&x));
    }

    /// Two performers: A with two neutral photos and a happy one, B with one neutral photo and a
    /// happy one.
    fn two_performers() -> TrainData {
        use crate::data::{DatasetKind, PreparedSet, SampleInfo, Split};
        let faces: Vec<u8> = (0..5u8)
            .flat_map(|i| std::iter::repeat_n(30 * i + 100, FACE_SIZE * FACE_SIZE))
            .collect();
        let sample = |subject: u32, label: Expression| SampleInfo {
            path: String::new(),
            label,
            subject: Some(subject),
            split: Split::Train,
            votes: None,
        };
        let set = PreparedSet {
            kind: DatasetKind::Tfeid,
            samples: vec![
                sample(1, Expression::Neutral),
                sample(1, Expression::Neutral),
                sample(1, Expression::Happy),
                sample(2, Expression::Neutral),
                sample(2, Expression::Happy),
            ],
            faces,
            detected: vec![true; 5],
            unreadable: Vec::new(),
        };
        TrainData::from_sets(&[(&set, (0..5).collect())])
    }

    #[test]
    fn own_partners_are_other_neutral_photos_of_the_same_person() {
        let data = two_performers();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..20 {
            let p = own_partners(&data, &[0, 1, 2, 3, 4], &mut rng);
            assert_eq!(p[0], Some(1));
            assert_eq!(p[1], Some(0));
            assert!(matches!(p[2], Some(0 | 1)));
            assert_eq!(p[3], None, "B's one neutral photo has no other");
            assert_eq!(p[4], Some(3));
        }
        // Share 1: every face with a partner is compared with a photo of that partner (its grey
        // level, moved and lit on its own), the others keep their generated reference.
        let generated = Tensor::full([5, 1, 64, 64], -1.0, (Kind::Float, Device::Cpu));
        let refs = with_own_references(&data, &[0, 1, 2, 3, 4], &generated, 1.0, &mut rng);
        let mean = |i: i64| refs.get(i).mean(Kind::Float).double_value(&[]);
        assert_eq!(mean(3), -1.0);
        for i in [0, 1, 2, 4] {
            assert!(mean(i) >= 0.0, "face {i}: {}", mean(i));
        }
        assert!(
            (mean(4) - 190.0 / 255.0).abs() < 0.2,
            "B's neutral photo: {}",
            mean(4)
        );
        // Share 0: all generated.
        let refs = with_own_references(&data, &[0, 1, 2, 3, 4], &generated, 0.0, &mut rng);
        assert!(refs.equal(&generated));
    }

    #[test]
    fn beta_draws_have_the_right_mean_and_spread() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let draws: Vec<f64> = (0..20_000).map(|_| beta_symmetric(0.2, &mut rng)).collect();
        assert!(draws.iter().all(|d| (0.0..=1.0).contains(d)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        // Beta(0.2, 0.2): mean 1/2, variance 1 / (4 (2α + 1)) = 0.1786: mostly near 0 or 1.
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
        assert!((var - 0.1786).abs() < 0.01, "variance {var}");
    }

    #[test]
    fn mixup_blends_each_face_with_its_partner() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let x = Tensor::arange(4, (Kind::Float, Device::Cpu)).view([4, 1, 1, 1]);
        let (mixed, perm) = mixup(&x, 0.75, &mut rng);
        let perm = Vec::<i64>::try_from(&perm).expect("indices");
        let mut sorted = perm.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2, 3]);
        for (i, &j) in perm.iter().enumerate() {
            let want = 0.75 * i as f64 + 0.25 * j as f64;
            assert!((mixed.double_value(&[i as i64, 0, 0, 0]) - want).abs() < 1e-6);
        }
    }

    #[test]
    fn weight_average_follows_the_weights_and_swaps_them() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut w = vs.root().zeros("w", &[3]);
        let mut avg = WeightAverage::new(&vs, 0.5);
        // Weights 4 then 8: the average moves half-way each time, 0 → 2 → 5.
        for value in [4.0, 8.0] {
            let _ = tch::no_grad(|| w.fill_(value));
            avg.update();
        }
        avg.swap();
        assert_eq!(Vec::<f32>::try_from(&w).expect("floats"), vec![5.0; 3]);
        avg.swap();
        assert_eq!(Vec::<f32>::try_from(&w).expect("floats"), vec![8.0; 3]);
    }

    #[test]
    fn step_two_degrades_queries_only_when_asked_and_dropout_follows_the_config() {
        // Four checkerboard faces (stored as bytes 0/255).
        let board: Vec<u8> = (0..64 * 64)
            .map(|i| if (i % 64 + i / 64) % 2 == 0 { 0 } else { 255 })
            .collect();
        let data = TrainData {
            faces: Tensor::from_slice(&board)
                .view([1, 1, 64, 64])
                .repeat([4, 1, 1, 1]),
            labels: vec![1; 4],
            targets: vec![[0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]; 4],
            neutral_of: vec![Vec::new(); 4],
            origin: vec![crate::data::DatasetKind::Ferplus; 4],
        };
        let contrast = |t: &Tensor| t.std(false).double_value(&[]);
        // The same seed draws the same warps and lighting; with degradation on, the blur that
        // follows lowers the checkerboards' contrast, and nothing else differs.
        let with = |degrade: bool| {
            let cfg = TrainConfig {
                degrade,
                ..TrainConfig::default()
            };
            let mut rng = rand::rngs::StdRng::seed_from_u64(9);
            training_batch(&data, &[0, 1, 2, 3], &cfg, 2, Device::Cpu, &mut rng).0
        };
        let (degraded, clean) = (with(true), with(false));
        assert!(
            contrast(&degraded) < contrast(&clean) * 0.95,
            "{} vs {}",
            contrast(&degraded),
            contrast(&clean)
        );
        assert!((with(false) - &clean).abs().max().double_value(&[]) < 1e-6);

        // Dropout: 0 leaves training forward passes deterministic, 0.5 does not.
        let vs = nn::VarStore::new(Device::Cpu);
        let mut cls = crate::model::Classifier::new(&vs.root(), 16, 32, 8);
        let x = Tensor::ones([2, 16], (Kind::Float, Device::Cpu));
        let differ = |c: &crate::model::Classifier| {
            (c.forward_t(&x, true) - c.forward_t(&x, true))
                .abs()
                .max()
                .double_value(&[])
        };
        assert!(differ(&cls) > 0.0);
        cls.dropout = 0.0;
        assert_eq!(differ(&cls), 0.0);
    }

    #[test]
    fn a_neutral_face_is_its_own_target_with_neutral_identity() {
        // Faces 0 and 1: two different neutral photos of one person; 2: their expressive face.
        let data = TrainData {
            faces: Tensor::from_slice(
                &(0..3 * 64 * 64)
                    .map(|i| (i % 251) as u8)
                    .collect::<Vec<_>>(),
            )
            .view([3, 1, 64, 64]),
            labels: vec![0, 0, 1],
            targets: vec![[0.0; 8]; 3],
            neutral_of: vec![vec![0, 1], vec![0, 1], vec![0, 1]],
            origin: vec![crate::data::DatasetKind::Tfeid; 3],
        };
        let differs = |identity: bool, seed: u64| {
            let cfg = TrainConfig {
                neutral_identity: identity,
                augment: false,
                ..TrainConfig::default()
            };
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let (q, t, has) = training_batch(&data, &[0, 1, 2], &cfg, 1, Device::Cpu, &mut rng);
            assert_eq!(Vec::<f32>::try_from(&has).expect("floats"), vec![1.0; 3]);
            let per_face: Vec<f64> = (0..3)
                .map(|i| (q.get(i) - t.get(i)).abs().max().double_value(&[]))
                .collect();
            per_face
        };
        for seed in 0..8 {
            let d = differs(true, seed);
            assert_eq!(&d[..2], &[0.0, 0.0], "neutral faces are their own target");
            assert!(d[2] > 0.0, "the expressive face keeps its neutral partner");
        }
        // Without it a neutral face draws either photo of the person: some seed picks the other.
        assert!((0..8).any(|seed| differs(false, seed)[..2].iter().any(|&d| d > 0.0)));
    }

    #[test]
    fn degradation_blurs_and_keeps_range_and_augmentation_keeps_pairs_aligned() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        // A checkerboard loses contrast under blur, and stays in [0, 1].
        let checker: Vec<f32> = (0..64 * 64)
            .map(|i| ((i % 64 + i / 64) % 2) as f32)
            .collect();
        let x = Tensor::from_slice(&checker)
            .view([1, 1, 64, 64])
            .repeat([16, 1, 1, 1]);
        let y = degrade(&x, &mut rng);
        assert_eq!(y.size(), x.size());
        let (lo, hi) = (y.min().double_value(&[]), y.max().double_value(&[]));
        assert!(lo >= 0.0 && hi <= 1.0);
        let contrast = |t: &Tensor| t.std(false).double_value(&[]);
        assert!(contrast(&y) < contrast(&x) * 0.95);
        // The same face as query and target gets the same warp and lighting.
        let face = Tensor::rand([4, 1, 64, 64], (Kind::Float, Device::Cpu));
        let (q, t) = augment(&face, &face, &mut rng);
        assert!((q - t).abs().max().double_value(&[]) < 1e-6);
    }
}
