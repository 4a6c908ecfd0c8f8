//! Distillation targets: what other trained networks (the teachers) say about each training
//! face, read from the predictions `dgcn eval --split train` writes, and combined into one
//! distribution per face. An ensemble of networks scores better than any of them (FER+ Valid: 13
//! of this project's networks 83.5 % against the best one's 82.65 %); its soft targets carry that
//! into one network that still fits the live budget.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::labels::{Expression, NUM_CLASSES};

/// One distribution per face path: the teachers' probabilities combined.
#[derive(Debug, Clone, Default)]
pub struct TeacherTargets {
    by_path: HashMap<String, [f32; NUM_CLASSES]>,
    /// How many prediction files were combined.
    pub teachers: usize,
}

/// Probabilities of one predictions CSV (eval's `predictions_<dataset>.csv`, or a file this
/// module wrote): the `path` column and one column per expression, found by their names.
fn read_predictions(file: &Path) -> Result<HashMap<String, [f32; NUM_CLASSES]>> {
    let mut r = csv::Reader::from_path(file)
        .with_context(|| format!("reading teacher predictions {}", file.display()))?;
    let header = r
        .headers()
        .with_context(|| format!("{}: no header", file.display()))?
        .clone();
    let column = |name: &str| {
        header.iter().position(|h| h == name).with_context(|| {
            format!(
                "{}: no `{name}` column (expected the predictions `dgcn eval` writes)",
                file.display()
            )
        })
    };
    let path_col = column("path")?;
    let cols = Expression::ALL
        .iter()
        .map(|e| column(e.name()))
        .collect::<Result<Vec<_>>>()?;
    let mut out = HashMap::new();
    for (line, row) in r.records().enumerate() {
        let row = row.with_context(|| format!("{}: row {}", file.display(), line + 2))?;
        let mut p = [0.0f32; NUM_CLASSES];
        for (v, &c) in p.iter_mut().zip(&cols) {
            let text = row.get(c).unwrap_or("");
            *v = text
                .parse::<f32>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .with_context(|| {
                    format!(
                        "{}: row {}: `{text}` is not a probability",
                        file.display(),
                        line + 2
                    )
                })?;
        }
        let path = row.get(path_col).unwrap_or("").to_string();
        out.insert(path, p);
    }
    anyhow::ensure!(!out.is_empty(), "{}: no predictions", file.display());
    Ok(out)
}

impl TeacherTargets {
    /// Reads each teacher's predictions and combines them per face by the geometric mean of the
    /// probabilities (the mean of the log-probabilities, renormalised: an ensemble of calibrated
    /// networks), over the teachers that scored that face.
    pub fn read(files: &[PathBuf]) -> Result<TeacherTargets> {
        anyhow::ensure!(!files.is_empty(), "no teacher predictions given");
        let mut sums: HashMap<String, ([f64; NUM_CLASSES], usize)> = HashMap::new();
        for f in files {
            for (path, p) in read_predictions(f)? {
                let (sum, n) = sums.entry(path).or_insert(([0.0; NUM_CLASSES], 0));
                for (s, &v) in sum.iter_mut().zip(&p) {
                    *s += (v as f64).max(1e-6).ln();
                }
                *n += 1;
            }
        }
        let by_path = sums
            .into_iter()
            .map(|(path, (sum, n))| {
                let logs = sum.map(|s| s / n as f64);
                let top = logs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e = logs.map(|l| (l - top).exp());
                let z: f64 = e.iter().sum();
                (path, e.map(|v| (v / z) as f32))
            })
            .collect();
        Ok(TeacherTargets {
            by_path,
            teachers: files.len(),
        })
    }

    /// The combined distribution of the face at `path`, if a teacher scored it.
    pub fn get(&self, path: &str) -> Option<&[f32; NUM_CLASSES]> {
        self.by_path.get(path)
    }

    pub fn len(&self) -> usize {
        self.by_path.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }

    /// Writes the combined targets as a predictions file (path, then one column per
    /// expression), which `read` takes back as one teacher: the run's record of what it learned
    /// from, and a small file to carry where the teachers' own files do not fit.
    pub fn write_csv(&self, file: &Path) -> Result<()> {
        let mut w =
            csv::Writer::from_path(file).with_context(|| format!("writing {}", file.display()))?;
        let mut header = vec!["path"];
        header.extend(Expression::ALL.iter().map(|e| e.name()));
        w.write_record(&header)?;
        let mut paths: Vec<&String> = self.by_path.keys().collect();
        paths.sort();
        for path in paths {
            let mut row = vec![path.clone()];
            row.extend(self.by_path[path].iter().map(|v| format!("{v:.5}")));
            w.write_record(&row)?;
        }
        w.flush()
            .with_context(|| format!("writing {}", file.display()))?;
        Ok(())
    }
}

/// `share` of the teachers' distribution blended into a face's own target.
pub fn blend(
    own: &[f32; NUM_CLASSES],
    teacher: &[f32; NUM_CLASSES],
    share: f32,
) -> [f32; NUM_CLASSES] {
    std::array::from_fn(|c| share * teacher[c] + (1.0 - share) * own[c])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    const HEADER: &str =
        "path,subject,fold,label,predicted,neutral,happy,surprise,sad,angry,disgust,fear,contempt";

    #[test]
    fn teachers_combine_by_geometric_mean_and_round_trip() {
        let dir = std::env::temp_dir().join(format!("dgcn-teacher-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let a = write(
            &dir,
            "a.csv",
            &format!("{HEADER}\nx.png,,,happy,happy,0.1,0.8,0.1,0,0,0,0,0\ny.png,,,sad,sad,0,0,0,1,0,0,0,0\n"),
        );
        let b = write(
            &dir,
            "b.csv",
            &format!("{HEADER}\nx.png,,,happy,neutral,0.8,0.1,0.1,0,0,0,0,0\n"),
        );
        let t = TeacherTargets::read(&[a, b]).expect("reads");
        assert_eq!((t.teachers, t.len()), (2, 2));
        let x = t.get("x.png").expect("x");
        // Geometric means: neutral and happy √0.08 each, surprise 0.1, the rest ≈ 0; renormalised.
        assert!(
            (x[0] - x[1]).abs() < 1e-5 && x[0] > x[2] && x[2] > 0.1,
            "{x:?}"
        );
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        // A face only one teacher scored keeps that teacher's call.
        assert!(t.get("y.png").expect("y")[3] > 0.999);
        assert!(t.get("z.png").is_none());
        let back = dir.join("combined.csv");
        t.write_csv(&back).expect("writes");
        let again = TeacherTargets::read(&[back]).expect("reads back");
        for (p, v) in &t.by_path {
            let w = again.get(p).expect("same faces");
            assert!(v.iter().zip(w).all(|(a, b)| (a - b).abs() < 1e-4));
        }
        let blended = blend(&[0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], x, 0.5);
        assert!((blended[1] - (0.5 + 0.5 * x[1])).abs() < 1e-6);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_file_that_is_not_predictions_is_a_clear_error() {
        let dir = std::env::temp_dir().join(format!("dgcn-teacher-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let no_col = write(&dir, "labels.csv", "path,label\nx.png,happy\n");
        let e = format!(
            "{:#}",
            TeacherTargets::read(&[no_col]).expect_err("no columns")
        );
        assert!(e.contains("no `neutral` column"), "{e}");
        let bad = write(
            &dir,
            "bad.csv",
            &format!("{HEADER}\nx.png,,,happy,happy,0.1,high,0.1,0,0,0,0,0\n"),
        );
        let e = format!("{:#}", TeacherTargets::read(&[bad]).expect_err("bad value"));
        assert!(e.contains("row 2: `high` is not a probability"), "{e}");
        let missing = dir.join("missing.csv");
        let e = format!(
            "{:#}",
            TeacherTargets::read(&[missing]).expect_err("missing")
        );
        assert!(e.contains("reading teacher predictions"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
