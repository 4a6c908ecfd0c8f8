//! The session browser (`dgcn open SESSION`, or "Sessions…" in the live window): a scrubber over
//! the recorded frames; for the frame under it, query, reference and difference side by side,
//! the bars and the label; a timeline of the probabilities with the labels drawn as bands; the
//! confusion matrix of labels against predictions; export of the table (CSV) and of a contact
//! sheet (query | reference per labelled segment, PNG).
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use egui::{Color32, RichText, TextureOptions};

use super::screenshot::{bars_layout, rect_px};
use super::views::{self, ImageView};
use crate::face::FACE_SIZE;
use crate::labels::{Expression, NUM_CLASSES};
use crate::learn::metrics::Confusion;
use crate::session::format::{load_face_png, FrameRow};
use crate::session::Session;

/// A labelled stretch of consecutive frames (first face of each frame).
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub label: Expression,
    pub first_row: usize,
    pub last_row: usize,
}

/// The rows that carry the first face of each frame, in order.
pub fn first_face_rows(session: &Session) -> Vec<usize> {
    let mut out = Vec::new();
    let mut last_frame = None;
    for (i, r) in session.rows.iter().enumerate() {
        if Some(r.frame) != last_frame {
            out.push(i);
            last_frame = Some(r.frame);
        }
    }
    out
}

/// Maximal runs of the same label over the frames' first rows.
pub fn labelled_segments(session: &Session, rows: &[usize]) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    for &i in rows {
        let Some(label) = session.rows[i].label else {
            continue;
        };
        match out.last_mut() {
            Some(s)
                if s.label == label
                    && s.last_row + 1 >= i
                    && contiguous(session, s.last_row, i) =>
            {
                s.last_row = i
            }
            _ => out.push(Segment {
                label,
                first_row: i,
                last_row: i,
            }),
        }
    }
    out
}

fn contiguous(session: &Session, a: usize, b: usize) -> bool {
    session.rows[a..=b]
        .iter()
        .all(|r| r.label == session.rows[a].label)
}

pub fn session_confusion(session: &Session) -> Confusion {
    let mut c = Confusion::default();
    for (_, face, label) in session.labelled_faces() {
        c.add(label.index(), face.predicted.index());
    }
    c
}

