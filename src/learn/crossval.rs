//! Subject-independent k-fold cross-validation (TFEID, CK+48): each fold trains a fresh network,
//! from scratch or fine-tuned from given weights, and is tested on people it never saw.
use tch::Device;

use super::intensity::{fit_intensity, fit_intensity_on};
use super::metrics::{
    confusion_of, fidelity, logits, own_reference_recognition, scored_faces, Confusion,
    DatasetReport, Fidelity, OwnReferenceRecognition,
};
use super::pool::TrainData;
use super::train::{train, TrainConfig};
use crate::data::{folds::subject_folds, PreparedSet};
use crate::model::GcNet;

/// How the folds of [`cross_validate`] run.
pub struct CrossValidation<'a> {
    /// k, the number of folds the subjects are split into.
    pub folds: usize,
    /// The folds to run (0-based, a part of `0..folds`). Each fold's network is trained with the
    /// config's seed from the same start, so a fold scores the same whichever others run.
    pub run: std::ops::Range<usize>,
    /// Weights every fold starts from (fine-tuning), or `None` (from scratch).
    pub init: Option<&'a std::path::Path>,
    /// The network that judges whether references look neutral (each fold's own when `None`).
    pub judge: Option<(&'a GcNet, &'a str)>,
    /// Faces no fold network trained on (FER+ Valid) to fit each fold's intensity on, as the
    /// shipped weights' is fitted; `None`: each fold's own training faces.
    pub intensity_faces: Option<&'a TrainData>,
}

/// Subject-independent k-fold cross-validation on `primary`: each fold trains a fresh network
/// on the other folds (plus all of `extras`, other datasets with different people) and is tested
/// on its own subjects. Returns the pooled confusion, per-fold accuracy and reference fidelity.
pub fn cross_validate(
    primary: &PreparedSet,
    extras: &[&PreparedSet],
    cfg: &TrainConfig,
    device: Device,
    cv: &CrossValidation,
) -> anyhow::Result<DatasetReport> {
    let k = cv.folds;
    let (init, judge) = (cv.init, cv.judge);
    let t0 = std::time::Instant::now();
    let subjects: Vec<Option<u32>> = primary.samples.iter().map(|s| s.subject).collect();
    let fold_of = subject_folds(&subjects, k, cfg.seed);
    let mut total = Confusion::default();
    let mut fold_acc = Vec::new();
    let mut fid = Fidelity::default();
    let mut own: Option<OwnReferenceRecognition> = None;
    let mut predictions = Vec::new();
    for fold in cv.run.start..cv.run.end.min(k) {
        let test: Vec<usize> = (0..primary.len()).filter(|&i| fold_of[i] == fold).collect();
        let train_idx: Vec<usize> = (0..primary.len()).filter(|&i| fold_of[i] != fold).collect();
        let mut parts = vec![(primary, train_idx)];
        for e in extras {
            parts.push((*e, (0..e.len()).collect()));
        }
        let data = TrainData::from_sets(&parts);
        let test_data = TrainData::from_sets(&[(primary, test.clone())]);
        tracing::info!(
            fold,
            train = data.len(),
            test = test_data.len(),
            "cross-validation fold"
        );
        let mut trained = train(&data, None, cfg, device, None, false, init)?;
        let scored = logits(&trained.net, &test_data, device, 256);
        let c = confusion_of(&scored, &test_data.all_labels())?;
        predictions.extend(scored_faces(&scored, primary, &test, Some(fold))?);
        tracing::info!(fold, accuracy = c.accuracy(), "fold done");
        fold_acc.push(c.accuracy());
        total.merge(&c);
        // A fold network has no fitted temperature: the raw softmax is averaged.
        if let Some(o) = own_reference_recognition(&trained.net, &test_data, device, 1.0)? {
            own.get_or_insert_with(Default::default).merge(&o);
        }
        let scales = match cv.intensity_faces {
            Some(v) => fit_intensity_on(&mut trained.net, &data, v, device)?,
            None => fit_intensity(&mut trained.net, &data, device)?,
        }
        .scales;
        fid.merge(
            &fidelity(&trained.net, judge, &test_data, device, scales)?
                .with_sitting_scale(primary, &test),
        );
    }
    let mut report = DatasetReport::new(
        primary.kind.name(),
        format!("{k}-fold subject-independent cross-validation"),
        total,
        primary.hit_rate(),
    );
    report.fold_accuracy = fold_acc;
    report.fidelity = (fid.pairs > 0).then_some(fid);
    report.own_reference = own;
    report.seconds = t0.elapsed().as_secs_f64();
    report.predictions = predictions;
    Ok(report)
}
