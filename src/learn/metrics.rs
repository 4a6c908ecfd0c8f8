//! What `dgcn eval` measures on a trained network: the confusion matrix and its accuracy and
//! recall, calibration (temperature, ECE, logit adjustment), reference fidelity on held-out
//! identities (SSIM and L1 of G(x) against the person's true neutral face, beside the same
//! figures for x itself), the intensity scale, and the report a dataset's results go into.
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, TchError, Tensor};

use super::intensity::{embedding_distances, own_reference_distances, own_reference_pairs};
use super::pool::TrainData;
use crate::labels::{Expression, NUM_CLASSES};
use crate::model::losses::ssim;
use crate::model::{tensor_values, GcNet, IntensityScale, IntensityScales};

/// Rows: true class; columns: predicted class (model order).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Confusion {
    pub matrix: [[u64; NUM_CLASSES]; NUM_CLASSES],
}

impl Confusion {
    pub fn add(&mut self, truth: usize, predicted: usize) {
        if truth < NUM_CLASSES && predicted < NUM_CLASSES {
            self.matrix[truth][predicted] += 1;
        }
    }

    pub fn merge(&mut self, other: &Confusion) {
        for t in 0..NUM_CLASSES {
            for p in 0..NUM_CLASSES {
                self.matrix[t][p] += other.matrix[t][p];
            }
        }
    }

    pub fn total(&self) -> u64 {
        self.matrix.iter().flatten().sum()
    }

    pub fn accuracy(&self) -> f64 {
        let correct: u64 = (0..NUM_CLASSES).map(|i| self.matrix[i][i]).sum();
        correct as f64 / self.total().max(1) as f64
    }

    /// Rows: true class (those present), columns: predicted, and the recall of each row.
    pub fn markdown_table(&self) -> String {
        let mut s = String::from("| true \\ predicted |");
        for e in Expression::ALL {
            s += &format!(" {} |", e.name());
        }
        s += " recall |\n|---|";
        s += &"---|".repeat(NUM_CLASSES + 1);
        s += "\n";
        for (t, e) in Expression::ALL.iter().enumerate() {
            let row: u64 = self.matrix[t].iter().sum();
            if row == 0 {
                continue;
            }
            s += &format!("| {} |", e.name());
            for p in 0..NUM_CLASSES {
                s += &format!(" {} |", self.matrix[t][p]);
            }
            s += &format!(
                " {:.1} % |\n",
                self.matrix[t][t] as f64 / row as f64 * 100.0
            );
        }
        s
    }

    /// Mean of the recalls of the classes present in the ground truth.
    pub fn mean_recall(&self) -> f64 {
        let r: Vec<f64> = self.recall().into_iter().flatten().collect();
        r.iter().sum::<f64>() / r.len().max(1) as f64
    }

    /// Recall per class, `None` for classes absent from the ground truth.
    pub fn recall(&self) -> [Option<f64>; NUM_CLASSES] {
        std::array::from_fn(|t| {
            let n: u64 = self.matrix[t].iter().sum();
            (n > 0).then(|| self.matrix[t][t] as f64 / n as f64)
        })
    }
}

/// Class probabilities (N×8) for a batch of faces, in eval mode without gradients.
pub fn predict_probs(net: &GcNet, faces: &Tensor) -> Tensor {
    tch::no_grad(|| {
        let g = net.generator.forward_t(faces, false);
        net.eval_logits(faces, &g).0.softmax(-1, Kind::Float)
    })
}

/// Class logits (N×8, on the CPU) of the network on a pool, in batches.
pub fn logits(net: &GcNet, data: &TrainData, device: Device, batch: usize) -> Tensor {
    let idx: Vec<usize> = (0..data.len()).collect();
    let parts: Vec<Tensor> = idx
        .chunks(batch.max(1))
        .map(|chunk| {
            tch::no_grad(|| {
                let x = data.batch(chunk, device);
                let g = net.generator.forward_t(&x, false);
                net.eval_logits(&x, &g).0
            })
            .to_device(Device::Cpu)
        })
        .collect();
    if parts.is_empty() {
        return Tensor::zeros([0, NUM_CLASSES as i64], (Kind::Float, Device::Cpu));
    }
    Tensor::cat(&parts, 0)
}

/// Mean negative log-likelihood of `labels` under softmax(logits / t).
fn nll(logits: &Tensor, labels: &Tensor, t: f64) -> f64 {
    -(logits / t)
        .log_softmax(-1, Kind::Float)
        .gather(1, &labels.unsqueeze(1), false)
        .mean(Kind::Float)
        .double_value(&[])
}

