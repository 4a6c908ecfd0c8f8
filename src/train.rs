//! `dgcn train`: the paper's two steps. Step 1 trains the generator alone on (expressive, neutral)
//! pairs of the same person (L_Gen). Step 2 trains the whole network end to end with
//! L_Cls + λ_gen·L_Gen + λ_contr·L_Contr + λ_recon·L_Recon; samples without a neutral partner
//! (CK+48, FER) train every loss but L_Gen. Adam, fixed seeds, augmentation, checkpoints, resume.
use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

use crate::data::PreparedSet;
use crate::eval::evaluate;
use crate::face::FACE_SIZE;
use crate::labels::Expression;
use crate::model::{losses, GcNet, ModelConfig};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    pub model: ModelConfig,
    /// Step 1: epochs of generator-only training on neutral pairs.
    pub gen_epochs: usize,
    /// Step 2: epochs of end-to-end training.
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
    pub lambda_gen: f64,
    pub lambda_contr: f64,
    pub lambda_recon: f64,
    pub margin: f64,
    pub label_smoothing: f64,
    pub augment: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: ModelConfig::default(),
            gen_epochs: 10,
            epochs: 20,
            batch_size: 64,
            lr: 1e-3,
            seed: 1,
            lambda_gen: 1.0,
            lambda_contr: 0.5,
            lambda_recon: 0.5,
            margin: 0.5,
            label_smoothing: 0.1,
            augment: true,
        }
    }
}

/// Faces, labels and neutral partners from one or more prepared sets, as one training pool.
pub struct TrainData {
    /// N×1×64×64 u8 on the CPU.
    pub faces: Tensor,
    pub labels: Vec<i64>,
    /// For each sample, the pool indices of neutral faces of the same person (may be empty).
    pub neutral_of: Vec<Vec<usize>>,
}

impl TrainData {
    /// Pools the chosen samples of each set. Neutral partners are other neutral images of the same
    /// subject in the same dataset (a neutral face's partner is another neutral face, or itself).
    pub fn from_sets(parts: &[(&PreparedSet, Vec<usize>)]) -> TrainData {
        let mut buf = Vec::new();
        let mut labels = Vec::new();
        let mut keys = Vec::new();
        for (set, idx) in parts {
            for &i in idx {
                buf.extend_from_slice(set.face(i));
                labels.push(set.samples[i].label.index() as i64);
                keys.push(set.samples[i].subject.map(|s| (set.kind, s)));
            }
        }
        let mut neutrals: HashMap<_, Vec<usize>> = HashMap::new();
        for (j, k) in keys.iter().enumerate() {
            if let (Some(k), 0) = (k, labels[j]) {
                neutrals.entry(*k).or_default().push(j);
            }
        }
        let neutral_of = keys
            .iter()
            .map(|k| {
                k.and_then(|k| neutrals.get(&k).cloned())
                    .unwrap_or_default()
            })
            .collect();
        let n = labels.len() as i64;
        let side = FACE_SIZE as i64;
        TrainData {
            faces: Tensor::from_slice(&buf).view([n, 1, side, side]),
            labels,
            neutral_of,
        }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn with_neutral(&self) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| !self.neutral_of[i].is_empty())
            .collect()
    }

    /// Float faces in [0, 1] for the given indices.
    pub fn batch(&self, idx: &[usize], device: Device) -> Tensor {
        let index = Tensor::from_slice(&idx.iter().map(|&i| i as i64).collect::<Vec<_>>());
        self.faces
            .index_select(0, &index)
            .to_device(device)
            .to_kind(Kind::Float)
            / 255.0
    }

    pub fn labels_of(&self, idx: &[usize], device: Device) -> Tensor {
        Tensor::from_slice(&idx.iter().map(|&i| self.labels[i]).collect::<Vec<_>>())
            .to_device(device)
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
    pub train_acc: f64,
    pub val_acc: Option<f64>,
    pub seconds: f64,
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
}

