//! The face pool training and evaluation read: aligned faces with their labels, soft targets
//! (FER+ vote shares) and neutral partners, gathered from prepared datasets. Data only: the
//! augmentation that training applies to it lives in `train`.
use std::collections::HashMap;

use tch::{Device, Kind, Tensor};

use crate::data::{DatasetKind, PreparedSet};
use crate::face::FACE_SIZE;
use crate::labels::NUM_CLASSES;
use crate::learn::teacher::{blend, TeacherTargets};

/// Faces, labels and neutral partners from one or more prepared sets, as one training pool.
pub struct TrainData {
    /// N×1×64×64 u8 on the CPU.
    pub faces: Tensor,
    /// The majority (or only) label of each sample.
    pub labels: Vec<i64>,
    /// The training target of each sample: FER+'s vote shares where there are votes, else one-hot.
    pub targets: Vec<[f32; NUM_CLASSES]>,
    /// For each sample, the pool indices of neutral faces of the same person (may be empty). A
    /// neutral face of a dataset without identities is its own partner (identity for G).
    pub neutral_of: Vec<Vec<usize>>,
    /// The dataset each sample comes from.
    pub origin: Vec<DatasetKind>,
}

/// Vote shares as a distribution, or one-hot on `label` when there are no votes.
fn soft_target(label: usize, votes: Option<&[u8; NUM_CLASSES]>) -> [f32; NUM_CLASSES] {
    let mut t = [0.0f32; NUM_CLASSES];
    let total: u32 = votes
        .map(|v| v.iter().map(|&n| n as u32).sum())
        .unwrap_or(0);
    match votes {
        Some(v) if total > 0 => {
            for (t, &n) in t.iter_mut().zip(v) {
                *t = n as f32 / total as f32;
            }
        }
        _ => t[label.min(NUM_CLASSES - 1)] = 1.0,
    }
    t
}

impl TrainData {
    /// Pools the chosen samples of each set. Neutral partners are other neutral images of the same
    /// subject in the same dataset (a neutral face's partner is another neutral face, or itself).
    pub fn from_sets(parts: &[(&PreparedSet, Vec<usize>)]) -> TrainData {
        let mut buf = Vec::new();
        let mut labels = Vec::new();
        let mut targets = Vec::new();
        let mut keys = Vec::new();
        let mut origin = Vec::new();
        for (set, idx) in parts {
            for &i in idx {
                origin.push(set.kind);
                let s = &set.samples[i];
                buf.extend_from_slice(set.face(i));
                labels.push(s.label.index() as i64);
                targets.push(soft_target(s.label.index(), s.votes.as_ref()));
                keys.push(s.subject.map(|s| (set.kind, s)));
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
            .enumerate()
            .map(|(j, k)| match k {
                Some(k) => neutrals.get(k).cloned().unwrap_or_default(),
                None if labels[j] == 0 => vec![j],
                None => Vec::new(),
            })
            .collect();
        let n = labels.len() as i64;
        let side = FACE_SIZE as i64;
        TrainData {
            faces: Tensor::from_slice(&buf).view([n, 1, side, side]),
            labels,
            targets,
            neutral_of,
            origin,
        }
    }

    /// `from_sets`, with `share` of the teachers' distribution blended into the target of every
    /// face they scored (matched by the face's path; `dgcn eval --split train` writes them).
    /// Also returns how many faces were matched.
    pub fn from_sets_taught(
        parts: &[(&PreparedSet, Vec<usize>)],
        teacher: &TeacherTargets,
        share: f32,
    ) -> (TrainData, usize) {
        let mut data = TrainData::from_sets(parts);
        let paths = parts
            .iter()
            .flat_map(|(set, idx)| idx.iter().map(move |&i| set.samples[i].path.as_str()));
        let mut matched = 0;
        for (target, path) in data.targets.iter_mut().zip(paths) {
            if let Some(t) = teacher.get(path) {
                *target = blend(target, t, share);
                matched += 1;
            }
        }
        (data, matched)
    }

    /// One step-2 epoch's samples, unshuffled: every sample once, except those of a dataset named
    /// in `repeat` (small posed sets beside a large in-the-wild one), which the epoch draws
    /// N × that dataset's size times. `balanced`: those draws are spread evenly over the dataset's
    /// classes (a class of n faces, of K classes, repeats each face ≈ N·size/(K·n) times, at
    /// least once), so that a posed set's own class mix (TFEID: 6 % neutral; CK+48: none) does
    /// not become a prior for faces that look like it; otherwise each face repeats N times.
    pub fn epoch_order(&self, repeat: &[(DatasetKind, usize)], balanced: bool) -> Vec<usize> {
        let times_of = |k: DatasetKind| repeat.iter().rev().find(|(r, _)| *r == k).map(|&(_, n)| n);
        // Faces per (dataset, class), then how often each face of that (dataset, class) is drawn.
        let mut count: HashMap<(DatasetKind, i64), usize> = HashMap::new();
        for (&k, &label) in self.origin.iter().zip(&self.labels) {
            *count.entry((k, label)).or_default() += 1;
        }
        let times: HashMap<(DatasetKind, i64), usize> = count
            .iter()
            .map(|(&(k, label), &faces)| {
                let t = match times_of(k) {
                    None => 1,
                    Some(n) if !balanced => n,
                    Some(n) => {
                        let of_set = count.iter().filter(|((d, _), _)| *d == k);
                        let (classes, size) = of_set.fold((0, 0), |(c, s), (_, &f)| (c + 1, s + f));
                        let per_class = (n * size) as f64 / classes as f64;
                        ((per_class / faces as f64).round() as usize).max(1)
                    }
                };
                ((k, label), t)
            })
            .collect();
        (0..self.len())
            .flat_map(|i| std::iter::repeat_n(i, times[&(self.origin[i], self.labels[i])]))
            .collect()
    }

    /// The neutral photos of sample `i`'s person other than `i` itself: what the person's own
    /// neutral face is for `i` (the window's "Use my neutral face").
    pub fn other_neutrals(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.neutral_of[i].iter().copied().filter(move |&j| j != i)
    }

    /// Expressive faces with a neutral face of the same person: what teaches G to neutralise.
    pub fn expressive_pairs(&self) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| self.labels[i] != 0 && !self.neutral_of[i].is_empty())
            .collect()
    }

