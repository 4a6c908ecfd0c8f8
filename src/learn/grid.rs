//! Face grids as PNG: rows of 64×64 tiles (query | generated reference | true neutral) for
//! training runs and evaluation reports.
use std::path::Path;

use anyhow::{Context, Result};
use tch::{Device, Kind, Tensor};

use super::pool::TrainData;
use crate::face::FACE_SIZE;
use crate::model::GcNet;

/// Saves rows of 64×64 tiles as one PNG, each tile enlarged to `side` pixels (nearest).
pub fn save_tile_grid(rows: &[Vec<image::RgbImage>], side: u32, path: &Path) -> Result<()> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let mut canvas = image::RgbImage::new(side * cols, side * rows.len() as u32);
    for (r, row) in rows.iter().enumerate() {
        for (c, tile) in row.iter().enumerate() {
            let big =
                image::imageops::resize(tile, side, side, image::imageops::FilterType::Nearest);
            image::imageops::replace(
                &mut canvas,
                &big,
                (c as u32 * side) as i64,
                (r as u32 * side) as i64,
            );
        }
    }
    canvas
        .save(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// PNG grid, one row per held-out face: query | generated reference | true neutral (2× size).
pub fn write_grid(net: &GcNet, val: &TrainData, device: Device, path: &Path) -> Result<()> {
    let rows: Vec<usize> = val
        .with_neutral()
        .into_iter()
        .filter(|&i| val.labels[i] != 0)
        .step_by(7)
        .take(8)
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let query = val.batch(&rows, device);
    let partners: Vec<usize> = rows.iter().map(|&i| val.neutral_of[i][0]).collect();
    let neutral = val.batch(&partners, device);
    let generated = tch::no_grad(|| net.generator.forward_t(&query, false));
    let tiles = (0..rows.len())
        .map(|r| {
            [&query, &generated, &neutral]
                .iter()
                .map(|t| {
                    Ok(
                        image::DynamicImage::ImageLuma8(tensor_to_luma(&t.get(r as i64))?)
                            .to_rgb8(),
                    )
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    save_tile_grid(&tiles, FACE_SIZE as u32 * 2, path)
}

/// 1×64×64 float tensor in [0, 1] → grey image.
pub fn tensor_to_luma(t: &Tensor) -> Result<image::GrayImage> {
    let v: Vec<f32> = crate::model::tensor_values(&t.to_kind(Kind::Float))?;
    let px = v
        .iter()
        .map(|x| (x.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    image::GrayImage::from_raw(FACE_SIZE as u32, FACE_SIZE as u32, px)
        .ok_or_else(|| anyhow::anyhow!("a face tensor of {} values, not 64×64", v.len()))
}
