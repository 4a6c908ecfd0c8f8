//! The four dataset layouts of ../shared/README.md, each mapped onto the 8-class label space.
//! A reader turns a list of relative paths (plus FER+'s label.csv files) into samples; it never
//! decodes images, so layouts and label maps are checked quickly and tested on their own.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::source::tail;
use crate::labels::{Expression, NUM_CLASSES};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    Tfeid,
    Ckplus48,
    Fer2013,
    Ferplus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Valid,
    Test,
}

/// One labelled image, before decoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleInfo {
    /// Path inside the archive or folder.
    pub path: String,
    pub label: Expression,
    /// Person id, where the dataset has one (TFEID performer, CK+ subject).
    pub subject: Option<u32>,
    pub split: Split,
    /// FER+'s crowd votes for the eight expressions (model order), where the dataset has them:
    /// the soft training target. Absent in caches written before they were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub votes: Option<[u8; NUM_CLASSES]>,
}

impl DatasetKind {
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Tfeid => "tfeid",
            DatasetKind::Ckplus48 => "ckplus48",
            DatasetKind::Fer2013 => "fer2013",
            DatasetKind::Ferplus => "ferplus",
        }
    }

    /// Archive name in a data folder such as ../shared/data.
    pub fn archive_name(self) -> &'static str {
        match self {
            DatasetKind::Tfeid => "tfeid.tar.gz",
            DatasetKind::Ckplus48 => "ckplus48.tar.gz",
            DatasetKind::Fer2013 => "fer2013.tar.gz",
            DatasetKind::Ferplus => "ferplus.tar.gz",
        }
    }

    /// What a user's copy must look like, for error messages.
    pub fn expected_layout(self) -> &'static str {
        match self {
            DatasetKind::Tfeid => "TFEID: faces_256x256/PPxyEnn.jpg (performer, type, view, expression letter a-g, serial)",
            DatasetKind::Ckplus48 => "CK+48: CK+48/<anger|contempt|disgust|fear|happy|sadness|surprise>/S###_###_########.png",
            DatasetKind::Fer2013 => "FER2013: fer2013/<train|test>/<angry|disgust|fear|happy|neutral|sad|surprise>/*.jpg",
            DatasetKind::Ferplus => "FER+: FER2013<Train|Valid|Test>/label.csv + fer#######.png",
        }
    }

    /// Whether a relative path is worth reading for this dataset.
    pub fn wants(self, path: &str) -> bool {
        let lower = path.to_ascii_lowercase();
        match self {
            DatasetKind::Tfeid => lower.ends_with(".jpg"),
            DatasetKind::Ckplus48 | DatasetKind::Ferplus => {
                lower.ends_with(".png") || lower.ends_with("label.csv")
            }
            DatasetKind::Fer2013 => lower.ends_with(".jpg") || lower.ends_with(".png"),
        }
    }

    /// Whether images are the small pre-cropped faces (48×48) rather than full photos.
    pub fn pre_cropped(self) -> bool {
        !matches!(self, DatasetKind::Tfeid)
    }

    /// Samples from the paths (and, for FER+, the label.csv contents keyed by their path).
    pub fn samples(self, paths: &[&str], csvs: &BTreeMap<String, Vec<u8>>) -> Vec<SampleInfo> {
        match self {
            DatasetKind::Tfeid => paths.iter().filter_map(|p| tfeid_sample(p)).collect(),
            DatasetKind::Ckplus48 => paths.iter().filter_map(|p| ckplus_sample(p)).collect(),
            DatasetKind::Fer2013 => paths.iter().filter_map(|p| fer2013_sample(p)).collect(),
            DatasetKind::Ferplus => ferplus_samples(paths, csvs),
        }
    }
}

/// The sitting of a TFEID photo: its performance type digit (1 theatric, 2 Ekman's FACS
/// criteria, 3 personal event; 0 for the neutral photos, a sitting of their own). Photos of one
/// sitting share pose, light and framing; across sittings those differ.
pub fn tfeid_sitting(path: &str) -> Option<u8> {
    let name = *tail(path, 1).first()?;
    let digit = *name.as_bytes().get(2)?;
    digit.is_ascii_digit().then(|| digit - b'0')
}

