//! Labels by frame number for recording a video with known expressions (`--labels CSV`, as the
//! labelled clips have).
use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};

use crate::labels::Expression;

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
