//! `dgcn train` and `dgcn calibrate`.
use std::path::Path;

use anyhow::{Context, Result};
use tch::Device;

use super::{
    prepare_all, train_config, train_val_parts, validation_description, weights_provenance, Parts,
};
use crate::app::cli::{CalibrateArgs, TrainArgs};
use crate::data::{DatasetKind, PreparedSet};
use crate::device::device_name;
use crate::learn::intensity::fit_intensity_on;
use crate::learn::pool::TrainData;
use crate::learn::train::train;

/// A run on TFEID that starts from `init` must validate on the TFEID performers `init`'s
/// training held out: the others were in its training data, and validation on them would
/// flatter the run. `init`'s sidecar records them (null: it did not train on TFEID; absent:
/// weights written before 2026-11-29, a warning).
fn check_same_held_out(init: &Path, held: &[u32]) -> Result<()> {
    let side = crate::model::weights::read_sidecar(init)?;
    match side.training.get("held_out_tfeid_performers") {
        Some(serde_json::Value::Null) => {}
        Some(v) => {
            let before: Vec<u32> = serde_json::from_value(v.clone()).with_context(|| {
                format!(
                    "{}: held_out_tfeid_performers is not a list",
                    init.display()
                )
            })?;
            anyhow::ensure!(
                before == held,
                "{} was trained with TFEID performers {:?} held out, this run holds out {:?}: its \
             validation would include faces the initial weights trained on (use the \
             --holdout-seed and --holdout-subjects of that run)",
                init.display(),
                before,
                held
            )
        }
        None => tracing::warn!(
            init = %init.display(),
            ?held,
            "the initial weights do not record which TFEID performers their training held out; \
             make sure it held out these"
        ),
    }
    Ok(())
}

/// Logit adjustment and temperature fitted on `val` for a network trained on `data`.
fn calibration_on(
    net: &crate::model::GcNet,
    data: &TrainData,
    val: &TrainData,
    device: Device,
    adjust: bool,
) -> Result<Option<crate::learn::metrics::Calibrated>> {
    if val.is_empty() {
        return Ok(None);
    }
    let logits = crate::learn::metrics::logits(net, val, device, 256);
    let labels = val.all_labels();
    Ok(Some(crate::learn::metrics::calibrate(
        &logits,
        &labels,
        &data.class_prior(),
        adjust,
    )?))
}

/// `dgcn calibrate`: refits the temperature (and, asked for, a logit adjustment) and the
/// intensity scale of existing weights on the validation data of `dgcn train` and rewrites their
/// sidecar.
pub fn run_calibrate(args: &CalibrateArgs) -> Result<()> {
    let device = args.common.runtime().device()?;
    let sets = prepare_all(&args.sets.datasets, &args.data, &args.common)?;
    let mut model = crate::model::weights::load(&args.weights, device)?;
    model.net.config.flip_average = args.flip;
    model.net.set_denoise(args.denoise);
    let (train_parts, val_parts, _) =
        train_val_parts(&sets, args.sets.holdout_subjects, args.sets.holdout_seed);
    let data = TrainData::from_sets(&train_parts);
    let val = TrainData::from_sets(&val_parts);
    let c = calibration_on(&model.net, &data, &val, device, args.logit_adjustment)?
        .context("no validation data to calibrate on")?;
    let intensity = fit_intensity_on(&mut model.net, &data, &val, device)?;
    crate::model::weights::write_calibration(
        &args.weights,
        c.temperature,
        args.logit_adjustment.then(|| c.class_bias.clone()),
        serde_json::to_value(&c)?,
        intensity.clone(),
        &model.net.config,
    )?;
    println!(
        "intensity: {} weights; scale (validation faces): {:?}; for the own neutral face as reference: {:?}",
        intensity.weights.as_ref().map_or(0, |w| w.values().len()),
        intensity.scales.generated,
        intensity.scales.own
    );
    println!("{}", serde_json::to_string_pretty(&c)?);
    println!(
        "calibration written to {}",
        crate::model::weights::sidecar_path(&args.weights).display()
    );
    Ok(())
}

