//! `dgcn eval --session`: re-scores a recorded session with (other) weights and prints what
//! changed and, where the session has labels, the accuracy.
use std::path::Path;

use anyhow::Result;

use super::cli::EvalArgs;
use crate::device::Precision;
use crate::infer::{default_weights_path, Predictor};
use crate::session::rescore::rescore;

pub fn run_rescore(dir: &Path, args: &EvalArgs) -> Result<()> {
    let session = crate::session::open_session(dir)?;
    for w in &session.warnings {
        tracing::warn!("{w}");
    }
    let device = args.common.runtime().device()?;
    let weights = args.weights.clone().unwrap_or_else(default_weights_path);
    // `--precision auto` re-scores in the number format the session was recorded in.
    let precision = match (
        args.common.precision,
        session.manifest.number_format.as_deref(),
    ) {
        (Precision::Auto, Some("bf16")) => Precision::Bf16,
        (Precision::Auto, Some("f32")) => Precision::F32,
        (asked, _) => asked,
    };
    let predictor = Predictor::load(&weights, device, precision)?;
    let r = rescore(&session, &predictor)?;
    let labelled = r.confusion.total();
    println!("# Re-scoring {}\n", dir.display());
    println!(
        "Weights {} on {} recorded faces ({} labelled), in {}{}. Recorded with {} (sha256 {}).\n",
        weights.display(),
        r.faces,
        labelled,
        predictor.format.format_on(device),
        if precision == args.common.precision {
            ""
        } else {
            " (the session's number format)"
        },
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