/// TFEID file name `PPxyEnn.jpg`: performer PP, performance type x, view y (1 = front),
/// expression letter E, serial nn. Nine neutral images in the distributed set have no letter
/// (`PP01nnn.jpg`, performance type 0 like every neutral one): they are read as neutral.
pub fn tfeid_sample(path: &str) -> Option<SampleInfo> {
    let name = *tail(path, 1).first()?;
    let stem = name
        .strip_suffix(".jpg")
        .or_else(|| name.strip_suffix(".JPG"))?;
    let b = stem.as_bytes();
    if !b.iter().take(4).all(u8::is_ascii_digit) || b.len() < 6 {
        return None;
    }
    if b[3] != b'1' {
        return None; // not the front view
    }
    let subject: u32 = stem[0..2].parse().ok()?;
    let label =
        if b.len() == 7 && b[4].is_ascii_alphabetic() && b[5..].iter().all(u8::is_ascii_digit) {
            Expression::from_tfeid_letter(b[4] as char)?
        } else if b.len() == 7 && b[2] == b'0' && b[4..].iter().all(u8::is_ascii_digit) {
            Expression::Neutral
        } else {
            return None;
        };
    Some(SampleInfo {
        path: path.to_string(),
        label,
        subject: Some(subject),
        split: Split::Train,
        votes: None,
    })
}

/// CK+48: `<class>/S###_###_########.png`; the subject is S###.
pub fn ckplus_sample(path: &str) -> Option<SampleInfo> {
    let parts = tail(path, 2);
    if parts.len() != 2 {
        return None;
    }
    let label = Expression::parse(parts[0])?;
    let name = parts[1];
    if !name.starts_with('S') || !name.to_ascii_lowercase().ends_with(".png") {
        return None;
    }
    let subject: u32 = name.get(1..4)?.parse().ok()?;
    Some(SampleInfo {
        path: path.to_string(),
        label,
        subject: Some(subject),
        split: Split::Train,
        votes: None,
    })
}

/// FER2013 Kaggle layout: `<train|test>/<class>/<file>`.
pub fn fer2013_sample(path: &str) -> Option<SampleInfo> {
    let parts = tail(path, 3);
    if parts.len() != 3 {
        return None;
    }
    let split = match parts[0].to_ascii_lowercase().as_str() {
        "train" => Split::Train,
        "test" => Split::Test,
        _ => return None,
    };
    Some(SampleInfo {
        path: path.to_string(),
        label: Expression::parse(parts[1])?,
        subject: None,
        split,
        votes: None,
    })
}

/// FER+ majority label from the ten votes (neutral … contempt, unknown, not-a-face). `None` when
/// no emotion got a vote or when "unknown" + "not a face" hold the majority.
pub fn ferplus_majority(votes: &[u32; 10]) -> Option<Expression> {
    let emotions = &votes[..NUM_CLASSES];
    let total: u32 = votes.iter().sum();
    let emotional: u32 = emotions.iter().sum();
    if emotional == 0 || votes[8] + votes[9] > total / 2 {
        return None;
    }
    let (best, _) = emotions
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))?;
    Expression::from_index(best)
}

