//! `dgcn eval --folder DIR`: the network on a folder of labelled photos from any dataset, as a
//! user measures it on faces dgcn has never seen. Each image's label is the nearest folder above
//! it (inside DIR) named after an expression (`happy`, `anger`, `sadness`, … as
//! [`Expression::parse`] reads them); images elsewhere are passed over. The largest face of each
//! photo is found, aligned and scored as `dgcn infer` does; a photo in which the detector finds
//! none is aligned as dataset preparation aligns its misses (the mean landmarks of the faces
//! found in the same folder), so that a folder of FER-style 48-pixel crops is scored whole.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::cli::EvalArgs;
use super::infer::expand_folders;
use crate::data::{aligned_without_a_face, mean_relative_landmarks, relative_landmarks};
use crate::face::aligned_from_image;
use crate::infer::{default_weights_path, Predictor};
use crate::labels::{Expression, NUM_CLASSES};
use crate::learn::Confusion;

/// The expression named by the nearest folder above `file` inside `root`.
fn label_of(file: &Path, root: &Path) -> Option<Expression> {
    let inside = file.strip_prefix(root).ok()?;
    inside
        .parent()?
        .components()
        .rev()
        .find_map(|c| Expression::parse(&c.as_os_str().to_string_lossy()))
}

/// One scored photo: its path, its folder's label, its probabilities, and whether the detector
/// found its face (else it was aligned as preparation aligns a dataset's misses).
struct Scored {
    path: PathBuf,
    truth: Expression,
    probs: [f32; NUM_CLASSES],
    detected: bool,
}

pub fn run_folder_eval(dir: &Path, args: &EvalArgs) -> Result<()> {
    anyhow::ensure!(dir.is_dir(), "folder {}: not a folder", dir.display());
    let device = args.common.runtime().device()?;
    let weights = args.weights.clone().unwrap_or_else(default_weights_path);
    let predictor = Predictor::load(&weights, device, args.common.precision)?;
    let det = args.common.runtime().detector()?;
    let score = |face: &crate::face::AlignedFace| -> Result<[f32; NUM_CLASSES]> {
        let p = predictor.predict(std::slice::from_ref(face), None)?;
        p.first()
            .map(|p| p.probs)
            .context("the model gave no prediction")
    };
    let mut scored = Vec::new();
    let mut missed: Vec<(PathBuf, Expression)> = Vec::new();
    let mut hits: Vec<[[f32; 2]; 5]> = Vec::new();
    let (mut unlabelled, mut unreadable) = (0usize, 0usize);
    for input in expand_folders(std::slice::from_ref(&dir.to_path_buf())) {
        let (path, _) = input.map_err(anyhow::Error::msg)?;
        let Some(truth) = label_of(&path, dir) else {
            unlabelled += 1;
            continue;
        };
        let img = match crate::capture::read_image(&path) {
            Ok(img) => img.to_rgb8(),
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "unreadable image skipped");
                unreadable += 1;
                continue;
            }
        };
        let found = det
            .detect(&img)
            .with_context(|| format!("image {}", path.display()))?
            .into_iter()
            .next()
            .and_then(|f| Some((aligned_from_image(&img, &f.landmarks)?, f.landmarks)));
        match found {
            Some((face, landmarks)) => {
                hits.push(relative_landmarks(&landmarks, img.dimensions()));
                let probs = score(&face)?;
                scored.push(Scored {
                    path,
                    truth,
                    probs,
                    detected: true,
                });
            }
            None => missed.push((path, truth)),
        }
        if scored.len() % 500 == 499 {
            tracing::info!(scored = scored.len() + 1, "scoring the folder's photos");
        }
    }
    // Photos without a detected face (FER's 48-pixel crops often have none) framed as dataset
    // preparation frames them: the mean landmarks of the faces found here, known only once every
    // photo has been searched; the misses are read again rather than held (a folder of large
    // photos would not fit in memory).
    let mean_rel = mean_relative_landmarks(&hits);
    for (path, truth) in missed {
        let img = crate::capture::read_image(&path)
            .map_err(|reason| anyhow::anyhow!("image {}: {reason}", path.display()))?
            .to_rgb8();
        let probs = score(&aligned_without_a_face(&img, mean_rel.as_ref()))?;
        scored.push(Scored {
            path,
            truth,
            probs,
            detected: false,
        });
    }
    anyhow::ensure!(
        !scored.is_empty(),
        "folder {}: no image in a folder named after an expression (neutral, happy, surprise, sad, \
         angry, disgust, fear, contempt, or the datasets' names: anger, sadness, happiness, …)",
        dir.display()
    );
    scored.sort_by(|a, b| a.path.cmp(&b.path));
    let mut confusion = Confusion::default();
    for s in &scored {
        confusion.add(s.truth.index(), Expression::most_likely(&s.probs).index());
    }
    let report = report_markdown(dir, &weights, &scored, &confusion, (unlabelled, unreadable));
    print!("{report}");
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    std::fs::write(args.out.join("report_folder.md"), &report)
        .with_context(|| format!("writing {}", args.out.join("report_folder.md").display()))?;
    write_predictions(&args.out.join("predictions_folder.csv"), &scored)?;
    Ok(())
}