/// Temperature scaling (Guo et al. 2017): the T in [0.25, 5] that minimises the negative
/// log-likelihood of the labels, found on a grid of 0.01 steps.
pub fn fit_temperature(logits: &Tensor, labels: &Tensor) -> f64 {
    if logits.size()[0] == 0 {
        return 1.0;
    }
    (25..=500)
        .map(|i| i as f64 / 100.0)
        .map(|t| (t, nll(logits, labels, t)))
        .filter(|(_, l)| l.is_finite())
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(t, _)| t)
        .unwrap_or(1.0)
}

/// Expected calibration error of softmax(logits / t): the mean over `bins` equal-width bins of
/// the top-class confidence of |accuracy − confidence|, weighted by the bin's share of samples.
pub fn expected_calibration_error(
    logits: &Tensor,
    labels: &Tensor,
    t: f64,
    bins: usize,
) -> Result<f64, TchError> {
    let n = logits.size()[0];
    if n == 0 {
        return Ok(0.0);
    }
    let (conf, pred) = (logits / t).softmax(-1, Kind::Float).max_dim(1, false);
    let conf: Vec<f32> = tensor_values(&conf)?;
    let right: Vec<bool> = tensor_values(&pred.eq_tensor(labels))?;
    let bins = bins.max(1);
    let mut sum_conf = vec![0.0f64; bins];
    let mut sum_right = vec![0.0f64; bins];
    let mut count = vec![0usize; bins];
    for (c, r) in conf.iter().zip(&right) {
        let b = ((*c as f64 * bins as f64).ceil() as usize).clamp(1, bins) - 1;
        sum_conf[b] += *c as f64;
        sum_right[b] += *r as u8 as f64;
        count[b] += 1;
    }
    Ok((0..bins)
        .map(|b| (sum_right[b] - sum_conf[b]).abs() / n as f64)
        .sum())
}

/// Confusion of argmax(logits) against the labels.
pub fn confusion_of(logits: &Tensor, labels: &Tensor) -> Result<Confusion, TchError> {
    let pred: Vec<i64> = tensor_values(&logits.argmax(1, false))?;
    let truth: Vec<i64> = tensor_values(labels)?;
    if pred.len() != truth.len() {
        return Err(TchError::Shape(format!(
            "{} predictions for {} labels",
            pred.len(),
            truth.len()
        )));
    }
    let mut c = Confusion::default();
    for (t, p) in truth.iter().zip(pred) {
        c.add(*t as usize, p as usize);
    }
    Ok(c)
}

/// What [`calibrate`] fitted and what it changed on the validation data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Calibrated {
    /// Logit adjustment strength: bias = −τ·log(prior).
    pub tau: f64,
    pub class_bias: Vec<f64>,
    pub temperature: f64,
    pub validation_accuracy_before: f64,
    pub validation_accuracy_after: f64,
    pub validation_mean_recall_before: f64,
    pub validation_mean_recall_after: f64,
    pub ece_15_bins_before: f64,
    pub ece_15_bins_after: f64,
}

/// Fits, on validation logits, a logit adjustment for the training prior (Menon et al. 2021:
/// add −τ·log prior, τ in 0–2 chosen to maximise the mean of accuracy and mean recall, so that
/// rare expressions are predicted without giving up much accuracy), then a temperature on the
/// adjusted logits.
/// With `adjust` false, τ stays 0 (temperature only).
pub fn calibrate(
    logits: &Tensor,
    labels: &Tensor,
    prior: &[f64; NUM_CLASSES],
    adjust: bool,
) -> Result<Calibrated, TchError> {
    let log_prior: Vec<f64> = prior.iter().map(|p| p.max(1e-4).ln()).collect();
    let bias_for = |tau: f64| -> Vec<f64> { log_prior.iter().map(|l| -tau * l).collect() };
    let adjusted = |bias: &[f64]| {
        let b: Vec<f32> = bias.iter().map(|&v| v as f32).collect();
        logits + Tensor::from_slice(&b)
    };
    let score = |c: &Confusion| 0.5 * (c.accuracy() + c.mean_recall());
    let before = confusion_of(logits, labels)?;
    let steps = if adjust { 40 } else { 0 };
    let mut tried = Vec::with_capacity(steps + 1);
    for i in 0..=steps {
        let tau = i as f64 * 0.05;
        tried.push((tau, confusion_of(&adjusted(&bias_for(tau)), labels)?));
    }
    let (tau, best) = tried
        .into_iter()
        .max_by(|a, b| score(&a.1).total_cmp(&score(&b.1)))
        .unwrap_or((0.0, before.clone()));
    let class_bias = bias_for(tau);
    let adj = adjusted(&class_bias);
    let temperature = fit_temperature(&adj, labels);
    Ok(Calibrated {
        tau,
        validation_accuracy_before: before.accuracy(),
        validation_accuracy_after: best.accuracy(),
        validation_mean_recall_before: before.mean_recall(),
        validation_mean_recall_after: best.mean_recall(),
        ece_15_bins_before: expected_calibration_error(logits, labels, 1.0, 15)?,
        ece_15_bins_after: expected_calibration_error(&adj, labels, temperature, 15)?,
        class_bias,
        temperature,
    })
}