/// Random flips, small similarity warps and brightness/contrast jitter, the same for a query and
/// its neutral target.
fn augment(query: &Tensor, target: &Tensor, rng: &mut impl Rng) -> (Tensor, Tensor) {
    let n = query.size()[0];
    let device = query.device();
    let mut theta = Vec::with_capacity(n as usize * 6);
    let mut gain = Vec::with_capacity(n as usize);
    let mut bias = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let flip = if rng.gen_bool(0.5) { -1.0f32 } else { 1.0 };
        let angle = rng.gen_range(-0.17f32..0.17);
        let scale = rng.gen_range(0.92f32..1.08);
        let (tx, ty) = (rng.gen_range(-0.06f32..0.06), rng.gen_range(-0.06f32..0.06));
        let (c, s) = (angle.cos() * scale, angle.sin() * scale);
        theta.extend_from_slice(&[c * flip, -s, tx, s * flip, c, ty]);
        gain.push(rng.gen_range(0.75f32..1.25));
        bias.push(rng.gen_range(-0.1f32..0.1));
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
    // The same photometric change for both: the generator keeps the lighting it is given.
    let jitter = |x: Tensor| {
        let mean = x.mean_dim([1i64, 2, 3].as_slice(), true, Kind::Float);
        ((x - &mean) * &gain + mean + &bias).clamp(0.0, 1.0)
    };
    (jitter(warp(query)), jitter(warp(target)))
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
pub fn train(
    data: &TrainData,
    val: Option<&TrainData>,
    cfg: &TrainConfig,
    device: Device,
    run_dir: Option<&Path>,
    resume: bool,
) -> Result<Trained> {
    anyhow::ensure!(!data.is_empty(), "no training samples");
    tch::manual_seed(cfg.seed as i64);
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let mut vs = nn::VarStore::new(device);
    let net = GcNet::new(&vs.root(), cfg.model);
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
    let mut opt = nn::Adam::default().build(&vs, cfg.lr)?;
    let mut history = Vec::new();
    let paired = data.with_neutral();
    let all: Vec<usize> = (0..data.len()).collect();

    for step in [1u8, 2] {
        let (epochs, pool) = if step == 1 {
            (cfg.gen_epochs, &paired)
        } else {
            (cfg.epochs, &all)
        };
        if pool.is_empty() {
            if step == 1 && epochs > 0 {
                tracing::warn!("no (face, neutral) pairs: step 1 skipped");
            }
            continue;
        }
        for epoch in 1..=epochs {
            if (step, epoch) <= start {
                continue;
            }
            let lr = cfg.lr
                * 0.5
                * (1.0 + (std::f64::consts::PI * (epoch - 1) as f64 / epochs as f64).cos());
            opt.set_lr(lr);
            let m = run_epoch(
                &net, &mut opt, data, pool, cfg, step, epoch, device, &mut rng,
            )?;
            let val_acc = match (step, val) {
                (2, Some(v)) if !v.is_empty() => Some(evaluate(&net, v, device, 256).accuracy()),
                _ => None,
            };
            let m = EpochMetrics { val_acc, ..m };
            tracing::info!(
                step, epoch, loss = m.loss, train_acc = m.train_acc, val_acc = ?m.val_acc, "epoch done"
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
            history.push(m);
        }
    }
    Ok(Trained { vs, net, history })
}

#[allow(clippy::too_many_arguments)]
fn run_epoch(
    net: &GcNet,
    opt: &mut nn::Optimizer,
    data: &TrainData,
    pool: &[usize],
    cfg: &TrainConfig,
    step: u8,
    epoch: usize,
    device: Device,
    rng: &mut rand::rngs::StdRng,
) -> Result<EpochMetrics> {
    let t0 = std::time::Instant::now();
    let mut order = pool.to_vec();
    order.shuffle(rng);
    let batches: Vec<&[usize]> = order
        .chunks(cfg.batch_size)
        .filter(|b| b.len() > 1)
        .collect();
    let pb = progress_bar(batches.len() as u64, format!("step{step} ep{epoch}"));
    let (mut sums, mut n_seen, mut correct) = ([0.0f64; 5], 0usize, 0i64);
    for idx in batches {
        let mut partner = Vec::with_capacity(idx.len());
        let mut has = Vec::with_capacity(idx.len());
        for &i in idx {
            match data.neutral_of[i].choose(rng) {
                Some(&j) => {
                    partner.push(j);
                    has.push(1.0f32);
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
        }
        let has = Tensor::from_slice(&has).to_device(device);
        let labels = data.labels_of(idx, device);

        let (loss, parts) = if step == 1 {
            let generated = net.generator.forward_t(&query, true);
            let l = losses::generation_loss(&generated, &neutral, &has);
            (l.shallow_clone(), [l.double_value(&[]), 0.0, 0.0, 0.0])
        } else {
            let out = net.forward_t(&query, None, true);
            let l_gen = losses::generation_loss(&out.generated, &neutral, &has);
            let l_cls = losses::classification_loss(&out.logits, &labels, cfg.label_smoothing);
            let is_neutral = labels
                .eq(Expression::Neutral.index() as i64)
                .to_kind(Kind::Float);
            let mut loss = &l_cls + &l_gen * cfg.lambda_gen;
            let mut l_contr_v = 0.0;
            if cfg.model.use_contrastive {
                let l = losses::contrastive_loss(
                    &out.emb_query,
                    &out.emb_reference,
                    &is_neutral,
                    cfg.margin,
                );
                l_contr_v = l.double_value(&[]);
                loss += l * cfg.lambda_contr;
            }
            let mut l_recon_v = 0.0;
            if let (Some(rq), Some(rr)) = (&out.recon_query, &out.recon_reference) {
                let l = losses::reconstruction_loss(rq, &query)
                    + losses::reconstruction_loss(rr, &out.generated.detach());
                l_recon_v = l.double_value(&[]);
                loss += l * cfg.lambda_recon;
            }
            correct += out
                .logits
                .argmax(1, false)
                .eq_tensor(&labels)
                .sum(Kind::Int64)
                .int64_value(&[]);
            (
                loss,
                [
                    l_gen.double_value(&[]),
                    l_cls.double_value(&[]),
                    l_contr_v,
                    l_recon_v,
                ],
            )
        };
        opt.backward_step(&loss);
        let lv = loss.double_value(&[]);
        anyhow::ensure!(
            lv.is_finite(),
            "loss became {lv} at step {step} epoch {epoch}"
        );
        let b = idx.len() as f64;
        sums[0] += lv * b;
        for k in 0..4 {
            sums[k + 1] += parts[k] * b;
        }
        n_seen += idx.len();
        pb.set_message(format!(
            "loss {:.4}{}",
            sums[0] / n_seen as f64,
            if step == 2 {
                format!(" acc {:.3}", correct as f64 / n_seen as f64)
            } else {
                String::new()
            }
        ));
        pb.inc(1);
    }
    pb.finish_and_clear();
    let n = n_seen.max(1) as f64;
    Ok(EpochMetrics {
        step,
        epoch,
        loss: sums[0] / n,
        loss_gen: sums[1] / n,
        loss_cls: sums[2] / n,
        loss_contr: sums[3] / n,
        loss_recon: sums[4] / n,
        train_acc: if step == 2 {
            correct as f64 / n
        } else {
            f64::NAN
        },
        val_acc: None,
        seconds: t0.elapsed().as_secs_f64(),
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
    let s = FACE_SIZE as u32 * 2;
    let mut canvas = image::GrayImage::new(s * 3, s * rows.len() as u32);
    for (r, _) in rows.iter().enumerate() {
        for (c, t) in [&query, &generated, &neutral].iter().enumerate() {
            let img = tensor_to_luma(&t.get(r as i64));
            let big = image::imageops::resize(&img, s, s, image::imageops::FilterType::Nearest);
            image::imageops::replace(
                &mut canvas,
                &big,
                (c as u32 * s) as i64,
                (r as u32 * s) as i64,
            );
        }
    }
    canvas
        .save(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// 1×64×64 float tensor in [0, 1] → grey image.
pub fn tensor_to_luma(t: &Tensor) -> image::GrayImage {
    let v: Vec<f32> = t
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .flatten(0, -1)
        .try_into()
        .unwrap_or_default();
    let px = v
        .iter()
        .map(|x| (x.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    image::GrayImage::from_raw(FACE_SIZE as u32, FACE_SIZE as u32, px)
        .unwrap_or_else(|| image::GrayImage::new(FACE_SIZE as u32, FACE_SIZE as u32))
}