fn report_markdown(
    dir: &Path,
    weights: &Path,
    scored: &[Scored],
    confusion: &Confusion,
    (unlabelled, unreadable): (usize, usize),
) -> String {
    let recall = confusion.recall();
    // The seven basic expressions, as 7-class peers report (contempt is not one of them).
    let basic: Vec<f64> = recall[..NUM_CLASSES - 1]
        .iter()
        .flatten()
        .copied()
        .collect();
    let found = scored.iter().filter(|s| s.detected).count();
    let mut s = format!("# {} with {}\n\n", dir.display(), weights.display());
    s += &format!(
        "{} labelled photos, the face found by the detector in {found} (the other {} aligned \
         with the mean landmarks of the faces found here, as dataset preparation aligns a \
         dataset's misses); passed over: {unlabelled} outside an expression's folder, \
         {unreadable} unreadable.\n\n",
        scored.len(),
        scored.len() - found
    );
    s += &format!(
        "Accuracy **{:.2} %**; mean recall {:.2} % over the {} basic expressions present ({:.2} % \
         over all classes present).\n\n",
        confusion.accuracy() * 100.0,
        basic.iter().sum::<f64>() * 100.0 / basic.len().max(1) as f64,
        basic.len(),
        confusion.mean_recall() * 100.0
    );
    s += &confusion.markdown_table();
    s
}

fn write_predictions(path: &Path, scored: &[Scored]) -> Result<()> {
    let mut w =
        csv::Writer::from_path(path).with_context(|| format!("writing {}", path.display()))?;
    let mut header = vec![
        "path".to_string(),
        "label".into(),
        "predicted".into(),
        "face_found".into(),
    ];
    header.extend(Expression::ALL.iter().map(|e| e.name().to_string()));
    w.write_record(&header)?;
    for s in scored {
        let mut row = vec![
            s.path.display().to_string(),
            s.truth.name().to_string(),
            Expression::most_likely(&s.probs).name().to_string(),
            s.detected.to_string(),
        ];
        row.extend(s.probs.iter().map(|v| format!("{v:.6}")));
        w.write_record(&row)?;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_photo_takes_the_label_of_the_nearest_expression_folder_inside_the_root() {
        let root = Path::new("/data/happy");
        // The root's own name is not a label: only folders inside it are.
        assert_eq!(label_of(Path::new("/data/happy/x.jpg"), root), None);
        assert_eq!(
            label_of(Path::new("/data/happy/Sadness/s01/x.jpg"), root),
            Some(Expression::Sad)
        );
        assert_eq!(
            label_of(Path::new("/data/happy/anger/fear/x.png"), root),
            Some(Expression::Fear)
        );
        assert_eq!(label_of(Path::new("/data/happy/misc/x.jpg"), root), None);
    }
}