    /// Sum of the targets per class.
    fn class_mass(&self) -> [f64; NUM_CLASSES] {
        self.class_mass_of(0..self.len())
    }

    /// Sum of the targets per class over `samples` (a sample counted as often as it occurs).
    fn class_mass_of(&self, samples: impl IntoIterator<Item = usize>) -> [f64; NUM_CLASSES] {
        let mut mass = [0.0f64; NUM_CLASSES];
        for i in samples {
            for (m, &v) in mass.iter_mut().zip(&self.targets[i]) {
                *m += v as f64;
            }
        }
        mass
    }

    /// Share of each class in the targets (the training prior).
    pub fn class_prior(&self) -> [f64; NUM_CLASSES] {
        let mass = self.class_mass();
        let total: f64 = mass.iter().sum::<f64>().max(1e-12);
        mass.map(|m| m / total)
    }

    /// Loss weight per class ∝ (share of the targets)^−`balance`, averaging 1 over the samples;
    /// 1 for a class absent from the data.
    pub fn class_weights(&self, balance: f64) -> [f32; NUM_CLASSES] {
        self.class_weights_over(&(0..self.len()).collect::<Vec<_>>(), balance)
    }

    /// `class_weights` for the samples an epoch draws (`epoch_order`, repeats counted).
    pub fn class_weights_over(&self, order: &[usize], balance: f64) -> [f32; NUM_CLASSES] {
        let mass = self.class_mass_of(order.iter().copied());
        let n = order.len().max(1) as f64;
        let raw: [f64; NUM_CLASSES] = std::array::from_fn(|c| {
            if mass[c] > 0.0 {
                (mass[c] / n).powf(-balance)
            } else {
                1.0
            }
        });
        let mean: f64 = (0..NUM_CLASSES).map(|c| raw[c] * mass[c] / n).sum::<f64>();
        std::array::from_fn(|c| (raw[c] / mean.max(1e-12)) as f32)
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

    /// Every sample's label (N, on the CPU).
    pub fn all_labels(&self) -> Tensor {
        Tensor::from_slice(&self.labels)
    }

    /// Soft targets (N×8) for the given indices.
    pub fn targets_of(&self, idx: &[usize], device: Device) -> Tensor {
        let flat: Vec<f32> = idx.iter().flat_map(|&i| self.targets[i]).collect();
        Tensor::from_slice(&flat)
            .view([idx.len() as i64, NUM_CLASSES as i64])
            .to_device(device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn votes_become_shares_and_labels_one_hot() {
        let t = soft_target(1, Some(&[2, 6, 2, 0, 0, 0, 0, 0]));
        assert_eq!(t, [0.2, 0.6, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0]);
        let t = soft_target(3, None);
        assert_eq!(t, [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        // No votes at all: the label decides.
        assert_eq!(soft_target(2, Some(&[0; NUM_CLASSES]))[2], 1.0);
    }

    #[test]
    fn class_weights_favour_rare_classes_and_average_one() {
        // 90 neutral faces, 10 sad ones.
        let mut targets = vec![soft_target(0, None); 90];
        targets.extend(vec![soft_target(3, None); 10]);
        let data = TrainData {
            faces: Tensor::zeros([100, 1, 64, 64], (Kind::Uint8, Device::Cpu)),
            labels: targets
                .iter()
                .map(|t| if t[0] > 0.0 { 0 } else { 3 })
                .collect(),
            targets,
            neutral_of: vec![Vec::new(); 100],
            origin: vec![DatasetKind::Ferplus; 100],
        };
        let w = data.class_weights(1.0);
        // Fully inverse frequency: each class carries the same total weight.
        assert!((w[0] * 90.0 - w[3] * 10.0).abs() < 1e-3, "{w:?}");
        let mean = (w[0] * 90.0 + w[3] * 10.0) / 100.0;
        assert!((mean - 1.0).abs() < 1e-4);
        // Balance 0: all ones.
        assert!(data
            .class_weights(0.0)
            .iter()
            .all(|&v| (v - 1.0).abs() < 1e-6));
        // Half-way: sad weighs 3× neutral (√9).
        let h = data.class_weights(0.5);
        assert!((h[3] / h[0] - 3.0).abs() < 1e-3, "{h:?}");
    }

    #[test]
    fn repeated_datasets_appear_that_often_and_weigh_in_the_class_weights() {
        // 6 FER+ neutral faces, 2 TFEID sad faces.
        let mut targets = vec![soft_target(0, None); 6];
        targets.extend(vec![soft_target(3, None); 2]);
        let mut origin = vec![DatasetKind::Ferplus; 6];
        origin.extend([DatasetKind::Tfeid; 2]);
        let data = TrainData {
            faces: Tensor::zeros([8, 1, 64, 64], (Kind::Uint8, Device::Cpu)),
            labels: vec![0, 0, 0, 0, 0, 0, 3, 3],
            targets,
            neutral_of: vec![Vec::new(); 8],
            origin,
        };
        assert_eq!(data.epoch_order(&[], true), (0..8).collect::<Vec<_>>());
        let order = data.epoch_order(
            &[(DatasetKind::Tfeid, 3), (DatasetKind::Ckplus48, 5)],
            false,
        );
        assert_eq!(order.len(), 6 + 2 * 3);
        assert_eq!(order.iter().filter(|&&i| i == 7).count(), 3);
        assert_eq!(order.iter().filter(|&&i| i == 0).count(), 1);
        // Repeated, the 2 sad faces count as 6 of 12: balance 1 gives both classes weight 1.
        let w = data.class_weights_over(&order, 1.0);
        assert!(
            (w[0] - 1.0).abs() < 1e-4 && (w[3] - 1.0).abs() < 1e-4,
            "{w:?}"
        );
        // Once each, sad (2 of 8) weighs 3× neutral.
        let once = data.class_weights(1.0);
        assert!((once[3] / once[0] - 3.0).abs() < 1e-3, "{once:?}");
    }

    #[test]
    fn balanced_repeats_even_out_a_datasets_classes() {
        // TFEID-like: 2 neutral, 6 happy, 4 sad faces; FER+: 5 neutral faces.
        let labels: Vec<i64> = [vec![0; 2], vec![1; 6], vec![3; 4], vec![0; 5]].concat();
        let mut origin = vec![DatasetKind::Tfeid; 12];
        origin.extend([DatasetKind::Ferplus; 5]);
        let data = TrainData {
            faces: Tensor::zeros([17, 1, 64, 64], (Kind::Uint8, Device::Cpu)),
            targets: labels
                .iter()
                .map(|&l| soft_target(l as usize, None))
                .collect(),
            labels: labels.clone(),
            neutral_of: vec![Vec::new(); 17],
            origin,
        };
        // Twice TFEID's 12 faces = 24 draws, 8 per class: neutral ×4, happy ×1 (8/6 rounds to 1),
        // sad ×2; FER+ once each.
        let order = data.epoch_order(&[(DatasetKind::Tfeid, 2)], true);
        let drawn = |i: usize| order.iter().filter(|&&j| j == i).count();
        assert_eq!((drawn(0), drawn(2), drawn(8), drawn(12)), (4, 1, 2, 1));
        let per_class = |c: i64| order.iter().filter(|&&i| i < 12 && labels[i] == c).count();
        assert_eq!((per_class(0), per_class(1), per_class(3)), (8, 6, 8));
    }
}
