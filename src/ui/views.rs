//! The window's views, each drawn by a `*_ui` function: the live frame with faces, the face tiles
//! (query, reference, difference heat map), the expression bars and the timeline. Also the small
//! pieces of state they need: reusable textures, smoothing and the timeline's history.
use std::collections::VecDeque;

use egui::{
    Align2, Color32, ColorImage, FontId, Pos2, Rect, Sense, Stroke, StrokeKind, TextureHandle,
    TextureOptions, Ui, Vec2,
};

use crate::face::{AlignedFace, FACE_SIZE};
use crate::frame::FaceResult;
use crate::labels::{Expression, NUM_CLASSES};

/// One colour per expression, used by the bars, the timeline and the face labels.
pub fn expression_color(e: Expression) -> Color32 {
    match e {
        Expression::Neutral => Color32::from_rgb(170, 170, 170),
        Expression::Happy => Color32::from_rgb(255, 200, 40),
        Expression::Surprise => Color32::from_rgb(80, 200, 255),
        Expression::Sad => Color32::from_rgb(70, 110, 230),
        Expression::Angry => Color32::from_rgb(235, 60, 50),
        Expression::Disgust => Color32::from_rgb(120, 200, 60),
        Expression::Fear => Color32::from_rgb(170, 90, 220),
        Expression::Contempt => Color32::from_rgb(240, 120, 190),
    }
}

/// A texture kept from frame to frame and overwritten with each new image.
pub struct ImageView {
    name: &'static str,
    options: TextureOptions,
    handle: Option<TextureHandle>,
}

impl ImageView {
    pub fn new(name: &'static str, options: TextureOptions) -> ImageView {
        ImageView {
            name,
            options,
            handle: None,
        }
    }

    pub fn set(&mut self, ctx: &egui::Context, image: ColorImage) {
        match &mut self.handle {
            Some(h) => h.set(image, self.options),
            None => self.handle = Some(ctx.load_texture(self.name, image, self.options)),
        }
    }

    pub fn texture(&self) -> Option<&TextureHandle> {
        self.handle.as_ref()
    }
}

pub fn grey_image(face: &AlignedFace) -> ColorImage {
    let grey = face.to_luma8();
    ColorImage::from_gray([FACE_SIZE, FACE_SIZE], grey.as_raw())
}

/// |query − reference| per pixel, in [0, 1].
pub fn difference(query: &AlignedFace, reference: &AlignedFace) -> Vec<f32> {
    query
        .pixels
        .iter()
        .zip(&reference.pixels)
        .map(|(q, r)| (q - r).abs().min(1.0))
        .collect()
}

/// Differences at or above this show as the hottest colour.
pub const HEAT_FULL_SCALE: f32 = 0.4;

/// The difference as an "inferno" heat map (black: same, yellow: ≥ [`HEAT_FULL_SCALE`]).
pub fn heat_map_image(query: &AlignedFace, reference: &AlignedFace) -> ColorImage {
    ColorImage::from_rgb(
        [FACE_SIZE, FACE_SIZE],
        heat_map_rgb(query, reference).as_raw(),
    )
}

/// The heat map as an RGB image (for files: `dgcn eval --grid-clip`).
pub fn heat_map_rgb(query: &AlignedFace, reference: &AlignedFace) -> image::RgbImage {
    let mut rgb = Vec::with_capacity(FACE_SIZE * FACE_SIZE * 3);
    for d in difference(query, reference) {
        let c = colorous::INFERNO.eval_continuous((d / HEAT_FULL_SCALE).clamp(0.0, 1.0) as f64);
        rgb.extend_from_slice(&[c.r, c.g, c.b]);
    }
    image::RgbImage::from_raw(FACE_SIZE as u32, FACE_SIZE as u32, rgb)
        .unwrap_or_else(|| image::RgbImage::new(FACE_SIZE as u32, FACE_SIZE as u32))
}