/// Confusion of the network on a pool, in batches.
pub fn evaluate(
    net: &GcNet,
    data: &TrainData,
    device: Device,
    batch: usize,
) -> Result<Confusion, TchError> {
    confusion_of(&logits(net, data, device, batch), &data.all_labels())
}

/// Recognition with the person's own neutral face as the reference (another neutral photo of
/// the same person, as the window's N key gives it), on the faces that have one: labels from the
/// generated reference alone (the same faces, for comparison), from the mean of the probabilities
/// of both comparisons (what the app shows), and from the own face alone.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OwnReferenceRecognition {
    pub generated: Confusion,
    pub averaged: Confusion,
    pub own_alone: Confusion,
}

impl OwnReferenceRecognition {
    pub fn merge(&mut self, o: &OwnReferenceRecognition) {
        self.generated.merge(&o.generated);
        self.averaged.merge(&o.averaged);
        self.own_alone.merge(&o.own_alone);
    }

    pub fn markdown(&self) -> String {
        format!(
            "With the person's own neutral face as the reference (another neutral photo of the same person; {} faces that have one): accuracy {:.2} % with the probabilities of both comparisons averaged (as the app does), {:.2} % against the own face alone, {:.2} % against the generated reference alone (mean recall {:.2} / {:.2} / {:.2} %).\n",
            self.averaged.total(),
            self.averaged.accuracy() * 100.0,
            self.own_alone.accuracy() * 100.0,
            self.generated.accuracy() * 100.0,
            self.averaged.mean_recall() * 100.0,
            self.own_alone.mean_recall() * 100.0,
            self.generated.mean_recall() * 100.0,
        )
    }
}

/// [`OwnReferenceRecognition`] of `net` on the faces of `data` that have another neutral photo of
/// their person (the first one is the reference); probabilities at `temperature`. `None` when no
/// face has one.
pub fn own_reference_recognition(
    net: &GcNet,
    data: &TrainData,
    device: Device,
    temperature: f64,
) -> Result<Option<OwnReferenceRecognition>, TchError> {
    let pairs = own_reference_pairs(data);
    if pairs.is_empty() {
        return Ok(None);
    }
    let mut out = OwnReferenceRecognition::default();
    for chunk in pairs.chunks(256) {
        let (queries, references): (Vec<usize>, Vec<usize>) = chunk.iter().copied().unzip();
        let (generated, own) = tch::no_grad(|| {
            let x = data.batch(&queries, device);
            let own = data.batch(&references, device);
            let g = net.generator.forward_t(&x, false);
            (net.eval_logits(&x, &g).0, net.eval_logits(&x, &own).0)
        });
        let probs = |l: &Tensor| (l / temperature).softmax(-1, Kind::Float);
        let averaged = (probs(&generated) + probs(&own)) / 2.0;
        let labels = data.labels_of(&queries, Device::Cpu);
        out.generated
            .merge(&confusion_of(&generated.to_device(Device::Cpu), &labels)?);
        out.averaged
            .merge(&confusion_of(&averaged.to_device(Device::Cpu), &labels)?);
        out.own_alone
            .merge(&confusion_of(&own.to_device(Device::Cpu), &labels)?);
    }
    Ok(Some(out))
}

/// The judge named when `eval` is given none: the network judges its own references, which is
/// no independent measure (its generator may have learned what its classifier calls neutral).
pub const SELF_JUDGE: &str = "itself, not an independent judge: give eval --judge";

/// Reference fidelity on held-out identities (expressive faces that have a true neutral), what
/// the generator does to faces that are neutral already, and the intensity it gives both.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Fidelity {
    pub pairs: usize,
    pub ssim_reference: f64,
    pub ssim_query: f64,
    pub l1_reference: f64,
    pub l1_query: f64,
    /// Share of generated references that the judge (a network trained on real faces that did
    /// not guide the generator, or the network itself) calls neutral.
    pub reference_called_neutral: f64,
    /// Share of the expressive queries themselves that the same judge calls neutral: the
    /// baseline a generator has to beat (a lenient judge calls many real expressions neutral).
    #[serde(default)]
    pub query_called_neutral: f64,
    /// Which network judged: [`SELF_JUDGE`] or the judge's weights.
    #[serde(default)]
    pub judge: String,
    /// Neutral inputs n: how many, and SSIM(G(n), n) (the generator should leave them alone).
    #[serde(default)]
    pub neutral_inputs: usize,
    #[serde(default)]
    pub ssim_neutral_identity: f64,
    /// For scale: each neutral photo against the same person's other neutral photos, how many
    /// such photos, their mean SSIM and L1 (TFEID took a performer's neutral photos at one
    /// sitting: what a reference that were the person's neutral face would score, framing aside).
    #[serde(default)]
    pub neutral_pairs: usize,
    #[serde(default)]
    pub ssim_neutral_pairs: f64,
    #[serde(default)]
    pub l1_neutral_pairs: f64,
    /// For scale, on TFEID: pairs of photos of one performer showing the same expression at two
    /// sittings, and their mean SSIM. TFEID's neutral photos are a sitting of their own, so a
    /// perfect neutraliser (the person's neutral face as it looked at the query's sitting) would
    /// score about this against them: the most SSIM(G(x), neutral) can be expected to reach.
    #[serde(default)]
    pub sitting_pairs: usize,
    #[serde(default)]
    pub ssim_other_sitting: f64,
    /// Mean intensity on the neutral and on the expressive faces.
    #[serde(default)]
    pub intensity_neutral: f64,
    #[serde(default)]
    pub intensity_expressive: f64,
    /// With the person's own neutral face as the reference (another neutral photo of the same
    /// person) on its own scale: how many neutral and expressive faces had one, and their mean
    /// intensity. Absent without an own-reference scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own_reference: Option<OwnReferenceIntensity>,
}

