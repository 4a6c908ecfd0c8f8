//! Recording a session from the window: start, stop, the recording bar and the session browser
//! entry.
use super::*;

impl LiveApp {
    pub(super) fn toggle_recording(&mut self) {
        if self.recorder.is_some() {
            self.stop_recording();
            return;
        }
        let dir = crate::session::new_session_dir(&self.sessions_dir);
        self.start_recording(dir);
    }

    pub(super) fn start_recording(&mut self, dir: PathBuf) {
        let Some(running) = &self.running else {
            self.message = Some(("no source to record".into(), Severity::Problem));
            return;
        };
        let started = crate::session::Manifest::new(
            &self.setup.weights,
            &running.spec,
            &running.pipeline.source_description,
            &running.device,
            Some(if self.label_track.is_some() {
                "--labels CSV".into()
            } else {
                "keys 1–8 in the live window".into()
            }),
        )
        .map(|m| m.with_number_format(running.format))
        .and_then(|m| Ok(Recorder::start(&dir, m, self.record_frames)?));
        match started {
            Ok(r) => {
                tracing::info!(session = %dir.display(), "recording");
                self.recorder = Some(r);
            }
            Err(e) => {
                self.message = Some((
                    format!("could not start recording: {e:#}"),
                    Severity::Problem,
                ))
            }
        }
    }

    /// Stops recording now (no more rows are taken) and lets a helper thread write the rest
    /// and close the session, so the window does not wait on the disk.
    pub(super) fn stop_recording(&mut self) {
        let Some(r) = self.recorder.take() else {
            return;
        };
        let (tx, rx) = bounded(1);
        let spawned = self.spawn_helper("finish-recording", move || {
            let _ = tx.send(r.finish().map_err(|e| e.to_string()));
        });
        match spawned {
            Ok(()) => self.finishing = Some(rx),
            Err(e) => {
                // The closure and the recorder in it were dropped: its rows are written, but
                // the manifest gets no end time.
                self.message = Some((
                    format!("recording stopped; could not start a thread to close it: {e}"),
                    Severity::Problem,
                ));
            }
        }
    }

    /// The outcome of a recording a helper finished, once there is one.
    pub(super) fn poll_finishing(&mut self) {
        let Some(rx) = &self.finishing else {
            return;
        };
        let outcome = match rx.try_recv() {
            Ok(o) => o,
            Err(crossbeam_channel::TryRecvError::Empty) => return,
            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                Err("the thread closing the recording ended without a word".into())
            }
        };
        self.finishing = None;
        match outcome {
            Ok(s) => {
                let note = format!(
                    "recorded {} frames ({} rows, {} dropped) in {}",
                    s.frames,
                    s.rows,
                    s.dropped,
                    s.dir.display()
                );
                tracing::info!("{note}");
                self.session_input = s.dir.display().to_string();
                if s.stopped_by.is_none() {
                    self.message = Some((note, Severity::Info));
                }
            }
            Err(e) => self.message = Some((e, Severity::Problem)),
        }
    }

    pub(super) fn recording_bar_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            match &self.recorder {
                Some(r) => {
                    if ui.button("■ Stop recording (Ctrl+R)").clicked() {
                        self.stop_recording();
                        return;
                    }
                    ui.label(
                        RichText::new(format!("● REC {} rows, {} dropped", r.rows(), r.dropped()))
                            .color(Color32::from_rgb(255, 80, 80)),
                    );
                    ui.label(r.dir().display().to_string());
                }
                None => {
                    if ui
                        .button("● Record (Ctrl+R)")
                        .on_hover_text(format!(
                            "record a session into {}; keys 1–8 set the label, 0 clears it",
                            self.sessions_dir.display()
                        ))
                        .clicked()
                    {
                        self.toggle_recording();
                    }
                    ui.checkbox(&mut self.record_frames, "with whole frames (JPEG)");
                }
            }
            ui.separator();
            ui.label("Session:");
            ui.add(
                egui::TextEdit::singleline(&mut self.session_input)
                    .hint_text("session folder")
                    .desired_width(260.0),
            );
            if ui.button("Browse").clicked() {
                match SessionBrowser::open(Path::new(self.session_input.trim())) {
                    Ok(b) => self.browser = Some(b),
                    Err(e) => self.message = Some((format!("{e:#}"), Severity::Problem)),
                }
            }
        });
    }
}
