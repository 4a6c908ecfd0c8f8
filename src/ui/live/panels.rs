//! The panels: source bar, status bar (rates, latencies, CPU use) and the face panel (tiles,
//! bars, intensity, timeline).
use super::*;

impl LiveApp {
    pub(super) fn source_bar_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            ui.label("Source:");
            let current = self
                .running
                .as_ref()
                .map(|r| r.spec.to_string())
                .unwrap_or_else(|| "none".into());
            let mut chosen: Option<SourceSpec> = None;
            egui::ComboBox::from_id_salt("source")
                .selected_text(&current)
                .show_ui(ui, |ui| {
                    if self.cameras.is_empty() {
                        ui.label("no camera found");
                    }
                    for c in &self.cameras {
                        if ui
                            .selectable_label(
                                current == format!("camera:{}", c.index),
                                format!("camera {}: {}", c.index, c.name),
                            )
                            .clicked()
                        {
                            chosen = Some(self.setup.camera_spec(c.index));
                        }
                    }
                    if ui
                        .selectable_label(current == "demo", "demo clip (carphone)")
                        .clicked()
                    {
                        chosen = Some(SourceSpec::Demo);
                    }
                });
            if ui
                .button("⟳ cameras")
                .on_hover_text("list the cameras again")
                .clicked()
            {
                self.cameras = list_cameras();
            }
            ui.separator();
            ui.label("Resolution:");
            let mut res = (self.setup.camera.width, self.setup.camera.height);
            egui::ComboBox::from_id_salt("resolution")
                .selected_text(format!("{}×{}", res.0, res.1))
                .show_ui(ui, |ui| {
                    for (w, h) in [(320, 240), (640, 480), (1280, 720), (1920, 1080)] {
                        ui.selectable_value(&mut res, (w, h), format!("{w}×{h}"));
                    }
                });
            (self.setup.camera.width, self.setup.camera.height) = res;
            egui::ComboBox::from_id_salt("fps")
                .selected_text(format!("{} fps", self.setup.camera.frames_per_s))
                .show_ui(ui, |ui| {
                    for f in [15, 30, 60] {
                        ui.selectable_value(
                            &mut self.setup.camera.frames_per_s,
                            f,
                            format!("{f} fps"),
                        );
                    }
                });
            ui.separator();
            ui.add(
                egui::TextEdit::singleline(&mut self.path_input)
                    .hint_text("video, image or folder path")
                    .desired_width(220.0),
            );
            if ui.button("Open").clicked() && !self.path_input.trim().is_empty() {
                chosen = Some(SourceSpec::Path(PathBuf::from(self.path_input.trim())));
            }
            if let Some((spec, _)) = &self.starting {
                ui.spinner();
                ui.label(format!("opening {spec}…"));
            }
            if let Some(spec) = chosen {
                self.start(spec);
            }
        });
    }

    /// Returns the CPU figure shown (cores), once there is one.
    pub(super) fn status_bar_ui(&mut self, ui: &mut egui::Ui) -> Option<f64> {
        let cores = self.cpu.cores();
        let cpu = cores.map_or_else(|| "CPU …".to_string(), |c| format!("CPU {c:.2} cores"));
        ui.horizontal_wrapped(|ui| {
            match &self.running {
                Some(r) => {
                    let l = self.stats.latency_ms;
                    ui.label(format!(
                        "{} fps · capture {:.1} · detect {:.1} · align {:.1} · model {:.1} · total {:.1} ms · device {} · dropped {}",
                        self.stats.frames_per_s(),
                        l[0], l[1], l[2], l[3], l[4],
                        r.device,
                        r.pipeline.dropped.load(Ordering::Relaxed),
                    ));
                    ui.separator();
                    ui.label(cpu);
                    ui.separator();
                    ui.label(&r.pipeline.source_description);
                }
                None => {
                    ui.label("no source running");
                    ui.separator();
                    ui.label(cpu);
                }
            }
        });
        cores
    }

    /// The face tiles, bars and timeline; returns the layout for screenshots.
    pub(super) fn face_panel_ui(&mut self, ui: &mut egui::Ui) -> serde_json::Value {
        let faces = self.latest.as_ref().map(|r| r.faces.len()).unwrap_or(0);
        let ppp = ui.ctx().pixels_per_point();
        let px = |r: egui::Rect| rect_px(r, ppp);
        let mut layout = serde_json::Map::new();
        if faces == 0 {
            ui.label(RichText::new("No face in view").heading());
            ui.label("Face the camera, with light on your face.");
        } else if faces > 1 {
            ui.label(format!("{faces} faces: click one to select it."));
        }
        let width = ui.available_width();
        let own = self.own_in_force();
        let by_itself = self.own_taken_by_itself();
        let tiles = if own { 4.0 } else { 3.0 };
        let side = ((width - 12.0 * tiles) / tiles).clamp(96.0, 200.0);
        ui.horizontal(|ui| {
            layout.insert(
                "query".into(),
                px(views::face_tile_ui(
                    ui,
                    &self.query_view,
                    "query (aligned 64×64)",
                    side,
                )),
            );
            // While the own face's frames are being taken, say so (the model already uses
            // the ones it has).
            let wanted = self.setup.own_frames;
            let taken = self
                .latest
                .as_ref()
                .and_then(|r| r.faces.get(self.selected))
                .and_then(|f| f.prediction.own_crops.as_ref())
                .map(|c| c.len());
            let caption = reference_caption(own, by_itself, taken, wanted);
            layout.insert("reference_caption".into(), caption.clone().into());
            layout.insert(
                "reference".into(),
                px(views::face_tile_ui(
                    ui,
                    &self.reference_view,
                    &caption,
                    side,
                )),
            );
            layout.insert(
                "difference".into(),
                px(views::face_tile_ui(
                    ui,
                    &self.difference_view,
                    "difference",
                    side,
                )),
            );
            if own {
                layout.insert(
                    "generated".into(),
                    px(views::face_tile_ui(
                        ui,
                        &self.generated_view,
                        "generated neutral",
                        side,
                    )),
                );
            }
        });
        ui.horizontal(|ui| {
            let label = if own {
                "Use the generated reference (N)"
            } else {
                "Use my neutral face (N)"
            };
            if ui
                .button(label)
                .on_hover_text(
                    "take the selected face, as it is now and over the next few frames, as this \
                     person's neutral reference (hold still for a moment)",
                )
                .clicked()
            {
                self.toggle_own_reference();
            }
            let mut auto = self.auto_neutral;
            if ui
                .checkbox(&mut auto, "take my neutral face by itself")
                .on_hover_text(
                    "when the model has called your face neutral, confidently, for a few frames \
                     in a row, those frames become your neutral reference, as N does; choosing \
                     the generated reference turns this off",
                )
                .changed()
            {
                self.set_auto_neutral(auto);
            }
            layout.insert("auto_neutral".into(), self.auto_neutral.into());
            ui.checkbox(&mut self.show_raw, "raw values (R)")
                .on_hover_text("off: smoothed over about 0.3 s");
        });
        ui.add_space(6.0);
        let tracks = views::expression_bars_ui(ui, &self.shown_probs, width);
        layout.insert("bars".into(), bars_layout(&self.shown_probs, &tracks, ppp));
        let track = views::intensity_bar_ui(ui, self.shown_intensity, width);
        layout.insert(
            "intensity".into(),
            serde_json::json!({"value": self.shown_intensity, "track": px(track)}),
        );
        ui.add_space(6.0);
        let plot = views::timeline_ui(ui, &self.timeline, ui.available_height().max(120.0));
        layout.insert("timeline".into(), px(plot));
        layout.insert("pixels_per_point".into(), serde_json::json!(ppp));
        serde_json::Value::Object(layout)
    }
}

