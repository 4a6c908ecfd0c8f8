//! `dgcn train`, `dgcn eval` (datasets) and `dgcn calibrate`: datasets prepared with the face
//! detector, split into training and validation, and handed to `learn`.
use std::path::Path;

use anyhow::{Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use tch::Device;

use super::cli::{CalibrateArgs, CommonArgs, DataArgs, EvalArgs, ModelTrainArgs, TrainArgs};
use crate::data::{self, DatasetKind, PreparedSet, Split};
use crate::device::device_name;

use crate::infer::{default_weights_path, Predictor};
use crate::learn::crossval::cross_validate;
use crate::learn::intensity::{fit_intensity, fit_intensity_on};
use crate::learn::metrics::{
    fidelity, scored_faces, write_predictions_csv, DatasetReport, ScoredFace,
};
use crate::learn::pool::TrainData;
use crate::learn::train::{train, TrainConfig};
use crate::model::{ClassifierInput, ModelConfig};

/// The training configuration from the flags. With `init`, the model variant is the one of
/// those weights (their sidecar), whatever the flags say.
pub fn train_config(m: &ModelTrainArgs, init: Option<&Path>) -> Result<TrainConfig> {
    let mut model = ModelConfig {
        width: m.width,
        use_contrastive: !m.no_contrastive,
        use_reconstruction: !m.no_reconstruction,
        hidden: m.hidden,
        classifier_input: m.classifier_input,
        standardize: !m.no_standardize,
        encoder_width: m.encoder_width,
        encoder_convs: m.encoder_convs,
        encoder_residual: false,
        flip_average: false,
        generator_warp: m.generator_warp,
        reference_mouth: m.reference_mouth.unwrap_or(0),
    };
    if m.paper {
        model.classifier_input = ClassifierInput::Contrast;
        model.standardize = false;
        model.encoder_width = None;
        model.encoder_convs = 1;
        model.encoder_residual = false;
    }
    if let Some(path) = init {
        let side = crate::model::weights::read_sidecar(path)?;
        model = ModelConfig {
            use_contrastive: model.use_contrastive,
            use_reconstruction: model.use_reconstruction,
            ..side.model
        };
        if m.widen_encoder {
            model.encoder_width = Some(2.0 * side.model.encoder_width.unwrap_or(side.model.width));
        }
        if m.deepen_encoder {
            model.encoder_convs = 2;
            model.encoder_residual = true;
        }
        if let Some(k) = m.reference_mouth {
            model.reference_mouth = k;
        }
        tracing::info!(init = %path.display(), ?model, "model variant taken from the initial weights");
    }
    model
        .validate()
        .map_err(|e| anyhow::anyhow!("model configuration: {e}"))?;
    anyhow::ensure!(
        [m.lambda_neutral, m.lambda_tv, m.lambda_ssim, m.lambda_flow, m.lambda_subspace]
            .iter()
            .all(|l| l.is_finite() && *l >= 0.0),
        "--lambda-neutral {} / --lambda-tv {} / --lambda-ssim {} / --lambda-flow {} / --lambda-subspace {}: expected numbers ≥ 0",
        m.lambda_neutral,
        m.lambda_tv,
        m.lambda_ssim,
        m.lambda_flow,
        m.lambda_subspace
    );
    for region in &m.subspace_regions {
        let [top, bottom, left, right] = region.bounds();
        let pixels = region.pixels() as usize;
        anyhow::ensure!(
            m.neutral_subspace <= pixels,
            "--neutral-subspace {}: the region {region:?} ({}×{} px of the 64×64 face) has at most {pixels} principal components",
            m.neutral_subspace,
            bottom - top,
            right - left
        );
    }
    anyhow::ensure!(
        (0.0..1.0).contains(&m.ema),
        "--ema {}: expected a decay from 0 (off) to below 1, e.g. 0.998",
        m.ema
    );
    anyhow::ensure!(
        (0.0..1.0).contains(&m.dropout),
        "--dropout {}: expected a probability from 0 to below 1",
        m.dropout
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&m.erase),
        "--erase {}: expected a probability from 0 to 1",
        m.erase
    );
    anyhow::ensure!(
        m.mixup >= 0.0 && m.mixup.is_finite(),
        "--mixup {}: expected a Beta parameter ≥ 0 (0: off), e.g. 0.2",
        m.mixup
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&m.own_reference_share),
        "--own-reference-share {}: expected a share from 0 to 1",
        m.own_reference_share
    );
    anyhow::ensure!(
        m.own_reference_share == 0.0 || !(m.paper || m.generator_in_step2),
        "--own-reference-share acts on the step with the generator held; it cannot be combined \
         with --generator-in-step2 or --paper"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&m.class_balance),
        "--class-balance {}: expected 0 to 1",
        m.class_balance
    );
    Ok(TrainConfig {
        model,
        gen_epochs: m.gen_epochs,
        epochs: m.epochs,
        batch_size: m.batch_size.max(2),
        lr: m.lr,
        gen_lr: m.gen_lr,
        seed: m.seed,
        augment: !m.no_augment,
        class_balance: if m.paper { 0.0 } else { m.class_balance },
        generator_in_step2: m.paper || m.generator_in_step2,
        neutrality_guide: m.neutrality_guide.clone(),
        generator_from: m.generator_from.clone(),
        lambda_ssim: m.lambda_ssim,
        subspace_components: m.neutral_subspace,
        lambda_subspace: m.lambda_subspace,
        subspace_regions: m.subspace_regions.clone(),
        neutral_identity: m.neutral_identity,
        lambda_neutral: m.lambda_neutral,
        lambda_tv: m.lambda_tv,
        lambda_flow: m.lambda_flow,
        repeat: m.repeat.clone(),
        repeat_balanced: !m.repeat_plain,
        ema_decay: m.ema,
        widen_encoder: m.widen_encoder,
        deepen_encoder: m.deepen_encoder,
        keep_best: m.keep_best,
        dropout: m.dropout,
        degrade: !m.no_degrade,
        erase: m.erase,
        mixup: m.mixup,
        own_reference_share: m.own_reference_share,
        ..TrainConfig::default()
    })
}

