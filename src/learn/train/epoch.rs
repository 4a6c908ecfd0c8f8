//! One epoch of a step: batches through the network, losses, the optimiser, the weights' moving
//! average, and the checkpoint written after it.
use std::path::Path;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rand::Rng;
use tch::{nn, Kind, Tensor};

use super::batch::{beta_symmetric, mixup, training_batch, with_own_references};
use super::{EpochMetrics, ResumeState, TrainConfig};
use crate::labels::Expression;
use crate::learn::pool::TrainData;
use crate::model::subspace::NeutralSubspace;
use crate::model::{losses, GcNet};

/// An exponential moving average of a network's floating-point variables (weights and batch-norm
/// statistics), updated after every optimiser step: the average of the last ≈ 1/(1 − decay)
/// batches, less noisy than the weights of any one batch.
pub(super) struct WeightAverage {
    decay: f64,
    /// (the live variable, its average).
    pairs: Vec<(Tensor, Tensor)>,
}

impl WeightAverage {
    pub(super) fn new(vs: &nn::VarStore, decay: f64) -> WeightAverage {
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
    pub(super) fn swap(&mut self) {
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

/// What teaches the generator in step 1 beside the neutral pairs: a frozen guide's call on its
/// references, and the neutral-face subspace's projection of the faces that have no pair.
#[derive(Clone, Copy)]
pub(super) struct Teachers<'a> {
    pub(super) guide: Option<&'a GcNet>,
    /// Applied in turn (empty: none).
    pub(super) subspaces: &'a [NeutralSubspace],
}

/// Running sums of one epoch, kept on the device so that a batch costs no host round trip.
struct EpochSums {
    /// loss, L_Gen, L_Cls, L_Contr, L_Recon, L_Neutral, each times the batch size.
    losses: Tensor,
    correct: Tensor,
    seen: usize,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn run_epoch(
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

pub(super) fn write_epoch(dir: &Path, vs: &nn::VarStore, m: &EpochMetrics) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;
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
}
