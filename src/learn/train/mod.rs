//! `dgcn train`: the paper's two steps. Step 1 trains the generator alone on (expressive, neutral)
//! pairs of the same person (L_Gen), and on neutral faces as their own target (identity: a neutral
//! face must come back unchanged). Step 2 trains the contrastive encoder and the classifier with
//! L_Cls + λ_contr·L_Contr + λ_recon·L_Recon while the generator is held as step 1 left it
//! (measured: letting L_Cls reach it pulls its references away from neutral); the paper's fully
//! end-to-end step 2 (+ λ_gen·L_Gen) stays available. Soft targets (FER+ votes), class-balanced
//! loss weights, geometric and photometric augmentation; Adam with a cosine schedule, fixed seeds,
//! checkpoints every epoch, resume, and a start from given weights (`--init`).
mod batch;
mod config;
mod epoch;

use std::path::Path;

use anyhow::{Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tch::{nn, nn::OptimizerConfig, Device, Tensor};

use super::metrics::evaluate;
use super::pool::TrainData;
use crate::learn::grid::write_grid;
use crate::model::subspace::NeutralSubspace;
use crate::model::{GcNet, ModelConfig, GENERATOR_GROUP};
pub use batch::training_batch;
pub use config::TrainConfig;
use epoch::{run_epoch, write_epoch, Teachers, WeightAverage};

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