/// The reference tile's caption: the generated neutral face, or the person's own (taken by the
/// user, or `by_itself`), which asks them to hold still while its frames are being taken
/// (`taken` of `wanted`).
fn reference_caption(own: bool, by_itself: bool, taken: Option<usize>, wanted: usize) -> String {
    match (own, taken) {
        (true, Some(n)) if n < wanted => format!("your neutral face: hold still ({n}/{wanted})"),
        (true, _) if by_itself => "your neutral face (taken by itself)".to_string(),
        (true, _) => "your neutral face".to_string(),
        (false, _) => "generated neutral".to_string(),
    }
}

#[cfg(test)]
mod caption_tests {
    use super::reference_caption;

    #[test]
    fn the_own_face_asks_to_hold_still_until_its_frames_are_taken() {
        assert_eq!(
            reference_caption(false, false, None, 8),
            "generated neutral"
        );
        assert_eq!(
            reference_caption(true, false, Some(3), 8),
            "your neutral face: hold still (3/8)"
        );
        assert_eq!(
            reference_caption(true, false, Some(8), 8),
            "your neutral face"
        );
        // Sent but not yet reached the model: nothing taken to count yet.
        assert_eq!(reference_caption(true, false, None, 8), "your neutral face");
        // Taken by itself: all its frames at once.
        assert_eq!(
            reference_caption(true, true, Some(8), 8),
            "your neutral face (taken by itself)"
        );
    }
}
