//! `dgcn eval --session`: re-scores a recorded session with (other) weights and prints what
//! changed and, where the session has labels, the accuracy.
use std::path::Path;

use anyhow::Result;

use super::cli::EvalArgs;
use crate::infer::{default_weights_path, Predictor};
use crate::session::rescore::rescore;

pub fn run_rescore(dir: &Path, args: &EvalArgs) -> Result<()> {
    let session = crate::session::open_session(dir)?;
    for w in &session.warnings {
        tracing::warn!("{w}");
    }
    let device = args.common.runtime().device()?;
    let weights = args.weights.clone().unwrap_or_else(default_weights_path);
    let predictor = Predictor::load(&weights, device, args.common.precision)?;
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