/// A captioned square tile; returns the image's rectangle.
pub fn face_tile_ui(ui: &mut Ui, view: &ImageView, caption: &str, side: f32) -> Rect {
    ui.vertical(|ui| {
        // A caption wider than the tile wraps under it instead of widening the row (four tiles
        // with "your neutral face (taken by itself)" pushed the last one off the window).
        ui.set_max_width(side);
        let (rect, _) = ui.allocate_exact_size(Vec2::splat(side), Sense::hover());
        match view.texture() {
            Some(t) => {
                ui.painter().image(
                    t.id(),
                    rect,
                    Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0)),
                    Color32::WHITE,
                );
            }
            None => {
                ui.painter()
                    .rect_filled(rect, 2.0, ui.visuals().extreme_bg_color);
            }
        }
        ui.add(egui::Label::new(caption).wrap());
        rect
    })
    .inner
}

/// The frame with every face's box, landmarks and label; a click on a box selects that face.
/// Returns the frame's rectangle and the face clicked, if any.
pub fn frame_view_ui(
    ui: &mut Ui,
    frame: &ImageView,
    image_size: [usize; 2],
    faces: &[FaceResult],
    selected: usize,
) -> (Rect, Option<usize>) {
    let avail = ui.available_size();
    let (w, h) = (image_size[0].max(1) as f32, image_size[1].max(1) as f32);
    let scale = (avail.x / w).min(avail.y / h).max(0.01);
    let (rect, response) = ui.allocate_exact_size(Vec2::new(w * scale, h * scale), Sense::click());
    let painter = ui.painter_at(rect);
    match frame.texture() {
        Some(t) => {
            painter.image(
                t.id(),
                rect,
                Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0)),
                Color32::WHITE,
            );
        }
        None => {
            painter.rect_filled(rect, 0.0, Color32::BLACK);
        }
    }
    let to_screen = |p: [f32; 2]| rect.min + Vec2::new(p[0] * scale, p[1] * scale);
    let mut boxes = Vec::with_capacity(faces.len());
    for (i, f) in faces.iter().enumerate() {
        let [x, y, bw, bh] = f.detected.bbox;
        let b = Rect::from_min_max(to_screen([x, y]), to_screen([x + bw, y + bh]));
        boxes.push(b);
        let is_selected = i == selected;
        let color = if is_selected {
            Color32::from_rgb(255, 220, 0)
        } else {
            Color32::from_rgb(120, 230, 120)
        };
        painter.rect_stroke(
            b,
            2.0,
            Stroke::new(if is_selected { 3.0 } else { 1.5 }, color),
            StrokeKind::Outside,
        );
        for p in f.detected.landmarks {
            painter.circle_filled(to_screen(p), 3.0, Color32::from_rgb(0, 200, 255));
        }
        let label = f.prediction.label;
        let text = format!(
            "{} {:.0}%",
            label.name(),
            f.prediction.probs[label.index()] * 100.0
        );
        let tag = painter.text(
            b.left_top() - Vec2::new(0.0, 4.0),
            Align2::LEFT_BOTTOM,
            &text,
            FontId::proportional(16.0),
            Color32::BLACK,
        );
        painter.rect_filled(tag.expand(2.0), 2.0, expression_color(label));
        painter.text(
            b.left_top() - Vec2::new(0.0, 4.0),
            Align2::LEFT_BOTTOM,
            &text,
            FontId::proportional(16.0),
            Color32::BLACK,
        );
    }
    let clicked = response
        .clicked()
        .then(|| response.interact_pointer_pos())
        .flatten()
        .and_then(|pos| boxes.iter().position(|b| b.contains(pos)));
    (rect, clicked)
}

