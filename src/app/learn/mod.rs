//! `dgcn train`, `dgcn eval` (datasets), `dgcn calibrate` and `dgcn data pack`: datasets prepared
//! with the face detector (or read from a pack), split into training and validation, and handed
//! to `learn`. What the three share lives here; [`train`] runs `train` and `calibrate`, [`eval`]
//! runs `eval`.
use std::path::Path;

use anyhow::{Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::cli::{CommonArgs, DataArgs, ModelTrainArgs};
use crate::data::{self, DatasetKind, PreparedSet, Split};
use crate::learn::train::TrainConfig;
use crate::model::{ClassifierInput, ModelConfig};

mod eval;
mod train;

pub use eval::run_eval;
pub use train::{run_calibrate, run_train};

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
        denoise: m.denoise,
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
        (0.0..=1.0).contains(&m.camera_effects),
        "--camera-effects {}: expected a probability from 0 to 1",
        m.camera_effects
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
        camera_effects: m.camera_effects,
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
pub(super) fn available(kind: DatasetKind, args: &DataArgs) -> bool {
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
pub(super) fn held_out_performers(
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

pub(super) type Parts<'a> = Vec<(&'a PreparedSet, Vec<usize>)>;

/// Training and validation samples of each set: TFEID's held-out performers and FER+ Valid
/// validate, the rest (training splits) trains.
/// Also returns the held-out TFEID performers (None without TFEID).
pub(super) fn train_val_parts(
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
pub(super) fn validation_description(val_parts: &Parts<'_>, held: Option<&[u32]>) -> String {
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

/// Path, SHA-256 and training command of weights a run started from (`--init`,
/// `--generator-from`): the path alone does not say which weights, since a run may overwrite
/// the very file it started from.
pub(super) fn weights_provenance(path: Option<&Path>) -> Option<serde_json::Value> {
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