/// The browser's table as CSV: one row per face, readable columns.
pub fn export_table(session: &Session, path: &Path) -> Result<()> {
    let mut w =
        csv::Writer::from_path(path).with_context(|| format!("creating {}", path.display()))?;
    let mut header = vec!["frame", "time_s", "label", "face", "predicted", "reference"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    header.extend(Expression::ALL.iter().map(|e| format!("p_{}", e.name())));
    w.write_record(&header)?;
    for r in &session.rows {
        let mut rec = vec![
            r.frame.to_string(),
            format!("{:.3}", r.time_s),
            r.label.map(|l| l.name().to_string()).unwrap_or_default(),
        ];
        match &r.face {
            Some(f) => {
                rec.push(f.index.to_string());
                rec.push(f.predicted.name().into());
                rec.push(if f.own_reference { "own" } else { "generated" }.into());
                rec.extend(f.probs.iter().map(|p| format!("{p:.4}")));
            }
            None => rec.extend(std::iter::repeat_n(String::new(), 3 + NUM_CLASSES)),
        }
        w.write_record(&rec)?;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// One line per labelled segment: a strip in the label's colour, then the middle frame's query
/// and reference at 2×. Returns the segments drawn (a CSV beside the PNG names them).
pub fn export_contact_sheet(session: &Session, path: &Path) -> Result<Vec<Segment>> {
    let rows = first_face_rows(session);
    let segments: Vec<Segment> = labelled_segments(session, &rows)
        .into_iter()
        .filter(|s| {
            let mid = (s.first_row + s.last_row) / 2;
            session.rows[mid].face.is_some()
        })
        .collect();
    anyhow::ensure!(
        !segments.is_empty(),
        "the session has no labelled frame with a face"
    );
    let tile = (FACE_SIZE * 2) as u32;
    let strip = 16u32;
    let gap = 4u32;
    let width = strip + 2 * tile + 3 * gap;
    let height = segments.len() as u32 * (tile + gap) + gap;
    let mut sheet = image::RgbImage::from_pixel(width, height, image::Rgb([24, 24, 24]));
    for (k, s) in segments.iter().enumerate() {
        let mid = (s.first_row + s.last_row) / 2;
        let Some(face) = &session.rows[mid].face else {
            continue;
        };
        let y = gap + k as u32 * (tile + gap);
        let c = views::expression_color(s.label);
        for yy in y..y + tile {
            for xx in gap..gap + strip {
                sheet.put_pixel(xx, yy, image::Rgb([c.r(), c.g(), c.b()]));
            }
        }
        for (j, rel) in [&face.query_png, &face.reference_png]
            .into_iter()
            .enumerate()
        {
            let img = load_face_png(&session.dir.join(rel)).map_err(anyhow::Error::msg)?;
            let grey = img.to_luma8();
            let big =
                image::imageops::resize(&grey, tile, tile, image::imageops::FilterType::Nearest);
            let x0 = gap + strip + gap + j as u32 * (tile + gap);
            for (xx, yy, p) in big.enumerate_pixels() {
                sheet.put_pixel(x0 + xx, y + yy, image::Rgb([p.0[0]; 3]));
            }
        }
    }
    sheet
        .save(path)
        .with_context(|| format!("saving {}", path.display()))?;
    let mut w = csv::Writer::from_path(path.with_extension("csv"))?;
    w.write_record(["line", "label", "first_frame", "last_frame", "shown_frame"])?;
    for (k, s) in segments.iter().enumerate() {
        w.write_record([
            (k + 1).to_string(),
            s.label.name().to_string(),
            session.rows[s.first_row].frame.to_string(),
            session.rows[s.last_row].frame.to_string(),
            session.rows[(s.first_row + s.last_row) / 2]
                .frame
                .to_string(),
        ])?;
    }
    w.flush()?;
    Ok(segments)
}

pub struct SessionBrowser {
    pub session: Session,
    rows: Vec<usize>,
    cursor: usize,
    loaded_for: Option<usize>,
    query: ImageView,
    reference: ImageView,
    difference: ImageView,
    confusion: Confusion,
    export_dir: String,
    status: Option<String>,
}

impl SessionBrowser {
    pub fn new(session: Session) -> SessionBrowser {
        let rows = first_face_rows(&session);
        let confusion = session_confusion(&session);
        let export_dir = session.dir.join("export").display().to_string();
        let status = (!session.warnings.is_empty()).then(|| session.warnings.join("; "));
        SessionBrowser {
            session,
            rows,
            cursor: 0,
            loaded_for: None,
            query: ImageView::new("session-query", TextureOptions::NEAREST),
            reference: ImageView::new("session-reference", TextureOptions::NEAREST),
            difference: ImageView::new("session-difference", TextureOptions::NEAREST),
            confusion,
            export_dir,
            status,
        }
    }

    pub fn open(dir: &Path) -> Result<SessionBrowser> {
        Ok(SessionBrowser::new(crate::session::open_session(dir)?))
    }

    /// Puts the cursor on `frame` (or the nearest recorded frame after it).
    pub fn go_to_frame(&mut self, frame: u64) {
        self.cursor = self
            .rows
            .iter()
            .position(|&i| self.session.rows[i].frame >= frame)
            .unwrap_or(self.rows.len().saturating_sub(1));
    }

    fn row(&self) -> Option<&FrameRow> {
        self.rows.get(self.cursor).map(|&i| &self.session.rows[i])
    }

    fn load_images(&mut self, ctx: &egui::Context) {
        if self.loaded_for == Some(self.cursor) {
            return;
        }
        self.loaded_for = Some(self.cursor);
        let Some(face) = self.row().and_then(|r| r.face.clone()) else {
            return;
        };
        let dir = self.session.dir.clone();
        match (
            load_face_png(&dir.join(&face.query_png)),
            load_face_png(&dir.join(&face.reference_png)),
        ) {
            (Ok(q), Ok(r)) => {
                self.query.set(ctx, views::grey_image(&q));
                self.reference.set(ctx, views::grey_image(&r));
                self.difference.set(ctx, views::heat_map_image(&q, &r));
            }
            (Err(e), _) | (_, Err(e)) => self.status = Some(e),
        }
    }

    fn export(&mut self) {
        let dir = PathBuf::from(self.export_dir.trim());
        let result = std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating {}", dir.display()))
            .and_then(|_| export_table(&self.session, &dir.join("table.csv")))
            .and_then(|_| export_contact_sheet(&self.session, &dir.join("contact_sheet.png")));
        self.status = Some(match result {
            Ok(segments) => format!(
                "exported table.csv and contact_sheet.png ({} labelled segments) to {}",
                segments.len(),
                dir.display()
            ),
            Err(e) => format!("export failed: {e:#}"),
        });
    }

    /// The whole browser; returns the layout of what it drew (for screenshots).
    pub fn ui(&mut self, ui: &mut egui::Ui) -> serde_json::Value {
        let ctx = ui.ctx().clone();
        if ctx.memory(|m| m.focused().is_none()) {
            let (left, right) = ctx.input(|i| {
                (
                    i.key_pressed(egui::Key::ArrowLeft),
                    i.key_pressed(egui::Key::ArrowRight),
                )
            });
            if left {
                self.cursor = self.cursor.saturating_sub(1);
            }
            if right && self.cursor + 1 < self.rows.len() {
                self.cursor += 1;
            }
        }
        self.load_images(&ctx);
        let ppp = ctx.pixels_per_point();
        let px = |r: egui::Rect| rect_px(r, ppp);
        let mut layout = serde_json::Map::new();
        let m = &self.session.manifest;
        ui.heading(format!("Session {}", self.session.dir.display()));
        ui.label(format!(
            "{} · started {} · {} frames, {} rows · weights {}… · {}",
            m.source,
            m.started_at,
            self.rows.len(),
            self.session.rows.len(),
            m.weights_sha256.get(..12).unwrap_or(""),
            match (&m.ended_at, &m.stopped_by) {
                (_, Some(s)) => format!("stopped: {s}"),
                (Some(e), None) => format!("ended {e}"),
                (None, None) => "did not end normally (rows up to the last flush)".into(),
            }
        ));
        if let Some(s) = &self.status {
            ui.label(RichText::new(s).color(Color32::from_rgb(255, 180, 90)));
        }
        if self.rows.is_empty() {
            ui.label("This session has no frames.");
            return serde_json::Value::Object(layout);
        }
        ui.horizontal(|ui| {
            if ui.button("◀").clicked() {
                self.cursor = self.cursor.saturating_sub(1);
            }
            let last = self.rows.len() - 1;
            ui.spacing_mut().slider_width = (ui.available_width() - 160.0).max(200.0);
            ui.add(egui::Slider::new(&mut self.cursor, 0..=last).text("frame"));
            if ui.button("▶").clicked() && self.cursor < last {
                self.cursor += 1;
            }
        });
        let row = self.row().cloned();
        let mut plot = egui::Rect::NOTHING;
        egui::Panel::bottom("session-timeline-panel")
            .resizable(true)
            .default_size(300.0)
            .show(ui, |ui| {
                plot = self.timeline_ui(ui);
            });
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                let side = 192.0;
                ui.horizontal(|ui| {
                    let own = row
                        .as_ref()
                        .and_then(|r| r.face.as_ref())
                        .is_some_and(|f| f.own_reference);
                    layout.insert(
                        "query".into(),
                        px(views::face_tile_ui(ui, &self.query, "query", side)),
                    );
                    layout.insert(
                        "reference".into(),
                        px(views::face_tile_ui(
                            ui,
                            &self.reference,
                            if own {
                                "own neutral face"
                            } else {
                                "generated neutral"
                            },
                            side,
                        )),
                    );
                    layout.insert(
                        "difference".into(),
                        px(views::face_tile_ui(
                            ui,
                            &self.difference,
                            "difference",
                            side,
                        )),
                    );
                });
                if let Some(r) = &row {
                    let label = r.label.map(|l| l.name()).unwrap_or("—");
                    let color = r
                        .label
                        .map(views::expression_color)
                        .unwrap_or(Color32::GRAY);
                    ui.label(
                        RichText::new(format!(
                            "frame {} · {:.2} s · label {label}",
                            r.frame, r.time_s
                        ))
                        .size(18.0)
                        .color(color),
                    );
                    match &r.face {
                        Some(f) => {
                            ui.label(format!("predicted {}", f.predicted.name()));
                            let tracks = views::expression_bars_ui(ui, &f.probs, 600.0);
                            layout.insert("bars".into(), bars_layout(&f.probs, &tracks, ppp));
                        }
                        None => {
                            ui.label("no face in this frame");
                        }
                    }
                }
            });
            ui.separator();
            ui.vertical(|ui| {
                let total = self.confusion.total();
                if total > 0 {
                    ui.label(
                        RichText::new(format!(
                            "Accuracy {:.1} % on {} labelled faces",
                            self.confusion.accuracy() * 100.0,
                            total
                        ))
                        .size(18.0),
                    );
                    confusion_ui(ui, &self.confusion);
                } else {
                    ui.label("No labelled faces: no confusion matrix.");
                }
                ui.add_space(8.0);
                ui.horizontal(|ui| {
                    ui.label("Export to");
                    ui.text_edit_singleline(&mut self.export_dir);
                });
                if ui
                    .button("Export table (CSV) and contact sheet (PNG)")
                    .clicked()
                {
                    self.export();
                }
            });
        });
        layout.insert("timeline".into(), px(plot));
        layout.insert("pixels_per_point".into(), serde_json::json!(ppp));
        layout.insert("frame".into(), serde_json::json!(row.map(|r| r.frame)));
        let spans: Vec<serde_json::Value> = labelled_segments(&self.session, &self.rows)
            .iter()
            .map(|s| {
                let c = views::expression_color(s.label);
                serde_json::json!({"label": s.label.name(), "color": [c.r(), c.g(), c.b()]})
            })
            .collect();
        layout.insert("bands".into(), serde_json::Value::Array(spans));
        serde_json::Value::Object(layout)
    }

    fn timeline_ui(&mut self, ui: &mut egui::Ui) -> egui::Rect {
        use egui_plot::{Legend, Line, Plot, PlotPoints, Span, VLine};
        let rows = &self.rows;
        let session = &self.session;
        let cursor_t = self.row().map(|r| r.time_s).unwrap_or(0.0);
        let segments = labelled_segments(session, rows);
        let response = Plot::new("session-timeline")
            .height(ui.available_height().max(160.0))
            .include_y(0.0)
            .include_y(1.0)
            .allow_zoom(false)
            .allow_drag(false)
            .allow_scroll(false)
            .x_axis_label("time (s); bands: labels")
            .legend(Legend::default())
            .show(ui, |plot| {
                for s in &segments {
                    let c = views::expression_color(s.label);
                    plot.span(
                        Span::new(
                            format!("label: {}", s.label.name()),
                            session.rows[s.first_row].time_s..=session.rows[s.last_row].time_s,
                        )
                        .fill(Color32::from_rgba_unmultiplied(
                            c.r(),
                            c.g(),
                            c.b(),
                            60,
                        )),
                    );
                }
                for e in Expression::ALL {
                    let points: PlotPoints = rows
                        .iter()
                        .filter_map(|&i| {
                            let r = &session.rows[i];
                            r.face
                                .as_ref()
                                .map(|f| [r.time_s, f.probs[e.index()] as f64])
                        })
                        .collect();
                    plot.line(
                        Line::new(e.name(), points)
                            .color(views::expression_color(e))
                            .width(1.5),
                    );
                }
                plot.vline(VLine::new("cursor", cursor_t).color(Color32::WHITE));
            });
        if response.response.clicked() {
            if let Some(p) = response.response.interact_pointer_pos() {
                let x = response.transform.value_from_position(p).x;
                if let Some(k) = rows.iter().position(|&i| session.rows[i].time_s >= x) {
                    self.cursor = k;
                }
            }
        }
        response.response.rect
    }
}