/// One labelled bar row: the label on the left, a track filled to `value` (0–1) in `color`, and
/// `text` on the right; returns the track.
fn bar_row_ui(
    ui: &mut Ui,
    (label, text): (&str, String),
    value: f32,
    color: Color32,
    strong: bool,
    width: f32,
) -> (Rect, egui::Response) {
    let (row_h, label_w, value_w) = (22.0, 80.0, 52.0);
    let track_w = (width - label_w - value_w).max(40.0);
    let (row, response) = ui.allocate_exact_size(Vec2::new(width, row_h), Sense::hover());
    let painter = ui.painter();
    let text_color = if strong {
        ui.visuals().strong_text_color()
    } else {
        ui.visuals().text_color()
    };
    painter.text(
        row.left_center(),
        Align2::LEFT_CENTER,
        label,
        FontId::proportional(15.0),
        text_color,
    );
    let track = Rect::from_min_size(
        Pos2::new(row.left() + label_w, row.top() + 3.0),
        Vec2::new(track_w, row_h - 6.0),
    );
    painter.rect_filled(track, 0.0, ui.visuals().extreme_bg_color);
    let v = value.clamp(0.0, 1.0);
    let fill = Rect::from_min_size(track.min, Vec2::new(track_w * v, track.height()));
    painter.rect_filled(fill, 0.0, color);
    painter.text(
        row.right_center(),
        Align2::RIGHT_CENTER,
        text,
        FontId::monospace(14.0),
        text_color,
    );
    (track, response)
}

/// One bar per expression; returns each bar's track (full-width) rectangle.
pub fn expression_bars_ui(ui: &mut Ui, probs: &[f32; NUM_CLASSES], width: f32) -> Vec<Rect> {
    let best = Expression::most_likely(probs);
    Expression::ALL
        .iter()
        .map(|&e| {
            let p = probs[e.index()].clamp(0.0, 1.0);
            let text = format!("{:5.1}%", p * 100.0);
            bar_row_ui(
                ui,
                (e.name(), text),
                p,
                expression_color(e),
                e == best,
                width,
            )
            .0
        })
        .collect()
}

/// The intensity's colour in the bar and the timeline.
pub const INTENSITY_COLOR: Color32 = Color32::from_rgb(230, 230, 230);

/// The expression's intensity (0 as neutral as the reference … 1), as one more bar under the
/// expression bars; returns its track.
pub fn intensity_bar_ui(ui: &mut Ui, intensity: f32, width: f32) -> Rect {
    let v = intensity.clamp(0.0, 1.0);
    let (track, response) = bar_row_ui(
        ui,
        ("intensity", format!("{v:5.2}")),
        v,
        INTENSITY_COLOR,
        false,
        width,
    );
    response.on_hover_text(
        "how far the face is from its neutral reference in the contrastive embedding: \
         0 as neutral as the reference, 1 a typical expression or more",
    );
    track
}

/// Exponential smoothing over time of N values (the probabilities, or the intensity).
pub struct Smoother<const N: usize = NUM_CLASSES> {
    time_constant_s: f64,
    state: Option<(f64, [f32; N])>,
}

impl<const N: usize> Smoother<N> {
    pub fn new(time_constant_s: f64) -> Smoother<N> {
        Smoother {
            time_constant_s,
            state: None,
        }
    }

    pub fn reset(&mut self) {
        self.state = None;
    }

    /// Adds the values at `time_s` and returns the smoothed values.
    pub fn update(&mut self, time_s: f64, probs: &[f32; N]) -> [f32; N] {
        let next = match self.state {
            Some((t, prev)) if time_s > t => {
                let a = (1.0 - (-(time_s - t) / self.time_constant_s).exp()) as f32;
                let mut s = prev;
                for (s, p) in s.iter_mut().zip(probs) {
                    *s += a * (p - *s);
                }
                s
            }
            Some((_, prev)) if time_s.is_finite() => prev,
            _ => *probs,
        };
        self.state = Some((time_s, next));
        next
    }
}

