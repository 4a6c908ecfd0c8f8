//! `--screenshot PATH`: once the window has drawn what was asked for, it saves a picture of itself
//! (the real rendered frame) and the layout of what it drew (PATH.json, physical pixels), then
//! closes. Tests check the pixels against the layout; the README's picture is taken this way.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use crossbeam_channel::{bounded, Receiver};
use egui::ColorImage;

#[derive(Debug, Clone)]
pub struct ScreenshotPlan {
    pub path: PathBuf,
    /// Frames (results, or repaints for the browser) to show first.
    pub after_frames: u64,
}

enum State {
    Waiting(ScreenshotPlan),
    Requested {
        plan: ScreenshotPlan,
        image: Receiver<Arc<ColorImage>>,
        layout: serde_json::Value,
    },
    Done,
}

pub struct Screenshotter {
    state: State,
}

impl Screenshotter {
    pub fn new(plan: Option<ScreenshotPlan>) -> Screenshotter {
        Screenshotter {
            state: match plan {
                Some(p) => State::Waiting(p),
                None => State::Done,
            },
        }
    }

    pub fn after_frames(&self) -> u64 {
        match &self.state {
            State::Waiting(p) | State::Requested { plan: p, .. } => p.after_frames,
            State::Done => u64::MAX,
        }
    }

    /// Between the request and the picture: the view must not change.
    pub fn is_taking(&self) -> bool {
        matches!(self.state, State::Requested { .. })
    }

    /// Call once per frame with whether the view is ready and the layout just drawn.
    pub fn step(
        &mut self,
        ctx: &egui::Context,
        ready: bool,
        layout: serde_json::Value,
    ) -> Result<()> {
        let state = std::mem::replace(&mut self.state, State::Done);
        self.state = match state {
            State::Waiting(plan) if ready => {
                let (tx, rx) = bounded(1);
                let repaint = ctx.clone();
                ctx.request_screenshot(move |image| {
                    let _ = tx.send(image);
                    repaint.request_repaint();
                });
                ctx.request_repaint();
                State::Requested {
                    plan,
                    image: rx,
                    layout,
                }
            }
            State::Requested {
                plan,
                image,
                layout,
            } => match image.try_recv() {
                Ok(img) => {
                    let saved = save(&plan.path, &img, &layout);
                    ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                    saved?;
                    tracing::info!(path = %plan.path.display(), "screenshot saved");
                    State::Done
                }
                Err(_) => State::Requested {
                    plan,
                    image,
                    layout,
                },
            },
            other => other,
        };
        Ok(())
    }
}

/// A rectangle in physical pixels `[x0, y0, x1, y1]`, as the layout files give it.
pub fn rect_px(r: egui::Rect, pixels_per_point: f32) -> serde_json::Value {
    let p = |v: f32| (v * pixels_per_point).round();
    serde_json::json!([p(r.min.x), p(r.min.y), p(r.max.x), p(r.max.y)])
}

/// Each expression bar's label, track rectangle, value and colour.
pub fn bars_layout(
    probs: &[f32; crate::labels::NUM_CLASSES],
    tracks: &[egui::Rect],
    pixels_per_point: f32,
) -> serde_json::Value {
    use crate::labels::Expression;
    serde_json::Value::Array(
        Expression::ALL
            .iter()
            .zip(tracks)
            .map(|(e, t)| {
                let c = super::views::expression_color(*e);
                serde_json::json!({
                    "label": e.name(),
                    "rect": rect_px(*t, pixels_per_point),
                    "value": probs[e.index()],
                    "color": [c.r(), c.g(), c.b()],
                })
            })
            .collect(),
    )
}

fn save(path: &Path, img: &ColorImage, layout: &serde_json::Value) -> Result<()> {
    let [w, h] = img.size;
    let rgba: Vec<u8> = img.pixels.iter().flat_map(|c| c.to_array()).collect();
    let buf = image::RgbaImage::from_raw(w as u32, h as u32, rgba)
        .context("screenshot has an inconsistent size")?;
    buf.save(path)
        .with_context(|| format!("saving the screenshot {}", path.display()))?;
    let mut json = path.as_os_str().to_owned();
    json.push(".json");
    std::fs::write(&json, serde_json::to_string_pretty(layout)?)
        .with_context(|| format!("writing {}", PathBuf::from(&json).display()))?;
    Ok(())
}
