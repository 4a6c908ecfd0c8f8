//! Dataset readers and preparation on the real archives in ../shared/data.
mod util;

use std::collections::{BTreeSet, HashMap, HashSet};

use dgcn::data::{self, folds::subject_folds, source::read_files, DatasetKind, Split};
use dgcn::labels::Expression;

#[test]
fn tfeid_prepares_with_performers_neutrals_and_detections() {
    let set = util::prepared(DatasetKind::Tfeid);
    assert_eq!(set.len(), 1232);
    let subjects: BTreeSet<u32> = set.samples.iter().filter_map(|s| s.subject).collect();
    assert_eq!(subjects.len(), 29);
    // Every performer has a neutral face (the generator's target) and nearly all expressions
    // (performer 23 has no fearful image in the distributed set).
    for s in &subjects {
        let labels: HashSet<Expression> = set
            .samples
            .iter()
            .filter(|x| x.subject == Some(*s))
            .map(|x| x.label)
            .collect();
        assert!(labels.contains(&Expression::Neutral), "performer {s}");
        assert!(labels.len() >= 6, "performer {s}: {labels:?}");
    }
    assert!(set.hit_rate() > 0.95, "hit rate {}", set.hit_rate());
    assert_eq!(set.faces.len(), set.len() * 64 * 64);
}

#[test]
fn ckplus48_has_seven_classes_and_subject_independent_folds() {
    let set = util::prepared(DatasetKind::Ckplus48);
    assert_eq!(set.len(), 981);
    let mut per_class: HashMap<Expression, usize> = HashMap::new();
    for s in &set.samples {
        *per_class.entry(s.label).or_default() += 1;
    }
    assert_eq!(per_class.len(), 7);
    assert!(!per_class.contains_key(&Expression::Neutral));
    assert_eq!(per_class.get(&Expression::Contempt), Some(&54));
    let subjects: Vec<Option<u32>> = set.samples.iter().map(|s| s.subject).collect();
    assert_eq!(subjects.iter().collect::<HashSet<_>>().len(), 118);
    let folds = subject_folds(&subjects, 10, 1);
    let mut fold_of_subject: HashMap<u32, usize> = HashMap::new();
    for (s, f) in subjects.iter().zip(&folds) {
        let s = s.expect("CK+ has subjects");
        assert_eq!(
            *fold_of_subject.entry(s).or_insert(*f),
            *f,
            "subject {s} in two folds"
        );
    }
    assert_eq!(folds.iter().collect::<HashSet<_>>().len(), 10);
    assert!(set.hit_rate() > 0.8, "hit rate {}", set.hit_rate());
}

#[test]
fn fer_layouts_give_official_splits_and_majority_labels() {
    let root = data::locate(DatasetKind::Ferplus, &util::data_dir());
    let files = read_files(&root, |p| p.ends_with("label.csv")).expect("reads");
    assert_eq!(files.len(), 3);
    let paths: Vec<String> = read_files(&root, |p| p.ends_with(".png"))
        .expect("reads")
        .into_keys()
        .collect();
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    let samples = DatasetKind::Ferplus.samples(&refs, &files);
    let test = samples.iter().filter(|s| s.split == Split::Test).count();
    let train = samples.iter().filter(|s| s.split == Split::Train).count();
    // Majority vote drops the images voted mostly unknown / not a face.
    assert!((3000..3573).contains(&test), "{test}");
    assert!((25000..28558).contains(&train), "{train}");
    let classes: HashSet<Expression> = samples.iter().map(|s| s.label).collect();
    assert_eq!(classes.len(), 8);

    let root = data::locate(DatasetKind::Fer2013, &util::data_dir());
    let paths: Vec<String> = read_files(&root, |p| DatasetKind::Fer2013.wants(p))
        .expect("reads")
        .into_keys()
        .collect();
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    let samples = DatasetKind::Fer2013.samples(&refs, &Default::default());
    assert_eq!(
        samples.iter().filter(|s| s.split == Split::Train).count(),
        28709
    );
    assert_eq!(
        samples.iter().filter(|s| s.split == Split::Test).count(),
        7178
    );
}

#[test]
fn wrong_layout_and_missing_folder_are_clear_errors() {
    let det = util::detector();
    let cache = util::temp_dir("wrong-layout-cache");
    // The CK+48 archive read as TFEID: nothing matches TFEID's layout.
    let ck = data::locate(DatasetKind::Ckplus48, &util::data_dir());
    let err = data::prepare(DatasetKind::Tfeid, &ck, &det, &cache).expect_err("wrong layout");
    let msg = err.to_string();
    assert!(
        msg.contains("ckplus48.tar.gz") && msg.contains("expected TFEID"),
        "{msg}"
    );
    let err =
        data::prepare(DatasetKind::Tfeid, &cache.join("nope"), &det, &cache).expect_err("missing");
    assert!(err.to_string().contains("nope"), "{err}");
    // A file that is not an archive.
    let bogus = cache.join("bogus.tar.gz");
    std::fs::write(&bogus, b"not gzip").expect("write");
    let err = data::prepare(DatasetKind::Tfeid, &bogus, &det, &cache).expect_err("not an archive");
    assert!(err.to_string().contains("bogus.tar.gz"), "{err}");
}