pub fn run_train(args: &TrainArgs) -> Result<()> {
    let device = args.common.runtime().device()?;
    let sets = prepare_all(&args.sets.datasets, &args.data, &args.common)?;
    let cfg = train_config(&args.model, args.init.as_deref())?;
    let (train_parts, val_parts, held_performers) =
        train_val_parts(&sets, args.sets.holdout_subjects, args.sets.holdout_seed);
    if let (Some(init), Some(held)) = (args.init.as_deref(), &held_performers) {
        check_same_held_out(init, held)?;
    }
    let (data, taught) = taught_pool(args, &train_parts)?;
    let val = TrainData::from_sets(&val_parts);
    tracing::info!(train = data.len(), val = val.len(), pairs = data.with_neutral().len(), device = %device_name(device), "training");
    let mut trained = train(
        &data,
        Some(&val),
        &cfg,
        device,
        Some(&args.run),
        args.resume,
        args.init.as_deref(),
    )?;
    // The epoch the weights are from: the kept one with --keep-best, else the last.
    let last = trained.final_metrics().cloned();
    // Logit adjustment and temperature scaling on the validation data: rare expressions get
    // predicted, and the bars show probabilities that mean what they say.
    let calibrated = calibration_on(&trained.net, &data, &val, device, args.logit_adjustment)?;
    let temperature = calibrated.as_ref().map(|c| c.temperature).unwrap_or(1.0);
    let class_bias = calibrated
        .as_ref()
        .filter(|_| args.logit_adjustment)
        .map(|c| c.class_bias.clone());
    let calibration = serde_json::to_value(&calibrated)?;
    tracing::info!(temperature, %calibration, "calibrated on validation data");
    let intensity = fit_intensity_on(&mut trained.net, &data, &val, device)?;
    let intensity_scale = intensity.scales.generated;
    // The generator on the held-out TFEID performers.
    let held_tfeid: Vec<(&PreparedSet, Vec<usize>)> = val_parts
        .iter()
        .filter(|(s, _)| s.kind == DatasetKind::Tfeid)
        .map(|(s, i)| (*s, i.clone()))
        .collect();
    let held_fidelity = if held_tfeid.is_empty() {
        None
    } else {
        let held = TrainData::from_sets(&held_tfeid);
        Some(crate::learn::metrics::fidelity(
            &trained.net,
            None,
            &held,
            device,
            intensity.scales,
        )?)
    };
    tracing::info!(
        ?intensity_scale,
        ?held_fidelity,
        "intensity scale and held-out reference fidelity"
    );
    let training = serde_json::json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "datasets": sets.iter().map(|s| serde_json::json!({
            "name": s.kind.name(), "faces": s.len(), "detector_hit_rate": s.hit_rate()
        })).collect::<Vec<_>>(),
        "train_samples": data.len(),
        "validation_samples": val.len(),
        "holdout_seed": args.sets.holdout_seed,
        "held_out_tfeid_performers": held_performers,
        "config": cfg,
        "init": weights_provenance(args.init.as_deref()),
        "teachers": taught,
        "generator_from": weights_provenance(cfg.generator_from.as_deref()),
        "epochs_trained": trained.history.len(),
        "device": device_name(device),
    });
    let metrics = serde_json::json!({
        "validation_accuracy": last.as_ref().and_then(|m| m.val_acc),
        "validation_mean_recall": last.as_ref().and_then(|m| m.val_mean_recall),
        "train_accuracy": last.as_ref().map(|m| m.train_acc),
        "epoch": last.as_ref().map(|m| m.epoch),
        "validation": validation_description(&val_parts, held_performers.as_deref()),
        "calibration": calibration,
        "held_out_tfeid_reference_fidelity": held_fidelity,
    });
    crate::model::weights::save(
        &trained.vs,
        &args.weights,
        crate::model::weights::SidecarInfo {
            config: cfg.model,
            training,
            metrics,
            temperature,
            intensity: intensity.clone(),
        },
    )?;
    crate::model::weights::write_calibration(
        &args.weights,
        temperature,
        class_bias,
        calibration,
        intensity,
        &cfg.model,
    )?;
    println!("weights written to {}", args.weights.display());
    Ok(())
}