/// The prepared datasets `kinds`: read from `--pack` (no detector needed), or detected and
/// aligned from the data folder's archives (cached).
pub(crate) fn prepare_all(
    kinds: &[DatasetKind],
    args: &DataArgs,
    common: &CommonArgs,
) -> Result<Vec<PreparedSet>> {
    let sets = match &args.pack {
        Some(pack) => data::pack::read_pack(pack, kinds)
            .with_context(|| format!("reading the pack {}", pack.display()))?,
        None => {
            let det = common.runtime().detector()?;
            let cache = args
                .cache_dir
                .clone()
                .unwrap_or_else(data::default_cache_dir);
            let mut sets = Vec::new();
            for &kind in kinds {
                let root = data::locate(kind, &args.data);
                sets.push(data::prepare(kind, &root, &det, &cache).with_context(|| {
                    format!("preparing {} from {}", kind.name(), root.display())
                })?);
            }
            sets
        }
    };
    Ok(sets
        .into_iter()
        .map(|set| {
            let set = match args.max_per_class {
                Some(n) => set.truncated_per_class(n),
                None => set,
            };
            tracing::info!(
                dataset = set.kind.name(),
                faces = set.len(),
                hit_rate = format!("{:.3}", set.hit_rate()),
                "dataset ready"
            );
            set
        })
        .collect())
}

/// Whether a dataset is there to read (in the pack, or in the data folder).
fn available(kind: DatasetKind, args: &DataArgs) -> bool {
    match &args.pack {
        Some(pack) => data::pack::pack_info(pack)
            .is_ok_and(|i| i.datasets.iter().any(|d| d.name == kind.name())),
        None => data::locate(kind, &args.data).exists(),
    }
}

