//! Subject-independent k-fold cross-validation: every person's images go to exactly one fold.
use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::SeedableRng;

/// Fold index per sample. Subjects are shuffled with `seed`, then each goes to the fold that has
/// the fewest images so far, which keeps folds of similar size. Samples without a subject are
/// treated as their own subject.
pub fn subject_folds(subjects: &[Option<u32>], k: usize, seed: u64) -> Vec<usize> {
    let k = k.max(1);
    let key = |i: usize| subjects[i].map(|s| s as i64).unwrap_or(-(i as i64) - 1);
    let mut per_subject: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for i in 0..subjects.len() {
        per_subject.entry(key(i)).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = per_subject.into_values().collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    groups.shuffle(&mut rng);
    // Largest groups first so the greedy fill stays balanced.
    groups.sort_by_key(|g| std::cmp::Reverse(g.len()));
    let mut sizes = vec![0usize; k];
    let mut fold = vec![0usize; subjects.len()];
    for g in groups {
        let (f, _) = sizes
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| **s)
            .unwrap_or((0, &0));
        sizes[f] += g.len();
        for i in g {
            fold[i] = f;
        }
    }
    fold
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[test]
    fn no_subject_is_in_two_folds_and_folds_are_balanced() {
        // 40 subjects with 1..=7 images each.
        let subjects: Vec<Option<u32>> = (0..40u32)
            .flat_map(|s| std::iter::repeat_n(Some(s), 1 + (s as usize * 3) % 7))
            .collect();
        let folds = subject_folds(&subjects, 10, 7);
        let mut seen: HashMap<u32, HashSet<usize>> = HashMap::new();
        for (s, f) in subjects.iter().zip(&folds) {
            seen.entry(s.unwrap_or(u32::MAX)).or_default().insert(*f);
        }
        assert!(seen.values().all(|f| f.len() == 1));
        let mut sizes = vec![0; 10];
        for f in &folds {
            sizes[*f] += 1;
        }
        let (lo, hi) = (sizes.iter().min().copied(), sizes.iter().max().copied());
        assert!(lo.unwrap_or(0) > 0);
        assert!(hi.unwrap_or(0) - lo.unwrap_or(0) <= 7, "{sizes:?}");
        // Deterministic for a seed.
        assert_eq!(folds, subject_folds(&subjects, 10, 7));
    }
}