/// The training pool of `train`, with the teachers' distributions blended into the targets
/// when --teacher-predictions names any (their combination written to the run folder); and what
/// the sidecar records of them.
fn taught_pool(args: &TrainArgs, parts: &Parts<'_>) -> Result<(TrainData, serde_json::Value)> {
    if args.teacher_predictions.is_empty() {
        return Ok((TrainData::from_sets(parts), serde_json::Value::Null));
    }
    let share = args.teacher_share;
    anyhow::ensure!(
        share > 0.0 && share <= 1.0,
        "--teacher-share {share}: expected a share above 0 and at most 1"
    );
    let teacher = crate::learn::teacher::TeacherTargets::read(&args.teacher_predictions)?;
    let (data, matched) = TrainData::from_sets_taught(parts, &teacher, share as f32);
    anyhow::ensure!(
        matched > 0,
        "none of the {} faces in the teacher predictions is a training face of this run (were \
         they written by `dgcn eval --split train` on the same datasets?)",
        teacher.len()
    );
    std::fs::create_dir_all(&args.run)
        .with_context(|| format!("creating {}", args.run.display()))?;
    let combined = args.run.join("teacher_targets.csv");
    teacher.write_csv(&combined)?;
    tracing::info!(
        teachers = teacher.teachers,
        matched,
        of = data.len(),
        share,
        "distillation targets blended in"
    );
    let files: Vec<String> = args
        .teacher_predictions
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    Ok((
        data,
        serde_json::json!({
            "predictions": files,
            "share": share,
            "faces_matched": matched,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::check_same_held_out;
    use crate::app::learn::weights_provenance;

    #[test]
    fn a_run_validates_on_the_performers_its_initial_weights_held_out() {
        use crate::model::weights::{save, SidecarInfo};
        use crate::model::{GcNet, ModelConfig};
        let dir = std::env::temp_dir().join(format!("dgcn-held-out-{}", std::process::id()));
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let cfg = ModelConfig::shipped_variant(0.25);
        let _ = GcNet::new(&vs.root(), cfg);
        let write = |name: &str, training: serde_json::Value| {
            let path = dir.join(name);
            let info = SidecarInfo {
                config: cfg,
                training,
                metrics: serde_json::Value::Null,
                temperature: 1.0,
                intensity: Default::default(),
            };
            save(&vs, &path, info).expect("save");
            path
        };
        let held = write(
            "held.safetensors",
            serde_json::json!({"held_out_tfeid_performers": [9, 18, 29]}),
        );
        assert!(check_same_held_out(&held, &[9, 18, 29]).is_ok());
        let err = check_same_held_out(&held, &[4, 18, 29]).expect_err("other performers");
        assert!(err.to_string().contains("--holdout-seed"), "{err}");
        // Trained without TFEID (null), or written before the field existed: allowed.
        let no_tfeid = write(
            "no-tfeid.safetensors",
            serde_json::json!({"held_out_tfeid_performers": null}),
        );
        assert!(check_same_held_out(&no_tfeid, &[4, 18, 29]).is_ok());
        let old = write(
            "old.safetensors",
            serde_json::json!({"command": "dgcn train"}),
        );
        assert!(check_same_held_out(&old, &[4, 18, 29]).is_ok());
        // The sidecar of a run names its initial weights by hash, not only by path.
        let p = weights_provenance(Some(&old)).expect("provenance");
        let hash = crate::model::weights::sha256_file(&old).expect("hash");
        assert_eq!(p["sha256"].as_str(), Some(hash.as_str()));
        assert_eq!(p["trained"].as_str(), Some("dgcn train"));
        assert!(weights_provenance(None).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