/// `dgcn data pack`: the prepared datasets in one file (see `data::pack`).
pub fn run_pack(args: &super::cli::PackArgs) -> Result<()> {
    anyhow::ensure!(
        args.data.pack.is_none(),
        "--pack reads a pack; `dgcn data pack` writes one to --out"
    );
    if let Some(m) = args.max_mb {
        anyhow::ensure!(
            m.is_finite() && m > 0.0,
            "--max-mb {m}: expected a size in MiB above 0"
        );
    }
    let sets = prepare_all(&args.datasets, &args.data, &args.common)?;
    let max = args.max_mb.map(|m| (m * 1024.0 * 1024.0) as usize);
    let info = data::pack::write_pack(&sets, &args.splits, &args.out, max)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let size = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    println!("| dataset | faces | train | valid | test | left out | MiB |\n|---|---:|---:|---:|---:|---:|---:|");
    for d in &info.datasets {
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.2} |",
            d.name,
            d.faces,
            d.train,
            d.valid,
            d.test,
            d.left_out,
            d.bytes as f64 / 1048576.0
        );
    }
    println!(
        "pack written to {} ({:.2} MiB)",
        args.out.display(),
        size as f64 / 1048576.0
    );
    Ok(())
}

/// The faces of `n` TFEID performers held out (chosen by seed) for validation and reference
/// grids: (their faces, the rest, the performers in ascending order).
fn held_out_performers(
    set: &PreparedSet,
    n: usize,
    seed: u64,
) -> (Vec<usize>, Vec<usize>, Vec<u32>) {
    let mut subjects: Vec<u32> = set.samples.iter().filter_map(|s| s.subject).collect();
    subjects.sort_unstable();
    subjects.dedup();
    subjects.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    subjects.truncate(n);
    let (held, rest) = (0..set.len()).partition(|&i| {
        set.samples[i]
            .subject
            .is_some_and(|s| subjects.contains(&s))
    });
    subjects.sort_unstable();
    (held, rest, subjects)
}

type Parts<'a> = Vec<(&'a PreparedSet, Vec<usize>)>;

/// Training and validation samples of each set: TFEID's held-out performers and FER+ Valid
/// validate, the rest (training splits) trains.
/// Also returns the held-out TFEID performers (None without TFEID).
fn train_val_parts(
    sets: &[PreparedSet],
    holdout: usize,
    seed: u64,
) -> (Parts<'_>, Parts<'_>, Option<Vec<u32>>) {
    let mut train_parts = Vec::new();
    let mut val_parts = Vec::new();
    let mut held = None;
    for set in sets {
        match set.kind {
            DatasetKind::Tfeid => {
                let (val, tr, performers) = held_out_performers(set, holdout, seed);
                held = Some(performers);
                train_parts.push((set, tr));
                val_parts.push((set, val));
            }
            DatasetKind::Ferplus => {
                train_parts.push((set, set.split_indices(Split::Train)));
                val_parts.push((set, set.split_indices(Split::Valid)));
            }
            _ => train_parts.push((set, set.split_indices(Split::Train))),
        }
    }
    (train_parts, val_parts, held)
}

/// What validated a run, for its sidecar: e.g. "TFEID performers [9, 18, 29] + FER+ Valid"
/// (`held`: the TFEID performers `train_val_parts` held out).
fn validation_description(val_parts: &Parts<'_>, held: Option<&[u32]>) -> String {
    let parts: Vec<String> = val_parts
        .iter()
        .filter(|(_, idx)| !idx.is_empty())
        .map(|(set, _)| match set.kind {
            DatasetKind::Tfeid => format!("TFEID performers {:?}", held.unwrap_or_default()),
            DatasetKind::Ferplus => "FER+ Valid".to_string(),
            other => format!("{} validation split", other.name()),
        })
        .collect();
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(" + ")
    }
}

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
        args.flip,
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
        cfg.model.flip_average,
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