/// Mean intensities with the person's own neutral face as the reference.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct OwnReferenceIntensity {
    pub neutral_faces: usize,
    pub expressive_faces: usize,
    pub neutral: f64,
    pub expressive: f64,
}

/// The mean of two means pooled by their counts `na` and `nb` (0 when both are 0).
fn pooled(na: usize, nb: usize) -> impl Fn(f64, f64) -> f64 {
    let total = (na + nb).max(1) as f64;
    move |a, b| (a * na as f64 + b * nb as f64) / total
}

impl OwnReferenceIntensity {
    fn merge(&mut self, o: &OwnReferenceIntensity) {
        let neutral = pooled(self.neutral_faces, o.neutral_faces);
        let expressive = pooled(self.expressive_faces, o.expressive_faces);
        self.neutral = neutral(self.neutral, o.neutral);
        self.expressive = expressive(self.expressive, o.expressive);
        self.neutral_faces += o.neutral_faces;
        self.expressive_faces += o.expressive_faces;
    }
}

impl Fidelity {
    /// With the sitting scale of the faces `idx` of `set` ([`same_expression_other_sitting`]).
    pub fn with_sitting_scale(mut self, set: &crate::data::PreparedSet, idx: &[usize]) -> Self {
        if let Some((pairs, ssim)) = same_expression_other_sitting(set, idx) {
            self.sitting_pairs = pairs;
            self.ssim_other_sitting = ssim;
        }
        self
    }

    pub fn merge(&mut self, o: &Fidelity) {
        let w = pooled(self.pairs, o.pairs);
        self.ssim_reference = w(self.ssim_reference, o.ssim_reference);
        self.ssim_query = w(self.ssim_query, o.ssim_query);
        self.l1_reference = w(self.l1_reference, o.l1_reference);
        self.l1_query = w(self.l1_query, o.l1_query);
        self.reference_called_neutral =
            w(self.reference_called_neutral, o.reference_called_neutral);
        self.query_called_neutral = w(self.query_called_neutral, o.query_called_neutral);
        self.intensity_expressive = w(self.intensity_expressive, o.intensity_expressive);
        let v = pooled(self.neutral_inputs, o.neutral_inputs);
        self.ssim_neutral_identity = v(self.ssim_neutral_identity, o.ssim_neutral_identity);
        self.intensity_neutral = v(self.intensity_neutral, o.intensity_neutral);
        let u = pooled(self.neutral_pairs, o.neutral_pairs);
        self.ssim_neutral_pairs = u(self.ssim_neutral_pairs, o.ssim_neutral_pairs);
        self.l1_neutral_pairs = u(self.l1_neutral_pairs, o.l1_neutral_pairs);
        self.neutral_pairs += o.neutral_pairs;
        let q = pooled(self.sitting_pairs, o.sitting_pairs);
        self.ssim_other_sitting = q(self.ssim_other_sitting, o.ssim_other_sitting);
        self.sitting_pairs += o.sitting_pairs;
        self.own_reference = match (self.own_reference, o.own_reference) {
            (Some(mut a), Some(b)) => {
                a.merge(&b);
                Some(a)
            }
            (a, b) => a.or(b),
        };
        self.pairs += o.pairs;
        self.neutral_inputs += o.neutral_inputs;
        if self.judge.is_empty() {
            self.judge = o.judge.clone();
        }
    }
}

