//! `dgcn eval` on datasets: the given weights on test splits, cross-validation (from scratch or
//! fine-tuned per fold from a pretraining), cross-dataset rows, reference grids; re-scoring a
//! session is `app::rescore`.
use std::path::Path;

use anyhow::{Context, Result};
use tch::Device;

use super::{available, held_out_performers, prepare_all, train_config};
use crate::app::cli::EvalArgs;
use crate::data::{DatasetKind, PreparedSet, Split};
use crate::infer::{default_weights_path, Predictor};
use crate::learn::crossval::cross_validate;
use crate::learn::intensity::{fit_intensity, fit_intensity_on};
use crate::learn::metrics::{
    fidelity, scored_faces, write_predictions_csv, DatasetReport, RobustnessRow, ScoredFace,
};
use crate::learn::pool::TrainData;
use crate::learn::robustness::Degradation;
use crate::learn::train::train;

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

pub fn run_eval(args: &EvalArgs) -> Result<()> {
    if let Some(session) = &args.session {
        return crate::app::rescore::run_rescore(session, args);
    }
    if let Some(folder) = &args.folder {
        return crate::app::folder_eval::run_folder_eval(folder, args);
    }
    let degradations = degradations(args)?;
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
            // In the number format `--precision` gives the predictors of the other sets.
            let model = Predictor::load(&path, device, args.common.precision)?.model;
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
            crate::learn::grid::write_grid(&model.net, &test_data, device, &grid)?;
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
                if let Some(on) = args.weights_denoise {
                    p.model.net.set_denoise(on);
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
            if p.model.net.config.denoise {
                r.protocol += "; noisy faces smoothed before the network";
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
            r.robustness = robustness(p, &data, &labels, &adjusted, &degradations, device)?;
            if args.auto_neutral_check {
                let faces = split.iter().map(|&i| {
                    let face = crate::face::AlignedFace::from_prepared(set.face(i));
                    (set.samples[i].label, face)
                });
                let rule = crate::pipeline::AutoNeutralRule::default();
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
    crate::learn::grid::save_tile_grid(&tiles, crate::face::FACE_SIZE as u32 * 3, out)?;
    Ok(faces.len())
}

/// `--degrade`'s specs (`camera`: the standard set), read before any work starts.
fn degradations(args: &EvalArgs) -> Result<Vec<Degradation>> {
    let mut out = Vec::new();
    for spec in &args.degrade {
        if spec.trim() == "camera" {
            out.extend(crate::learn::robustness::camera_set());
        } else {
            out.push(spec.parse().with_context(|| format!("--degrade {spec}"))?);
        }
    }
    anyhow::ensure!(
        out.is_empty()
            || args
                .datasets
                .iter()
                .any(|d| !matches!(d, DatasetKind::Tfeid | DatasetKind::Ckplus48)),
        "--degrade scores a test split (fer2013, ferplus) with --weights; tfeid and ckplus48 are \
         cross-validated"
    );
    Ok(out)
}

/// The predictor's accuracy on `data`'s faces degraded each way, beside the clean faces'
/// predictions (`clean`: their adjusted logits).
fn robustness(
    p: &Predictor,
    data: &TrainData,
    labels: &tch::Tensor,
    clean: &tch::Tensor,
    degradations: &[Degradation],
    device: Device,
) -> Result<Vec<RobustnessRow>> {
    let clean_pred = clean.argmax(-1, false);
    let mut rows = Vec::new();
    for (k, d) in degradations.iter().enumerate() {
        let degraded = TrainData {
            faces: d.apply_to_faces(&data.faces, 1000 + k as u64)?,
            labels: data.labels.clone(),
            targets: data.targets.clone(),
            neutral_of: data.neutral_of.clone(),
            origin: data.origin.clone(),
        };
        let logits = crate::learn::metrics::logits(&p.model.net, &degraded, device, 256);
        let adjusted = p.model.sidecar.adjusted_logits(&logits);
        let c = crate::learn::metrics::confusion_of(&adjusted, labels)?;
        let unchanged = adjusted
            .argmax(-1, false)
            .eq_tensor(&clean_pred)
            .to_kind(tch::Kind::Float)
            .mean(tch::Kind::Float)
            .double_value(&[]);
        tracing::info!(degradation = %d, accuracy = c.accuracy(), "degraded faces scored");
        rows.push(RobustnessRow {
            degradation: d.to_string(),
            accuracy: c.accuracy(),
            mean_recall: c.mean_recall(),
            unchanged,
        });
    }
    Ok(rows)
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
    use super::fold_range;

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