/// The sets `eval` reads beside --datasets, each once: those of --add-datasets, and FER+ for
/// --intensity-on-valid.
fn extra_sets(args: &EvalArgs) -> Result<Vec<PreparedSet>> {
    if let Some(k) = args
        .add_datasets
        .iter()
        .find(|k| matches!(k, DatasetKind::Tfeid | DatasetKind::Ckplus48))
    {
        anyhow::bail!(
            "--add-datasets {}: the lab datasets are already added to each other's folds; add \
             in-the-wild datasets (ferplus, fer2013)",
            k.name()
        );
    }
    let mut kinds = args.add_datasets.clone();
    if args.intensity_on_valid && !kinds.contains(&DatasetKind::Ferplus) {
        anyhow::ensure!(
            available(DatasetKind::Ferplus, &args.data),
            "--intensity-on-valid needs FER+ (its validation split) in the data folder or pack"
        );
        kinds.push(DatasetKind::Ferplus);
    }
    if kinds.is_empty() {
        return Ok(Vec::new());
    }
    prepare_all(&kinds, &args.data, &args.common)
}

/// `eval --add-datasets`: the training split of each added dataset (capped by
/// --add-per-class), trained on by every fold and cross-dataset row.
fn added_training_sets(args: &EvalArgs, extra: &[PreparedSet]) -> Vec<PreparedSet> {
    extra
        .iter()
        .filter(|set| args.add_datasets.contains(&set.kind))
        .map(|set| {
            let capped;
            let set = match args.add_per_class {
                Some(n) => {
                    capped = set.truncated_per_class(n);
                    &capped
                }
                None => set,
            };
            set.subset(&set.split_indices(Split::Train))
        })
        .collect()
}

/// `eval --intensity-on-valid`: FER+ Valid, on which each fold or cross-dataset network's
/// intensity is fitted as `dgcn calibrate` fits the shipped weights' (faces none of them trained
/// on), instead of on the network's own training faces.
fn intensity_faces(args: &EvalArgs, extra: &[PreparedSet]) -> Result<Option<TrainData>> {
    if !args.intensity_on_valid {
        return Ok(None);
    }
    let parts: Vec<(&PreparedSet, Vec<usize>)> = extra
        .iter()
        .filter(|s| s.kind == DatasetKind::Ferplus)
        .map(|s| (s, s.split_indices(Split::Valid)))
        .collect();
    let faces = TrainData::from_sets(&parts);
    anyhow::ensure!(
        !faces.is_empty(),
        "--intensity-on-valid: FER+ has no validation faces"
    );
    Ok(Some(faces))
}

