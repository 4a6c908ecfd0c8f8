//! Sessions as test sets: `dgcn eval --session` runs (other) weights over a recorded session's
//! faces (with the reference each was compared with: the person's own neutral face where one was
//! used, else the generator's) and compares with the session's labels and recorded predictions.
//! Also the pieces headless recording needs: a label CSV and the session manifest.
use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};

use crate::capture::SourceSpec;
use crate::cli::EvalArgs;
use crate::commands::setup_device;
use crate::eval::Confusion;
use crate::infer::{default_weights_path, Predictor};
use crate::labels::{class_names, Expression};
use crate::live::LiveSetup;
use crate::session::format::{self, CameraSettings, Manifest};

/// `frame,label` (other columns ignored); labels that are not an expression mean none.
pub fn read_label_csv(path: &Path) -> Result<HashMap<u64, Option<Expression>>> {
    let mut reader = csv::Reader::from_path(path)
        .with_context(|| format!("reading labels {}", path.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("reading labels {}", path.display()))?
        .clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .with_context(|| format!("{}: no {name:?} column", path.display()))
    };
    let (fi, li) = (col("frame")?, col("label")?);
    let mut out = HashMap::new();
    for (i, rec) in reader.records().enumerate() {
        let rec = rec.with_context(|| format!("{}, line {}", path.display(), i + 2))?;
        let frame: u64 = rec
            .get(fi)
            .and_then(|f| f.trim().parse().ok())
            .with_context(|| format!("{}, line {}: bad frame number", path.display(), i + 2))?;
        out.insert(frame, rec.get(li).and_then(Expression::parse));
    }
    Ok(out)
}

pub fn new_manifest(
    setup: &LiveSetup,
    spec: &SourceSpec,
    source_description: &str,
    device: &str,
    labels_from: Option<String>,
) -> Result<Manifest> {
    let sha = crate::model::weights::sha256_file(&setup.weights)
        .with_context(|| format!("reading {}", setup.weights.display()))?;
    Ok(Manifest {
        format: format::FORMAT.into(),
        app_version: crate::commands::VERSION_LINE.into(),
        started_at: format::now_rfc3339(),
        source: format!("{spec} — {source_description}"),
        camera: match spec {
            SourceSpec::Camera(r) => Some(CameraSettings {
                index: r.index,
                width: r.width,
                height: r.height,
                frames_per_s: r.frames_per_s,
            }),
            _ => None,
        },
        weights_path: setup.weights.display().to_string(),
        weights_sha256: sha,
        classes: class_names(),
        device: device.into(),
        labels_from,
        ended_at: None,
        frames: None,
        rows: None,
        dropped: None,
        stopped_by: None,
    })
}

/// What re-scoring found.
pub struct Rescored {
    pub faces: usize,
    pub confusion: Confusion,
    /// Faces whose new prediction equals the recorded one.
    pub same_as_recorded: usize,
    /// Largest difference of any probability from the recorded one.
    pub max_prob_change: f32,
}

pub fn rescore(session: &crate::session::Session, predictor: &Predictor) -> Result<Rescored> {
    let mut out = Rescored {
        faces: 0,
        confusion: Confusion::default(),
        same_as_recorded: 0,
        max_prob_change: 0.0,
    };
    for row in &session.rows {
        let Some(face) = &row.face else { continue };
        let query = format::load_face_png(&session.dir.join(&face.query_png))
            .map_err(anyhow::Error::msg)?;
        let own = if face.own_reference {
            Some(
                format::load_face_png(&session.dir.join(&face.reference_png))
                    .map_err(anyhow::Error::msg)?,
            )
        } else {
            None
        };
        let pred = predictor
            .predict(std::slice::from_ref(&query), own.as_ref().map(|o| (0, o)))?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("the model returned no prediction"))?;
        out.faces += 1;
        if pred.label == face.predicted {
            out.same_as_recorded += 1;
        }
        for (a, b) in pred.probs.iter().zip(&face.probs) {
            out.max_prob_change = out.max_prob_change.max((a - b).abs());
        }
        if let Some(label) = row.label {
            out.confusion.add(label.index(), pred.label.index());
        }
    }
    Ok(out)
}

pub fn run_rescore(dir: &Path, args: &EvalArgs) -> Result<()> {
    let session = crate::session::open_session(dir)?;
    for w in &session.warnings {
        tracing::warn!("{w}");
    }
    let device = setup_device(&args.common)?;
    let weights = args.weights.clone().unwrap_or_else(default_weights_path);
    let predictor = Predictor::load(&weights, device)?;
    let r = rescore(&session, &predictor)?;
    let labelled = r.confusion.total();
    println!("# Re-scoring {}\n", dir.display());
    println!(
        "Weights {} on {} recorded faces ({} labelled). Recorded with {} (sha256 {}).\n",
        weights.display(),
        r.faces,
        labelled,
        session.manifest.weights_path,
        session.manifest.weights_sha256
    );
    println!(
        "Same prediction as recorded: {} of {} faces; largest probability change {:.4}.\n",
        r.same_as_recorded, r.faces, r.max_prob_change
    );
    if labelled > 0 {
        println!(
            "Accuracy against the session's labels: **{:.2} %** ({} faces)\n",
            r.confusion.accuracy() * 100.0,
            labelled
        );
        println!("{}", r.confusion.markdown_table());
    } else {
        println!("The session has no labelled faces: no accuracy to report.");
    }
    Ok(())
}