/// The last `span_s` seconds of probabilities and intensity, for the timeline.
pub struct Timeline {
    pub span_s: f64,
    points: VecDeque<(f64, [f32; NUM_CLASSES], f32)>,
}

impl Timeline {
    pub fn new(span_s: f64) -> Timeline {
        Timeline {
            span_s,
            points: VecDeque::new(),
        }
    }

    pub fn clear(&mut self) {
        self.points.clear();
    }

    pub fn push(&mut self, time_s: f64, probs: [f32; NUM_CLASSES], intensity: f32) {
        if self.points.back().is_some_and(|(t, _, _)| time_s < *t) {
            // The source went back in time (a new source): start afresh.
            self.points.clear();
        }
        self.points.push_back((time_s, probs, intensity));
        while self
            .points
            .front()
            .is_some_and(|(t, _, _)| time_s - t > self.span_s)
        {
            self.points.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

/// The probabilities over the last seconds, one line per expression, and the intensity as a
/// dashed line; returns the plot's rectangle.
pub fn timeline_ui(ui: &mut Ui, timeline: &Timeline, height: f32) -> Rect {
    use egui_plot::{Legend, Line, LineStyle, Plot, PlotPoints};
    let last = timeline.points.back().map(|(t, _, _)| *t).unwrap_or(0.0);
    let response = Plot::new("timeline")
        .height(height)
        .include_y(0.0)
        .include_y(1.0)
        .include_x(last - timeline.span_s)
        .include_x(last)
        .allow_zoom(false)
        .allow_drag(false)
        .allow_scroll(false)
        .x_axis_label("source time (s)")
        .legend(Legend::default())
        .show(ui, |plot| {
            for e in Expression::ALL {
                let points: PlotPoints = timeline
                    .points
                    .iter()
                    .map(|(t, p, _)| [*t, p[e.index()] as f64])
                    .collect();
                plot.line(
                    Line::new(e.name(), points)
                        .color(expression_color(e))
                        .width(2.0),
                );
            }
            let intensity: PlotPoints = timeline
                .points
                .iter()
                .map(|(t, _, i)| [*t, *i as f64])
                .collect();
            plot.line(
                Line::new("intensity", intensity)
                    .color(INTENSITY_COLOR)
                    .style(LineStyle::dashed_loose())
                    .width(2.0),
            );
        });
    response.response.rect
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoother_moves_toward_new_values_with_time() {
        let mut s: Smoother = Smoother::new(0.25);
        let mut a = [0.0; NUM_CLASSES];
        a[0] = 1.0;
        let mut b = [0.0; NUM_CLASSES];
        b[1] = 1.0;
        assert_eq!(s.update(0.0, &a), a);
        let after_short = s.update(0.05, &b);
        assert!(
            after_short[1] > 0.1 && after_short[1] < 0.3,
            "{after_short:?}"
        );
        let after_long = s.update(5.0, &b);
        assert!(after_long[1] > 0.99);
    }

    #[test]
    fn timeline_keeps_only_its_span() {
        let mut t = Timeline::new(10.0);
        for i in 0..100 {
            t.push(i as f64 * 0.5, [0.0; NUM_CLASSES], 0.0);
        }
        assert_eq!(t.len(), 21);
        t.push(1.0, [0.0; NUM_CLASSES], 0.0);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn heat_map_is_dark_where_faces_agree() {
        let q = AlignedFace {
            pixels: (0..FACE_SIZE * FACE_SIZE)
                .map(|i| (i % 7) as f32 / 7.0)
                .collect(),
        };
        let same = heat_map_image(&q, &q);
        assert!(same.pixels.iter().all(|c| c.r() < 10 && c.g() < 10));
        let mut r = q.clone();
        r.pixels[0] = if q.pixels[0] > 0.5 { 0.0 } else { 1.0 };
        let hot = heat_map_image(&q, &r);
        assert!(hot.pixels[0].r() > 200, "{:?}", hot.pixels[0]);
    }
}