fn ferplus_samples(paths: &[&str], csvs: &BTreeMap<String, Vec<u8>>) -> Vec<SampleInfo> {
    let mut out = Vec::new();
    for (csv_path, bytes) in csvs {
        let parts = tail(csv_path, 2);
        let folder = parts.first().copied().unwrap_or("");
        let split = match folder {
            "FER2013Train" => Split::Train,
            "FER2013Valid" => Split::Valid,
            "FER2013Test" => Split::Test,
            _ => continue,
        };
        let prefix = &csv_path[..csv_path.len() - "label.csv".len()];
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(bytes.as_slice());
        for record in reader.records().flatten() {
            if record.len() < 12 {
                continue;
            }
            let mut votes = [0u32; 10];
            let mut ok = true;
            for (i, v) in votes.iter_mut().enumerate() {
                match record[i + 2].trim().parse() {
                    Ok(n) => *v = n,
                    Err(_) => ok = false,
                }
            }
            let Some(label) = ok.then(|| ferplus_majority(&votes)).flatten() else {
                continue;
            };
            let path = format!("{prefix}{}", record[0].trim());
            let mut emotion_votes = [0u8; NUM_CLASSES];
            for (v, n) in emotion_votes.iter_mut().zip(&votes) {
                *v = (*n).min(u8::MAX as u32) as u8;
            }
            out.push(SampleInfo {
                path,
                label,
                subject: None,
                split,
                votes: Some(emotion_votes),
            });
        }
    }
    let present: std::collections::HashSet<&str> = paths.iter().copied().collect();
    out.retain(|s| present.contains(s.path.as_str()));
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tfeid_sitting_is_the_performance_type_digit() {
        assert_eq!(tfeid_sitting("tfeid/faces_256x256/0121g04.jpg"), Some(2));
        assert_eq!(tfeid_sitting("faces_256x256/0101a02.jpg"), Some(0));
        assert_eq!(tfeid_sitting("1201002.jpg"), Some(0));
        assert_eq!(tfeid_sitting("ab"), None);
    }

    #[test]
    fn tfeid_names_map_to_labels_and_performers() {
        let s = tfeid_sample("faces_256x256/0111b01.jpg").expect("happy");
        assert_eq!((s.label, s.subject), (Expression::Happy, Some(1)));
        assert_eq!(
            tfeid_sample("x/2731g15.jpg").map(|s| s.label),
            Some(Expression::Surprise)
        );
        assert_eq!(
            tfeid_sample("x/0101a02.jpg").map(|s| s.label),
            Some(Expression::Neutral)
        );
        // The letterless neutral files.
        let n = tfeid_sample("faces_256x256/1201002.jpg").expect("neutral");
        assert_eq!((n.label, n.subject), (Expression::Neutral, Some(12)));
        // Non-front view, bad letter, other files.
        assert!(tfeid_sample("x/0112b01.jpg").is_none());
        assert!(tfeid_sample("x/0111z01.jpg").is_none());
        assert!(tfeid_sample("Readme.txt").is_none());
    }

    #[test]
    fn ckplus_and_fer2013_paths_map_to_labels() {
        let c = ckplus_sample("CK+48/sadness/S011_002_00000020.png").expect("sad");
        assert_eq!((c.label, c.subject), (Expression::Sad, Some(11)));
        assert_eq!(
            ckplus_sample("CK+48/contempt/S138_008_00000007.png").map(|s| s.label),
            Some(Expression::Contempt)
        );
        assert!(ckplus_sample("CK+48/bored/S011_002_00000020.png").is_none());
        let f = fer2013_sample("fer2013/test/angry/PublicTest_1.jpg").expect("angry");
        assert_eq!((f.label, f.split), (Expression::Angry, Split::Test));
        assert!(fer2013_sample("fer2013/val/angry/x.jpg").is_none());
    }

    #[test]
    fn ferplus_majority_vote_ignores_unknown_and_rejects_non_faces() {
        // neutral 4, happy 0, surprise 0, sad 1, anger 3, disgust 2 …
        assert_eq!(
            ferplus_majority(&[4, 0, 0, 1, 3, 2, 0, 0, 0, 0]),
            Some(Expression::Neutral)
        );
        assert_eq!(
            ferplus_majority(&[0, 1, 1, 0, 0, 0, 0, 8, 0, 0]),
            Some(Expression::Contempt)
        );
        assert_eq!(ferplus_majority(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 9]), None);
        assert_eq!(ferplus_majority(&[0; 10]), None);
        // A tie goes to the class listed first.
        assert_eq!(
            ferplus_majority(&[0, 5, 5, 0, 0, 0, 0, 0, 0, 0]),
            Some(Expression::Happy)
        );
    }

    #[test]
    fn ferplus_reads_label_csv_per_split() {
        let mut csvs = BTreeMap::new();
        csvs.insert(
            "FER2013Valid/label.csv".to_string(),
            b"fer0000001.png,\"(0, 0, 48, 48)\",0,9,1,0,0,0,0,0,0,0\nfer0000002.png,\"(0, 0, 48, 48)\",0,0,0,0,0,0,0,0,0,10\n".to_vec(),
        );
        let paths = ["FER2013Valid/fer0000001.png", "FER2013Valid/fer0000002.png"];
        let s = DatasetKind::Ferplus.samples(&paths, &csvs);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].label, s[0].split), (Expression::Happy, Split::Valid));
        assert_eq!(s[0].votes, Some([0, 9, 1, 0, 0, 0, 0, 0]));
    }
}
