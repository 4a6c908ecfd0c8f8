//! `dgcn eval --folder DIR`: the network on a folder of labelled photos from any dataset, as a
//! user measures it on faces dgcn has never seen. Each image's label is the nearest folder above
//! it (inside DIR) named after an expression (`happy`, `anger`, `sadness`, … as
//! [`Expression::parse`] reads them); images elsewhere are passed over. Faces are found,
//! aligned and scored as `dgcn infer` does (the largest face of each photo).
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::cli::EvalArgs;
use super::infer::{expand_folders, read_faces};
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

/// One scored photo: its path, its folder's label, and the probabilities (`None`: no face).
struct Scored {
    path: PathBuf,
    truth: Expression,
    probs: Option<[f32; NUM_CLASSES]>,
}

pub fn run_folder_eval(dir: &Path, args: &EvalArgs) -> Result<()> {
    anyhow::ensure!(dir.is_dir(), "folder {}: not a folder", dir.display());
    let device = args.common.runtime().device()?;
    let weights = args.weights.clone().unwrap_or_else(default_weights_path);
    let predictor = Predictor::load(&weights, device, args.common.precision)?;
    let det = args.common.runtime().detector()?;
    let mut scored = Vec::new();
    let (mut unlabelled, mut unreadable) = (0usize, 0usize);
    for input in expand_folders(std::slice::from_ref(&dir.to_path_buf())) {
        let (path, _) = input.map_err(anyhow::Error::msg)?;
        let Some(truth) = label_of(&path, dir) else {
            unlabelled += 1;
            continue;
        };
        let faces = match read_faces(&path, Some(&det)) {
            Ok((_, faces)) => faces,
            Err(e) => {
                tracing::warn!("{e:#}; skipped");
                unreadable += 1;
                continue;
            }
        };
        let probs = match faces.into_iter().next() {
            Some((_, face)) => predictor
                .predict(std::slice::from_ref(&face), None)?
                .first()
                .map(|p| p.probs),
            None => None,
        };
        scored.push(Scored { path, truth, probs });
        if scored.len() % 500 == 0 {
            tracing::info!(scored = scored.len(), "scoring the folder's photos");
        }
    }
    anyhow::ensure!(
        !scored.is_empty(),
        "folder {}: no image in a folder named after an expression (neutral, happy, surprise, sad, \
         angry, disgust, fear, contempt, or the datasets' names: anger, sadness, happiness, …)",
        dir.display()
    );
    let mut confusion = Confusion::default();
    for s in &scored {
        if let Some(p) = &s.probs {
            confusion.add(s.truth.index(), Expression::most_likely(p).index());
        }
    }
    let no_face = scored.iter().filter(|s| s.probs.is_none()).count();
    let report = report_markdown(
        dir, &weights, &scored, &confusion, no_face, unlabelled, unreadable,
    );
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
    no_face: usize,
    unlabelled: usize,
    unreadable: usize,
) -> String {
    let recall = confusion.recall();
    // The seven basic expressions, as 7-class peers report (contempt is not one of them).
    let basic: Vec<f64> = recall[..NUM_CLASSES - 1]
        .iter()
        .flatten()
        .copied()
        .collect();
    let mut s = format!("# {} with {}\n\n", dir.display(), weights.display());
    s += &format!(
        "{} labelled photos; a face found in {} (no face: {no_face}); passed over: {unlabelled} \
         outside an expression's folder, {unreadable} unreadable.\n\n",
        scored.len(),
        scored.len() - no_face
    );
    s +=
        &format!(
        "Accuracy **{:.2} %** of the faces found ({:.2} % of the labelled photos, a photo without \
         a face counted wrong); mean recall {:.2} % over the {} basic expressions present ({:.2} % \
         over all classes present).\n\n",
        confusion.accuracy() * 100.0,
        (0..NUM_CLASSES).map(|i| confusion.matrix[i][i]).sum::<u64>() as f64 * 100.0
            / scored.len() as f64,
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
    let mut header = vec!["path".to_string(), "label".into(), "predicted".into()];
    header.extend(Expression::ALL.iter().map(|e| e.name().to_string()));
    w.write_record(&header)?;
    for s in scored {
        let mut row = vec![s.path.display().to_string(), s.truth.name().to_string()];
        match &s.probs {
            Some(p) => {
                row.push(Expression::most_likely(p).name().to_string());
                row.extend(p.iter().map(|v| format!("{v:.6}")));
            }
            None => {
                row.push("no face".into());
                row.extend(std::iter::repeat_n(String::new(), NUM_CLASSES));
            }
        }
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