/// For scale (see [`Fidelity::sitting_pairs`]): the number of pairs of TFEID photos `idx` of `set`
/// that show one performer with the same expression at two sittings, and their mean SSIM. `None`
/// for other datasets or without such pairs.
pub fn same_expression_other_sitting(
    set: &crate::data::PreparedSet,
    idx: &[usize],
) -> Option<(usize, f64)> {
    use crate::data::{datasets::tfeid_sitting, DatasetKind};
    if set.kind != DatasetKind::Tfeid {
        return None;
    }
    let mut pairs = Vec::new();
    for (k, &i) in idx.iter().enumerate() {
        for &j in &idx[k + 1..] {
            let (a, b) = (&set.samples[i], &set.samples[j]);
            if a.label != crate::labels::Expression::Neutral
                && a.label == b.label
                && a.subject.is_some()
                && a.subject == b.subject
                && tfeid_sitting(&a.path) != tfeid_sitting(&b.path)
            {
                pairs.push((i, j));
            }
        }
    }
    if pairs.is_empty() {
        return None;
    }
    let faces = |v: Vec<usize>| {
        let data = TrainData::from_sets(&[(set, v)]);
        data.batch(&(0..data.len()).collect::<Vec<_>>(), Device::Cpu)
    };
    let mut total = 0.0;
    for chunk in pairs.chunks(512) {
        let a = faces(chunk.iter().map(|p| p.0).collect());
        let b = faces(chunk.iter().map(|p| p.1).collect());
        total += ssim(&a, &b).sum(Kind::Double).double_value(&[]);
    }
    Some((pairs.len(), total / pairs.len() as f64))
}

/// Reference fidelity of `net`'s generator on `data` (the true neutral of each expressive face
/// is every neutral photo of the same person), judged by `judge` (or `net` itself), with
/// intensities on `scales` (the generated reference's; the own reference's where there is one).
pub fn fidelity(
    net: &GcNet,
    judge: Option<(&GcNet, &str)>,
    data: &TrainData,
    device: Device,
    scales: IntensityScales,
) -> Result<Fidelity, TchError> {
    let scale = scales.generated.unwrap_or(IntensityScale::FROM_MARGIN);
    let (judge_net, judge_name) = judge.unwrap_or((net, SELF_JUDGE));
    let idx: Vec<usize> = data
        .with_neutral()
        .into_iter()
        .filter(|&i| data.labels[i] != 0)
        .collect();
    let mut f = Fidelity {
        judge: judge_name.to_string(),
        ..Fidelity::default()
    };
    let (mut sr, mut sq, mut lr, mut lq, mut called) = (0.0, 0.0, 0.0, 0.0, 0i64);
    let mut query_called = 0i64;
    let neutral = Expression::Neutral.index() as i64;
    // How many faces of a batch the judge calls neutral.
    let called_neutral = |faces: &Tensor| {
        predict_probs(judge_net, faces)
            .argmax(1, false)
            .eq(neutral)
            .sum(Kind::Int64)
            .int64_value(&[])
    };
    for chunk in idx.chunks(128) {
        let q = data.batch(chunk, device);
        let g = tch::no_grad(|| net.generator.forward_t(&q, false));
        called += called_neutral(&g);
        query_called += called_neutral(&q);
        // Compare against every neutral image of the person, averaged.
        for (k, &i) in chunk.iter().enumerate() {
            let partners = &data.neutral_of[i];
            let n = data.batch(partners, device);
            let shape = [partners.len() as i64, 1, 64, 64];
            let xs = q.get(k as i64).unsqueeze(0).expand(shape, false);
            let gs = g.get(k as i64).unsqueeze(0).expand(shape, false);
            sr += ssim(&gs, &n).mean(Kind::Float).double_value(&[]);
            sq += ssim(&xs, &n).mean(Kind::Float).double_value(&[]);
            lr += (&gs - &n).abs().mean(Kind::Float).double_value(&[]);
            lq += (&xs - &n).abs().mean(Kind::Float).double_value(&[]);
        }
    }
    let n = idx.len().max(1) as f64;
    f.pairs = idx.len();
    f.ssim_reference = sr / n;
    f.ssim_query = sq / n;
    f.l1_reference = lr / n;
    f.l1_query = lq / n;
    f.reference_called_neutral = called as f64 / n;
    f.query_called_neutral = query_called as f64 / n;
    let mean_intensity = |idx: &[usize]| -> Result<f64, TchError> {
        let d = embedding_distances(net, data, idx, device)?;
        Ok(d.iter().map(|&d| scale.intensity(d as f64)).sum::<f64>() / d.len().max(1) as f64)
    };
    f.intensity_expressive = mean_intensity(&idx)?;
    let neutrals: Vec<usize> = (0..data.len()).filter(|&i| data.labels[i] == 0).collect();
    if !neutrals.is_empty() {
        let x = data.batch(&neutrals, device);
        let g = tch::no_grad(|| net.generator.forward_t(&x, false));
        f.neutral_inputs = neutrals.len();
        f.ssim_neutral_identity = ssim(&g, &x).mean(Kind::Float).double_value(&[]);
        f.intensity_neutral = mean_intensity(&neutrals)?;
        let (mut ss, mut sl, mut photos) = (0.0, 0.0, 0usize);
        for &i in &neutrals {
            let others: Vec<usize> = data.other_neutrals(i).collect();
            if others.is_empty() {
                continue;
            }
            let n = data.batch(&others, device);
            let shape = [others.len() as i64, 1, 64, 64];
            let xs = data.batch(&[i], device).expand(shape, false);
            ss += ssim(&xs, &n).mean(Kind::Float).double_value(&[]);
            sl += (&xs - &n).abs().mean(Kind::Float).double_value(&[]);
            photos += 1;
        }
        f.neutral_pairs = photos;
        f.ssim_neutral_pairs = ss / photos.max(1) as f64;
        f.l1_neutral_pairs = sl / photos.max(1) as f64;
    }
    if let Some(own) = scales.own {
        let (neutral, expressive) = own_reference_distances(net, data, device)?;
        let mean = |d: &[f32]| {
            d.iter().map(|&d| own.intensity(d as f64)).sum::<f64>() / d.len().max(1) as f64
        };
        f.own_reference = Some(OwnReferenceIntensity {
            neutral_faces: neutral.len(),
            expressive_faces: expressive.len(),
            neutral: mean(&neutral),
            expressive: mean(&expressive),
        })
        .filter(|o| o.neutral_faces + o.expressive_faces > 0);
    }
    Ok(f)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetReport {
    pub dataset: String,
    /// "10-fold subject-independent CV" or "official test split".
    pub protocol: String,
    pub samples: u64,
    pub accuracy: f64,
    pub per_class_recall: Vec<(String, Option<f64>)>,
    pub confusion: Confusion,
    pub fold_accuracy: Vec<f64>,
    pub fidelity: Option<Fidelity>,
    /// Recognition with each person's own neutral face as the reference, where the data has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own_reference: Option<OwnReferenceRecognition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    /// The live app's rule for taking the own neutral face by itself, on these faces
    /// (`eval --auto-neutral-check`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_neutral: Option<crate::learn::auto_neutral::AutoNeutralCheck>,
    /// The same faces degraded as cameras degrade them (`eval --degrade`), a row per degradation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub robustness: Vec<RobustnessRow>,
    pub detector_hit_rate: f64,
    pub seconds: f64,
    /// Every scored face (written by `eval` beside the report as `predictions_<dataset>.csv`).
    #[serde(skip)]
    pub predictions: Vec<ScoredFace>,
}

/// Recognition on faces degraded as a camera degrades them (`eval --degrade`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RobustnessRow {
    pub degradation: String,
    pub accuracy: f64,
    pub mean_recall: f64,
    /// The share of faces whose predicted expression is the one predicted on the clean face.
    pub unchanged: f64,
}

