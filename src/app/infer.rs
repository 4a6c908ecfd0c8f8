//! `dgcn infer`: expressions in image files, one JSON line per image.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::cli::InferArgs;
use crate::face::{aligned_from_image, AlignedFace, Detector};
use crate::infer::{default_weights_path, probs_json, Predictor};

pub fn run_infer(args: &InferArgs) -> Result<()> {
    let device = args.common.runtime().device()?;
    let weights = args.weights.clone().unwrap_or_else(default_weights_path);
    let predictor = Predictor::load(&weights, device, args.common.precision)?;
    let det = if args.aligned {
        None
    } else {
        Some(args.common.runtime().detector()?)
    };
    if let Some(dir) = &args.save_reference {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Every image is tried; a single image's error is the command's error, several are listed
    // and summed up.
    let inputs = expand_folders(&args.images);
    let mut errors = Vec::new();
    for input in &inputs {
        let answer = match input {
            Ok((path, name)) => infer_one(
                path,
                name,
                &predictor,
                det.as_ref(),
                args.save_reference.as_deref(),
            ),
            Err(e) => Err(anyhow::anyhow!("{e}")),
        };
        match answer {
            Ok(line) => println!("{line}"),
            Err(e) => errors.push(e),
        }
    }
    if inputs.len() == 1 {
        if let Some(e) = errors.pop() {
            return Err(e);
        }
    }
    for e in &errors {
        eprintln!("error: {e:#}");
    }
    anyhow::ensure!(
        errors.is_empty(),
        "{} of {} images failed",
        errors.len(),
        inputs.len()
    );
    Ok(())
}

/// The images to read, each with the name its saved references take: a file as given (its
/// stem), a folder as every image in it and its subfolders in path order (its path inside the
/// folder, `/` written `_`, so that `happy/1.jpg` and `sad/1.jpg` do not overwrite each other);
/// a folder without images is an error of its own.
pub(super) fn expand_folders(paths: &[PathBuf]) -> Vec<Result<(PathBuf, String), String>> {
    let stem = |p: &Path| {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into())
    };
    let mut out = Vec::new();
    for path in paths {
        if !path.is_dir() {
            out.push(Ok((path.clone(), stem(path))));
            continue;
        }
        let mut found: Vec<PathBuf> = walkdir::WalkDir::new(path)
            .follow_links(true)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file() && crate::capture::files::is_image(e.path()))
            .map(|e| e.into_path())
            .collect();
        found.sort();
        if found.is_empty() {
            out.push(Err(format!(
                "folder {}: no images ({}) in it or its subfolders",
                path.display(),
                crate::capture::IMAGE_FORMATS
            )));
        }
        for file in found {
            let inside = file.strip_prefix(path).unwrap_or(&file).with_extension("");
            let name = inside
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("_");
            out.push(Ok((file, name)));
        }
    }
    out
}

fn infer_one(
    path: &Path,
    name: &str,
    predictor: &Predictor,
    det: Option<&Detector>,
    save: Option<&Path>,
) -> Result<String> {
    let img = crate::capture::read_image(path)
        .map_err(|reason| {
            use crate::capture::{file_kind, FileKind};
            let video = matches!(file_kind(path), FileKind::Video | FileKind::Unknown)
                .then_some("; a video's frames are read by `dgcn live --headless --source FILE`")
                .unwrap_or_default();
            anyhow::anyhow!(
                "image {}: cannot read it: {reason} (expected a {} image{video})",
                path.display(),
                crate::capture::IMAGE_FORMATS
            )
        })?
        .to_rgb8();
    let (boxes, faces): (Vec<serde_json::Value>, Vec<AlignedFace>) = match det {
        None => (
            vec![serde_json::json!({"box": [0, 0, img.width(), img.height()], "landmarks": []})],
            vec![AlignedFace::from_whole_image(&img)],
        ),
        Some(det) => det
            .detect(&img)
            .with_context(|| format!("image {}", path.display()))?
            .into_iter()
            .filter_map(|f| {
                let aligned = aligned_from_image(&img, &f.landmarks)?;
                let r = |v: f32| (v as f64 * 10.0).round() / 10.0;
                Some((
                    serde_json::json!({
                        "box": f.bbox.map(r),
                        "landmarks": f.landmarks.map(|p| p.map(r)),
                    }),
                    aligned,
                ))
            })
            .unzip(),
    };
    let preds = predictor.predict(&faces, None)?;
    let faces_json: Vec<serde_json::Value> = boxes
        .into_iter()
        .zip(&preds)
        .map(|(mut b, p)| {
            b["probs"] = probs_json(&p.probs);
            b["label"] = serde_json::json!(p.label.name());
            b["intensity"] = serde_json::json!((p.intensity as f64 * 1e4).round() / 1e4);
            b
        })
        .collect();
    if let (Some(dir), Some(face), Some(pred)) = (save, faces.first(), preds.first()) {
        for (suffix, img) in [("query", face), ("reference", &pred.reference)] {
            let out: PathBuf = dir.join(format!("{name}.{suffix}.png"));
            img.to_luma8()
                .save(&out)
                .with_context(|| format!("writing {}", out.display()))?;
        }
    }
    Ok(serde_json::json!({"path": path.display().to_string(), "faces": faces_json}).to_string())
}