fn confusion_ui(ui: &mut egui::Ui, c: &Confusion) {
    egui::Grid::new("confusion").striped(true).show(ui, |ui| {
        ui.label("true \\ predicted");
        for e in Expression::ALL {
            ui.label(&e.name()[..3]);
        }
        ui.label("recall");
        ui.end_row();
        let recall = c.recall();
        for e in Expression::ALL {
            let t = e.index();
            if recall[t].is_none() {
                continue;
            }
            ui.label(e.name());
            for p in 0..NUM_CLASSES {
                let n = c.matrix[t][p];
                let text = RichText::new(n.to_string()).monospace();
                ui.label(if p == t { text.strong() } else { text });
            }
            ui.label(format!("{:.0} %", recall[t].unwrap_or(0.0) * 100.0));
            ui.end_row();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::format::Manifest;

    fn session(labels: &[Option<Expression>]) -> Session {
        Session {
            dir: PathBuf::from("."),
            manifest: serde_json::from_value(serde_json::json!({
                "format": "x", "app_version": "x", "started_at": "x", "source": "x",
                "camera": null, "weights_path": "x", "weights_sha256": "x", "classes": [],
                "device": "cpu", "labels_from": null, "ended_at": null, "frames": null,
                "rows": null, "dropped": null, "stopped_by": null
            }))
            .map(|m: Manifest| m)
            .expect("manifest"),
            rows: labels
                .iter()
                .enumerate()
                .map(|(i, l)| FrameRow {
                    frame: i as u64,
                    time_s: i as f64 / 30.0,
                    label: *l,
                    face: None,
                })
                .collect(),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn segments_are_runs_of_one_label() {
        use Expression::*;
        let s = session(&[None, Some(Happy), Some(Happy), None, Some(Happy), Some(Sad)]);
        let rows = first_face_rows(&s);
        let segs = labelled_segments(&s, &rows);
        assert_eq!(
            segs,
            vec![
                Segment {
                    label: Happy,
                    first_row: 1,
                    last_row: 2
                },
                Segment {
                    label: Happy,
                    first_row: 4,
                    last_row: 4
                },
                Segment {
                    label: Sad,
                    first_row: 5,
                    last_row: 5
                },
            ]
        );
    }
}