/// One scored face of an evaluation: which image, whose, in which fold, its label and the
/// probabilities of the network that scored it (the fold's network in cross-validation).
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredFace {
    pub path: String,
    pub subject: Option<u32>,
    pub fold: Option<usize>,
    pub label: Expression,
    pub probs: [f32; NUM_CLASSES],
}

impl ScoredFace {
    pub fn predicted(&self) -> Expression {
        Expression::most_likely(&self.probs)
    }
}

/// The faces `idx` of `set`, scored by `logits` (one row per face, in `idx` order).
pub fn scored_faces(
    logits: &Tensor,
    set: &crate::data::PreparedSet,
    idx: &[usize],
    fold: Option<usize>,
) -> Result<Vec<ScoredFace>, TchError> {
    let probs = logits.f_softmax(1, Kind::Float)?;
    let values = tensor_values::<f32>(&probs)?;
    Ok(idx
        .iter()
        .zip(values.chunks_exact(NUM_CLASSES))
        .map(|(&i, p)| {
            let s = &set.samples[i];
            let mut probs = [0.0; NUM_CLASSES];
            probs.copy_from_slice(p);
            ScoredFace {
                path: s.path.clone(),
                subject: s.subject,
                fold,
                label: s.label,
                probs,
            }
        })
        .collect())
}

/// Writes `predictions` as CSV: path, subject, fold, label, predicted, then one probability per
/// expression.
pub fn write_predictions_csv(
    path: &std::path::Path,
    predictions: &[ScoredFace],
) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_path(path)?;
    let mut header = vec!["path", "subject", "fold", "label", "predicted"];
    header.extend(Expression::ALL.iter().map(|e| e.name()));
    w.write_record(&header)?;
    for p in predictions {
        let mut row = vec![
            p.path.clone(),
            p.subject.map(|s| s.to_string()).unwrap_or_default(),
            p.fold.map(|f| (f + 1).to_string()).unwrap_or_default(),
            p.label.name().to_string(),
            p.predicted().name().to_string(),
        ];
        row.extend(p.probs.iter().map(|v| format!("{v:.6}")));
        w.write_record(&row)?;
    }
    w.flush()?;
    Ok(())
}