/// How a report names the sets added to a fold's training: "ckplus48, ferplus (training split,
/// ≤ 500 per class)".
fn added_names(sets: &[&PreparedSet], per_class: Option<usize>) -> String {
    if sets.is_empty() {
        return "nothing".to_string();
    }
    sets.iter()
        .map(|s| match (s.kind, per_class) {
            (DatasetKind::Tfeid | DatasetKind::Ckplus48, _) => s.kind.name().to_string(),
            (_, Some(n)) => format!("{} (training split, ≤ {n} per class)", s.kind.name()),
            (_, None) => format!("{} (training split)", s.kind.name()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Path, SHA-256 and training command of weights a run started from (`--init`,
/// `--generator-from`): the path alone does not say which weights, since a run may overwrite
/// the very file it started from.
fn weights_provenance(path: Option<&Path>) -> Option<serde_json::Value> {
    let path = path?;
    let side = crate::model::weights::read_sidecar(path).ok();
    let how = side.as_ref().and_then(|s| {
        s.training
            .get("recipe")
            .or_else(|| s.training.get("command"))
            .cloned()
    });
    Some(serde_json::json!({
        "path": path.display().to_string(),
        "sha256": side.as_ref().map(|s| s.sha256.clone()),
        "trained": how,
    }))
}

pub fn run_eval(args: &EvalArgs) -> Result<()> {
    if let Some(session) = &args.session {
        return super::rescore::run_rescore(session, args);
    }
    let device = args.common.runtime().device()?;
    let init = args.init.as_deref();
    let cfg = train_config(&args.model, init)?;
    let mut reports = Vec::new();
    let lab_kinds = [DatasetKind::Tfeid, DatasetKind::Ckplus48];
    let sets = prepare_all(&args.datasets, &args.data, &args.common)?;
    let extra = extra_sets(args)?;
    let added = added_training_sets(args, &extra);
    let intensity_faces = intensity_faces(args, &extra)?;
    let mut predictor: Option<Predictor> = None;
    if let (Some(j), Some(g)) = (&args.judge, &cfg.neutrality_guide) {
        anyhow::ensure!(
            j.canonicalize().ok() != g.canonicalize().ok(),
            "--judge {} is the --neutrality-guide: the network that taught the generator cannot \
             judge its references; give another one",
            j.display()
        );
    }
    let judge = match &args.judge {
        Some(p) => Some(crate::model::weights::load(p, device)?),
        None => None,
    };
    let judge_name = args.judge.as_ref().map(|p| p.display().to_string());
    let judge = judge
        .as_ref()
        .zip(judge_name.as_deref())
        .map(|(j, name)| (&j.net, name));
    let start = match init {
        Some(p) => format!("fine-tuned from {}", p.display()),
        None => "trained from scratch".to_string(),
    };
    #[cfg(not(all(feature = "video", feature = "window")))]
    if args.grid_clip.is_some() {
        anyhow::bail!(crate::capture::CaptureError::NotBuilt("video"));
    }
    #[cfg(all(feature = "video", feature = "window"))]
    if let Some(clip) = &args.grid_clip {
        let path = args.weights.clone().unwrap_or_else(default_weights_path);
        let p = Predictor::load(&path, device, args.common.precision)?;
        let out = args.out.join("reference_grid.png");
        std::fs::create_dir_all(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?;
        let clip = if clip.as_os_str() == "demo" {
            crate::capture::demo_clip_path()
        } else {
            clip.clone()
        };
        let det = args.common.runtime().detector()?;
        let rows = write_clip_grid(&clip, &p, &det, 8, &out)?;
        println!(
            "reference grid of {rows} frames of {} written to {}",
            clip.display(),
            out.display()
        );
    }
    for set in &sets {
        let t0 = std::time::Instant::now();
        let report = if let (DatasetKind::Tfeid, Some(n)) = (set.kind, args.held_out) {
            let path = args.weights.clone().unwrap_or_else(default_weights_path);
            let mut model = crate::model::weights::load(&path, device)?;
            model.prepare_for_inference(args.common.precision.kind_on(device));
            let (idx, _, performers) = held_out_performers(set, n, args.holdout_seed);
            anyhow::ensure!(!idx.is_empty(), "tfeid: no held-out performers");
            let test_data = TrainData::from_sets(&[(set, idx.clone())]);
            let (c, predictions) = scored(&model.net, &test_data, set, &idx, device)?;
            let mut r = DatasetReport::new(
                set.kind.name(),
                format!(
                    "{n} performers held out by `dgcn train` (held-out seed {}: {}), weights {}",
                    args.holdout_seed,
                    performers
                        .iter()
                        .map(|p| format!("{p:02}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    path.display()
                ),
                c,
                set.hit_rate(),
            );
            r.predictions = predictions;
            let scales = model.sidecar.intensity_scales();
            r.fidelity = Some(
                fidelity(&model.net, judge, &test_data, device, scales)?
                    .with_sitting_scale(set, &idx),
            )
            .filter(|f| f.pairs > 0);
            r.own_reference = crate::learn::metrics::own_reference_recognition(
                &model.net,
                &test_data,
                device,
                model.sidecar.temperature,
            )?;
            std::fs::create_dir_all(&args.out)
                .with_context(|| format!("creating {}", args.out.display()))?;
            let grid = args.out.join("held_out_grid.png");
            crate::learn::train::write_grid(&model.net, &test_data, device, &grid)?;
            println!("held-out references written to {}", grid.display());
            r
        } else if lab_kinds.contains(&set.kind) {
            // The other lab dataset: added to every fold's training data (different people), or
            // the whole training data of a cross-dataset row.
            let other = lab_kinds.iter().copied().find(|k| *k != set.kind);
            let extras: Vec<PreparedSet> = match other {
                Some(k) if available(k, &args.data) => prepare_all(&[k], &args.data, &args.common)?,
                _ => Vec::new(),
            };
            let extra_refs: Vec<&PreparedSet> = extras.iter().chain(added.iter()).collect();
            let other_name = added_names(&extra_refs, args.add_per_class);
            if args.cross_dataset {
                anyhow::ensure!(
                    !extra_refs.is_empty(),
                    "--cross-dataset needs the other lab dataset (tfeid, ckplus48) in the data \
                     folder or --add-datasets"
                );
                let parts: Vec<(&PreparedSet, Vec<usize>)> = extra_refs
                    .iter()
                    .map(|e| (*e, (0..e.len()).collect()))
                    .collect();
                let train_data = TrainData::from_sets(&parts);
                let all: Vec<usize> = (0..set.len()).collect();
                let test_data = TrainData::from_sets(&[(set, all.clone())]);
                let mut trained = train(&train_data, None, &cfg, device, None, false, init)?;
                let (c, predictions) = scored(&trained.net, &test_data, set, &all, device)?;
                let mut r = DatasetReport::new(
                    set.kind.name(),
                    format!(
                        "cross-dataset: {start}, trained on all of {other_name} ({}+{} epochs, width {}), tested on all of {}",
                        cfg.gen_epochs, cfg.epochs, cfg.model.width, set.kind.name()
                    ),
                    c,
                    set.hit_rate(),
                );
                let scales = match &intensity_faces {
                    Some(v) => fit_intensity_on(&mut trained.net, &train_data, v, device)?,
                    None => fit_intensity(&mut trained.net, &train_data, device)?,
                }
                .scales;
                r.fidelity = Some(
                    fidelity(&trained.net, judge, &test_data, device, scales)?
                        .with_sitting_scale(set, &all),
                )
                .filter(|f| f.pairs > 0);
                r.predictions = predictions;
                if intensity_faces.is_some() {
                    r.protocol += "; intensity fitted on FER+ Valid";
                }
                r
            } else {
                let cv = crate::learn::crossval::CrossValidation {
                    folds: args.folds,
                    run: fold_range(args.folds, args.from_fold, args.only_folds)?,
                    init,
                    judge,
                    intensity_faces: intensity_faces.as_ref(),
                };
                let mut r = cross_validate(set, &extra_refs, &cfg, device, &cv)?;
                if cv.run != (0..args.folds) {
                    r.protocol += &format!(
                        " (only folds {}–{} of {} run)",
                        cv.run.start + 1,
                        cv.run.end,
                        args.folds
                    );
                }
                r.protocol += &format!(
                    "; each fold {start}, {}+{} epochs, width {}, with {other_name} added to training",
                    cfg.gen_epochs, cfg.epochs, cfg.model.width
                );
                if intensity_faces.is_some() {
                    r.protocol += "; each fold's intensity fitted on FER+ Valid";
                }
                r
            }
        } else {
            if predictor.is_none() {
                let path = args.weights.clone().unwrap_or_else(default_weights_path);
                let mut p = Predictor::load(&path, device, args.common.precision)?;
                if args.flip {
                    p.model.net.config.flip_average = true;
                }
                predictor = Some(p);
            }
            let p = predictor.as_ref().context("weights not loaded")?;
            let split = set.split_indices(args.split);
            anyhow::ensure!(
                !split.is_empty(),
                "{}: no {:?} split found",
                set.kind.name(),
                args.split
            );
            let data = TrainData::from_sets(&[(set, split.clone())]);
            // As the app sees them: the weights' logit adjustment and temperature applied.
            let logits = crate::learn::metrics::logits(&p.model.net, &data, device, 256);
            let labels = data.all_labels();
            let adjusted = p.model.sidecar.adjusted_logits(&logits);
            let c = crate::learn::metrics::confusion_of(&adjusted, &labels)?;
            let predictions = scored_faces(&adjusted, set, &split, None)?;
            let split_name = match args.split {
                Split::Test => "official test split",
                Split::Valid => "official validation split",
                Split::Train => "training split",
            };
            let mut r = DatasetReport::new(
                set.kind.name(),
                format!("{split_name}, weights {}", p.model.path.display()),
                c,
                set.hit_rate(),
            );
            if set.kind == DatasetKind::Ferplus {
                r.protocol += " (majority vote)";
            }
            if p.model.net.config.flip_average {
                r.protocol += "; logits averaged with the mirror image's (test-time flip)";
            }
            r.calibration = Some(crate::learn::metrics::Calibration {
                temperature: p.model.sidecar.temperature,
                ece_before: crate::learn::metrics::expected_calibration_error(
                    &logits, &labels, 1.0, 15,
                )?,
                ece_after: crate::learn::metrics::expected_calibration_error(
                    &adjusted, &labels, 1.0, 15,
                )?,
            });
            r.predictions = predictions;
            if args.auto_neutral_check {
                let faces = split.iter().map(|&i| {
                    let face = crate::face::AlignedFace::from_prepared(set.face(i));
                    (set.samples[i].label, face)
                });
                let rule = crate::pipeline::AutoNeutralRule::with_frames(usize::from(
                    crate::pipeline::DEFAULT_OWN_FRAMES,
                ));
                let check = crate::learn::auto_neutral::check(p, faces, rule, 17)?;
                tracing::info!(
                    neutral_taken = check.neutral_taken(),
                    expressive_taken = check.expressive_taken(),
                    "own neutral face taken by itself"
                );
                r.auto_neutral = Some(check);
            }
            if p.model.sidecar.class_bias.is_some() {
                let raw = crate::learn::metrics::confusion_of(&logits, &labels)?;
                r.protocol += &format!(
                    "; with the weights' logit adjustment (without it: accuracy {:.2} %, mean recall {:.2} %)",
                    raw.accuracy() * 100.0,
                    raw.mean_recall() * 100.0
                );
            }
            r
        };
        let report = DatasetReport {
            seconds: t0.elapsed().as_secs_f64(),
            ..report
        };
        println!(
            "{}: accuracy {:.2} % on {} faces (mean recall {:.2} %)",
            report.dataset,
            report.accuracy * 100.0,
            report.samples,
            report.confusion.mean_recall() * 100.0
        );
        reports.push(report);
        write_reports(&args.out, &reports)?;
    }
    println!("report written to {}", args.out.join("report.md").display());
    Ok(())
}

/// `rows` evenly spaced frames of a clip with a face: query | generated reference | difference
/// (3× size, the window's heat map), one row per frame. Returns the rows written.
#[cfg(all(feature = "video", feature = "window"))]
fn write_clip_grid(
    clip: &Path,
    predictor: &Predictor,
    det: &crate::face::Detector,
    rows: usize,
    out: &Path,
) -> Result<usize> {
    use crate::capture::threaded::Producer;
    use crate::capture::video::VideoProducer;
    use crate::capture::VideoOptions;
    let mut producer = VideoProducer::open(clip, VideoOptions::default())
        .with_context(|| format!("opening {}", clip.display()))?;
    let mut frames = Vec::new();
    while let Some(f) = producer.produce()? {
        frames.push(f.rgb);
    }
    let step = frames.len().div_ceil(rows.max(1)).max(1);
    let mut faces = Vec::new();
    for img in frames.iter().step_by(step) {
        let largest = det.detect(img)?.into_iter().next();
        if let Some(face) = largest.and_then(|f| crate::face::aligned_from_image(img, &f.landmarks))
        {
            faces.push(face);
        }
    }
    anyhow::ensure!(
        !faces.is_empty(),
        "{}: no face found in its frames",
        clip.display()
    );
    let preds = predictor.predict(&faces, None)?;
    let tiles: Vec<Vec<image::RgbImage>> = faces
        .iter()
        .zip(&preds)
        .map(|(face, pred)| {
            vec![
                image::DynamicImage::ImageLuma8(face.to_luma8()).to_rgb8(),
                image::DynamicImage::ImageLuma8(pred.generated.to_luma8()).to_rgb8(),
                crate::ui::views::heat_map_rgb(face, &pred.generated),
            ]
        })
        .collect();
    crate::learn::train::save_tile_grid(&tiles, crate::face::FACE_SIZE as u32 * 3, out)?;
    Ok(faces.len())
}

/// The confusion of `net` on `data` (the faces `idx` of `set`) and each face's prediction.
fn scored(
    net: &crate::model::GcNet,
    data: &TrainData,
    set: &PreparedSet,
    idx: &[usize],
    device: Device,
) -> Result<(crate::learn::metrics::Confusion, Vec<ScoredFace>)> {
    let logits = crate::learn::metrics::logits(net, data, device, 256);
    let c = crate::learn::metrics::confusion_of(&logits, &data.all_labels())?;
    Ok((c, scored_faces(&logits, set, idx, None)?))
}

fn write_reports(out: &Path, reports: &[DatasetReport]) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for r in reports.iter().filter(|r| !r.predictions.is_empty()) {
        let path = out.join(format!("predictions_{}.csv", r.dataset));
        write_predictions_csv(&path, &r.predictions)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(reports)?,
    )
    .with_context(|| format!("writing {}", out.join("report.json").display()))?;
    let mut md = String::from("# dgcn evaluation\n\n");
    for r in reports {
        md += &r.markdown();
    }
    std::fs::write(out.join("report.md"), md)
        .with_context(|| format!("writing {}", out.join("report.md").display()))?;
    Ok(())
}

/// The folds `--from-fold F` (1-based) and `--only-folds N` (the first N) ask for, 0-based.
fn fold_range(
    folds: usize,
    from_fold: Option<u64>,
    only_folds: Option<usize>,
) -> Result<std::ops::Range<usize>> {
    let start = from_fold.map_or(0, |f| f.saturating_sub(1) as usize);
    let end = only_folds.map_or(folds, |n| n.min(folds));
    anyhow::ensure!(
        start < end,
        "no fold to run: --from-fold {} with {end} of {folds} folds",
        start + 1
    );
    Ok(start..end)
}

#[cfg(test)]
mod tests {
    use super::{check_same_held_out, fold_range, weights_provenance};

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

    #[test]
    fn fold_range_follows_from_fold_and_only_folds() {
        assert_eq!(fold_range(10, None, None).ok(), Some(0..10));
        assert_eq!(fold_range(10, None, Some(3)).ok(), Some(0..3));
        assert_eq!(fold_range(10, Some(4), None).ok(), Some(3..10));
        assert_eq!(fold_range(10, Some(4), Some(6)).ok(), Some(3..6));
        assert_eq!(fold_range(10, None, Some(20)).ok(), Some(0..10));
        let err = fold_range(10, Some(11), None).expect_err("past the last fold");
        assert!(err.to_string().contains("no fold to run"), "{err}");
        assert!(fold_range(10, Some(4), Some(3)).is_err());
    }
}