/// Expected calibration error (15 equal-width confidence bins) before and after the weights'
/// temperature.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Calibration {
    pub temperature: f64,
    pub ece_before: f64,
    pub ece_after: f64,
}

impl DatasetReport {
    pub fn new(
        dataset: &str,
        protocol: String,
        confusion: Confusion,
        hit_rate: f64,
    ) -> DatasetReport {
        DatasetReport {
            dataset: dataset.to_string(),
            protocol,
            samples: confusion.total(),
            accuracy: confusion.accuracy(),
            per_class_recall: Expression::ALL
                .iter()
                .zip(confusion.recall())
                .map(|(e, r)| (e.name().to_string(), r))
                .collect(),
            confusion,
            fold_accuracy: Vec::new(),
            fidelity: None,
            own_reference: None,
            calibration: None,
            auto_neutral: None,
            robustness: Vec::new(),
            detector_hit_rate: hit_rate,
            seconds: 0.0,
            predictions: Vec::new(),
        }
    }

    pub fn markdown(&self) -> String {
        let mut s = format!(
            "## {} — {}\n\nAccuracy **{:.2} %** on {} faces (BlazeFace hit rate {:.1} %, {:.0} s).\n\n",
            self.dataset,
            self.protocol,
            self.accuracy * 100.0,
            self.samples,
            self.detector_hit_rate * 100.0,
            self.seconds
        );
        if !self.fold_accuracy.is_empty() {
            let folds: Vec<String> = self
                .fold_accuracy
                .iter()
                .map(|a| format!("{:.1}", a * 100.0))
                .collect();
            s += &format!("Per-fold accuracy (%): {}\n\n", folds.join(", "));
        }
        s += &format!(
            "Mean recall over the classes present: **{:.2} %**.\n\n",
            self.confusion.mean_recall() * 100.0
        );
        s += &self.confusion.markdown_table();
        if let Some(o) = &self.own_reference {
            s += "\n";
            s += &o.markdown();
        }
        if let Some(c) = &self.calibration {
            s += &format!(
                "\nExpected calibration error (15 bins): {:.4} with the raw softmax, {:.4} with the weights' temperature T = {:.2}.\n",
                c.ece_before, c.ece_after, c.temperature
            );
        }
        if let Some(a) = &self.auto_neutral {
            s += &a.markdown();
        }
        if !self.robustness.is_empty() {
            s += "\n| faces degraded (at the 64×64 input) | accuracy | mean recall | predictions unchanged |\n|---|---|---|---|\n";
            s += &format!(
                "| none | {:.2} % | {:.2} % | — |\n",
                self.accuracy * 100.0,
                self.confusion.mean_recall() * 100.0
            );
            for r in &self.robustness {
                s += &format!(
                    "| {} | {:.2} % | {:.2} % | {:.1} % |\n",
                    r.degradation,
                    r.accuracy * 100.0,
                    r.mean_recall * 100.0,
                    r.unchanged * 100.0
                );
            }
            // One figure to compare networks by: the mean over the degraded sets.
            let n = self.robustness.len() as f64;
            let mean = |f: fn(&RobustnessRow) -> f64| {
                self.robustness.iter().map(f).sum::<f64>() / n * 100.0
            };
            s += &format!(
                "| mean of the {} degraded sets | {:.2} % | {:.2} % | {:.1} % |\n",
                self.robustness.len(),
                mean(|r| r.accuracy),
                mean(|r| r.mean_recall),
                mean(|r| r.unchanged)
            );
        }
        if let Some(f) = &self.fidelity {
            s += &format!(
                "\nReference fidelity on held-out identities ({} pairs): SSIM(G(x), neutral) {:.3} vs SSIM(x, neutral) {:.3} (difference {:+.3}); L1 {:.4} vs {:.4}; the judge ({}) calls {:.1} % of references neutral ({:.1} % of the expressive queries themselves). Neutral inputs ({}): SSIM(G(n), n) {:.3}. Mean intensity: {:.3} on neutral faces, {:.3} on expressive ones.\n",
                f.pairs, f.ssim_reference, f.ssim_query, f.ssim_reference - f.ssim_query, f.l1_reference, f.l1_query,
                f.judge, f.reference_called_neutral * 100.0, f.query_called_neutral * 100.0, f.neutral_inputs, f.ssim_neutral_identity,
                f.intensity_neutral, f.intensity_expressive
            );
            if f.neutral_pairs > 0 {
                s += &format!(
                    "For scale, each of {} neutral photos against the same person's other neutral photos: SSIM {:.3}, L1 {:.4}.\n",
                    f.neutral_pairs, f.ssim_neutral_pairs, f.l1_neutral_pairs
                );
            }
            if f.sitting_pairs > 0 {
                s += &format!(
                    "The same expression of the same performer at two sittings ({} pairs): SSIM {:.3}, about what a perfect neutraliser would score against neutral photos taken at a sitting of their own ({:+.3} over the query).\n",
                    f.sitting_pairs, f.ssim_other_sitting, f.ssim_other_sitting - f.ssim_query
                );
            }
            if let Some(o) = &f.own_reference {
                s += &format!(
                    "With the person's own neutral face as the reference (another neutral photo of the same person, own scale): mean intensity {:.3} on {} neutral faces, {:.3} on {} expressive ones.\n",
                    o.neutral, o.neutral_faces, o.expressive, o.expressive_faces
                );
            }
        }
        s + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictions_that_do_not_match_the_labels_are_an_error() {
        let logits = Tensor::from_slice(&[0.1f32, 0.9]).view([1, 2]);
        let labels = Tensor::from_slice(&[1i64, 0]);
        assert!(confusion_of(&logits, &labels).is_err());
        let c = confusion_of(&logits, &labels.narrow(0, 0, 1)).expect("one for one");
        assert_eq!(c.accuracy(), 1.0);
    }

    #[test]
    fn confusion_accuracy_and_recall() {
        let mut c = Confusion::default();
        c.add(0, 0);
        c.add(0, 1);
        c.add(1, 1);
        c.add(1, 1);
        assert_eq!(c.total(), 4);
        assert!((c.accuracy() - 0.75).abs() < 1e-12);
        let r = c.recall();
        assert_eq!(r[0], Some(0.5));
        assert_eq!(r[1], Some(1.0));
        assert_eq!(r[2], None);
    }

    #[test]
    fn temperature_and_calibration_error_on_hand_made_logits() {
        // 100 faces, the top class right on 60: confident logits (10 vs 0) are over-confident.
        let mut logits = Vec::new();
        let mut labels = Vec::new();
        for i in 0..100 {
            let mut row = [0.0f32; NUM_CLASSES];
            row[0] = 10.0;
            logits.extend_from_slice(&row);
            labels.push(if i < 60 { 0i64 } else { 1 });
        }
        let logits = Tensor::from_slice(&logits).view([100, NUM_CLASSES as i64]);
        let labels = Tensor::from_slice(&labels);
        let before = expected_calibration_error(&logits, &labels, 1.0, 15).expect("ECE");
        // Confidence ≈ 0.9996 against 60 % right.
        assert!((before - 0.3996).abs() < 1e-3, "{before}");
        let t = fit_temperature(&logits, &labels);
        let after = expected_calibration_error(&logits, &labels, t, 15).expect("ECE");
        assert!(t > 1.5, "{t}");
        assert!(after < 0.05, "ECE after scaling {after} (T = {t})");
    }

    #[test]
    fn logit_adjustment_recovers_a_rare_class() {
        // Class 1 is rare in training; its faces get logits 1 below class 0's (a prior-driven
        // bias), while class 0's faces are 3 above. Adjusting for the prior makes both right.
        let mut logits = Vec::new();
        let mut labels = Vec::new();
        for i in 0..100 {
            let mut row = [-5.0f32; NUM_CLASSES];
            if i < 80 {
                row[0] = 3.0;
                row[1] = 0.0;
                labels.push(0i64);
            } else {
                row[0] = 1.0;
                row[1] = 0.0;
                labels.push(1);
            }
            logits.extend_from_slice(&row);
        }
        let logits = Tensor::from_slice(&logits).view([100, NUM_CLASSES as i64]);
        let labels = Tensor::from_slice(&labels);
        let mut prior = [0.01; NUM_CLASSES];
        prior[0] = 0.8;
        prior[1] = 0.1;
        let plain = calibrate(&logits, &labels, &prior, false).expect("calibrates");
        assert_eq!(plain.tau, 0.0);
        assert!((plain.validation_accuracy_after - 0.8).abs() < 1e-9);
        let c = calibrate(&logits, &labels, &prior, true).expect("calibrates");
        assert!((c.validation_accuracy_before - 0.8).abs() < 1e-9);
        assert!((c.validation_accuracy_after - 1.0).abs() < 1e-9, "{c:?}");
        assert!(c.validation_mean_recall_after > c.validation_mean_recall_before);
        assert!(c.tau > 0.0);
        assert_eq!(c.class_bias.len(), NUM_CLASSES);
    }

    #[test]
    fn ssim_is_one_for_identical_images_and_lower_for_noise() {
        tch::manual_seed(0);
        let a = Tensor::rand([2, 1, 64, 64], (Kind::Float, Device::Cpu));
        let same = ssim(&a, &a);
        assert!((same.min().double_value(&[]) - 1.0).abs() < 1e-4);
        let b = Tensor::rand([2, 1, 64, 64], (Kind::Float, Device::Cpu));
        assert!(ssim(&a, &b).max().double_value(&[]) < 0.2);
    }
}
