//! The live window's state and its frame-by-frame `ui`: takes the newest result without waiting,
//! keeps the selected face, smoothing and history, and (re)starts the pipeline on a background
//! thread when the user picks a source.
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver};
use egui::{Color32, ColorImage, Key, RichText, TextureOptions};

use super::browser::SessionBrowser;
use super::screenshot::{bars_layout, rect_px, ScreenshotPlan, Screenshotter};
use super::views::{self, ImageView, Smoother, Timeline};
use crate::capture::{list_cameras, CameraEntry, SourceSpec, VideoOptions};
use crate::cpu_use::CpuMeter;
use crate::face::AlignedFace;
use crate::frame::FrameResult;
use crate::labels::{Expression, NUM_CLASSES};
use crate::pipeline::setup::{LiveSetup, Started};
use crate::pipeline::{Control, OwnReference, Pipeline, PipelineConfig};
use crate::session::recorder::RecordItem;
use crate::session::Recorder;

struct Running {
    pipeline: Pipeline,
    spec: SourceSpec,
    device: String,
    ended: bool,
}

/// Per-stage latencies and frame rate, as shown in the status bar.
#[derive(Default)]
struct Stats {
    arrivals: VecDeque<Instant>,
    /// capture, detect, align, model, total (ms), smoothed.
    latency_ms: [f64; 5],
}

impl Stats {
    fn add(&mut self, r: &FrameResult) {
        let now = Instant::now();
        self.arrivals.push_back(now);
        while self
            .arrivals
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(1))
        {
            self.arrivals.pop_front();
        }
        let new = [
            r.frame.capture_ms,
            r.detect_ms,
            r.align_ms,
            r.model_ms,
            r.total_ms,
        ];
        for (s, n) in self.latency_ms.iter_mut().zip(new) {
            *s = if *s == 0.0 { n } else { 0.8 * *s + 0.2 * n };
        }
    }

    fn frames_per_s(&self) -> usize {
        self.arrivals.len()
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Severity {
    Info,
    Problem,
}

/// What the keys pressed this frame ask for.
#[derive(Debug, Default, PartialEq)]
pub struct KeyActions {
    /// N: take or drop the own neutral reference.
    pub own_reference: bool,
    /// R: raw or smoothed bars.
    pub raw: bool,
    /// Ctrl+R (Cmd+R): start or stop recording.
    pub record: bool,
    /// 1–8: that expression (model order); 0: no label.
    pub label: Option<Option<Expression>>,
}

pub fn key_actions(i: &egui::InputState) -> KeyActions {
    const DIGITS: [Key; 9] = [
        Key::Num0,
        Key::Num1,
        Key::Num2,
        Key::Num3,
        Key::Num4,
        Key::Num5,
        Key::Num6,
        Key::Num7,
        Key::Num8,
    ];
    KeyActions {
        own_reference: i.key_pressed(Key::N),
        raw: i.key_pressed(Key::R) && !i.modifiers.command,
        record: i.key_pressed(Key::R) && i.modifiers.command,
        label: DIGITS
            .iter()
            .position(|k| i.key_pressed(*k))
            .map(|d| d.checked_sub(1).and_then(Expression::from_index)),
    }
}

/// What the command line asks of the window.
#[derive(Debug, Clone, Default)]
pub struct WindowOptions {
    pub source: Option<SourceSpec>,
    pub screenshot: Option<ScreenshotPlan>,
    pub sessions_dir: PathBuf,
    pub record: Option<PathBuf>,
    pub labels: Option<HashMap<u64, Option<Expression>>>,
    pub record_frames: bool,
}

pub struct LiveApp {
    setup: LiveSetup,
    ctx: egui::Context,
    running: Option<Running>,
    starting: Option<(SourceSpec, Receiver<Result<Started, String>>)>,
    cameras: Vec<CameraEntry>,
    path_input: String,
    message: Option<(String, Severity)>,
    latest: Option<FrameResult>,
    frames_shown: u64,
    selected: usize,
    /// The tracker's id of the selected face (it follows that person, as the own reference does).
    selected_track: Option<u64>,
    smoother: Smoother,
    shown_probs: [f32; NUM_CLASSES],
    intensity_smoother: Smoother<1>,
    shown_intensity: f32,
    show_raw: bool,
    timeline: Timeline,
    own_reference: Option<AlignedFace>,
    frame_view: ImageView,
    query_view: ImageView,
    reference_view: ImageView,
    generated_view: ImageView,
    difference_view: ImageView,
    stats: Stats,
    /// The whole process's CPU use, in the status bar.
    cpu: CpuMeter,
    screenshot: Screenshotter,
    failure: Arc<Mutex<Option<String>>>,
    recorder: Option<Recorder>,
    /// The label in force (number keys 1–8; 0 clears).
    label: Option<Expression>,
    sessions_dir: PathBuf,
    record_frames: bool,
    /// `--record DIR`: start recording into DIR as soon as the source runs.
    record_into: Option<PathBuf>,
    /// `--labels CSV`: labels by frame number instead of keys.
    label_track: Option<HashMap<u64, Option<Expression>>>,
    session_input: String,
    browser: Option<SessionBrowser>,
}

impl LiveApp {
    pub fn new(
        ctx: &egui::Context,
        setup: LiveSetup,
        options: WindowOptions,
        failure: Arc<Mutex<Option<String>>>,
    ) -> LiveApp {
        let WindowOptions {
            source,
            screenshot,
            sessions_dir,
            record,
            labels,
            record_frames,
        } = options;
        let mut app = LiveApp {
            setup,
            ctx: ctx.clone(),
            running: None,
            starting: None,
            cameras: list_cameras(),
            path_input: String::new(),
            message: None,
            latest: None,
            frames_shown: 0,
            selected: 0,
            selected_track: None,
            smoother: Smoother::new(0.3),
            shown_probs: [0.0; NUM_CLASSES],
            intensity_smoother: Smoother::new(0.3),
            shown_intensity: 0.0,
            show_raw: false,
            timeline: Timeline::new(20.0),
            own_reference: None,
            frame_view: ImageView::new("frame", TextureOptions::LINEAR),
            query_view: ImageView::new("query", TextureOptions::NEAREST),
            reference_view: ImageView::new("reference", TextureOptions::NEAREST),
            generated_view: ImageView::new("generated", TextureOptions::NEAREST),
            difference_view: ImageView::new("difference", TextureOptions::NEAREST),
            stats: Stats::default(),
            cpu: CpuMeter::default(),
            screenshot: Screenshotter::new(screenshot),
            failure,
            recorder: None,
            label: None,
            sessions_dir,
            record_frames,
            record_into: record,
            label_track: labels,
            session_input: String::new(),
            browser: None,
        };
        let spec = match source {
            Some(s) => s,
            None => {
                let (spec, note) = app.setup.default_source();
                if let Some(n) = note {
                    tracing::warn!("{n}");
                    app.message = Some((n, Severity::Info));
                }
                spec
            }
        };
        app.start(spec);
        app
    }

    /// Starts `spec` on a background thread; the current source keeps running until it is ready.
    fn start(&mut self, spec: SourceSpec) {
        let (tx, rx) = bounded(1);
        let setup = self.setup.clone();
        let ctx = self.ctx.clone();
        let spec_t = spec.clone();
        let spawned = std::thread::Builder::new()
            .name("open-source".into())
            .spawn(move || {
                let notify_ctx = ctx.clone();
                let started = setup
                    .start(
                        &spec_t,
                        VideoOptions {
                            realtime: true,
                            looped: false,
                        },
                        PipelineConfig {
                            max_frames: None,
                            lossless: false,
                            notify: Some(Arc::new(move || notify_ctx.request_repaint())),
                            track: setup.track,
                        },
                    )
                    .map_err(|e| format!("{e:#}"));
                let _ = tx.send(started);
                ctx.request_repaint();
            });
        match spawned {
            Ok(_) => self.starting = Some((spec, rx)),
            Err(e) => self.message = Some((format!("could not start: {e}"), Severity::Problem)),
        }
    }

    /// Stops a pipeline off the UI thread (joining its threads may take a moment).
    fn retire(running: Running) {
        let _ = std::thread::Builder::new()
            .name("stop-source".into())
            .spawn(move || drop(running));
    }

    fn poll_start(&mut self) {
        let Some((spec, rx)) = &self.starting else {
            return;
        };
        let Ok(outcome) = rx.try_recv() else {
            return;
        };
        let spec = spec.clone();
        self.starting = None;
        match outcome {
            Ok(started) => {
                if let Some(old) = self.running.take() {
                    Self::retire(old);
                }
                tracing::info!(source = %started.pipeline.source_description, device = %started.device, "source started");
                self.running = Some(Running {
                    pipeline: started.pipeline,
                    spec: started.spec,
                    device: started.device,
                    ended: false,
                });
                self.timeline.clear();
                self.smoother.reset();
                self.intensity_smoother.reset();
                self.set_own_reference(None);
                if let Some(dir) = self.record_into.take() {
                    self.start_recording(dir);
                }
                if self
                    .message
                    .as_ref()
                    .is_some_and(|(_, s)| *s == Severity::Problem)
                {
                    self.message = None;
                }
            }
            Err(e) => {
                let fallback = !matches!(spec, SourceSpec::Demo) && self.running.is_none();
                let note = if fallback {
                    format!("{spec}: {e} — showing the demo clip instead.")
                } else {
                    format!("{spec}: {e}")
                };
                tracing::warn!("{note}");
                self.message = Some((note, Severity::Problem));
                if fallback {
                    self.start(SourceSpec::Demo);
                }
            }
        }
    }

    /// Takes the newest result (older ones are stale) and checks whether the source stopped.
    fn poll_results(&mut self) {
        let Some(running) = &mut self.running else {
            return;
        };
        if self.screenshot.is_taking() {
            return; // frozen until the screenshot is saved
        }
        let mut newest = None;
        while let Ok(r) = running.pipeline.results.try_recv() {
            self.stats.add(&r);
            if let Some(track) = &self.label_track {
                self.label = track.get(&r.frame.seq).copied().flatten();
            }
            if let Some(rec) = &self.recorder {
                let item = RecordItem {
                    result: r.clone(),
                    label: self.label,
                };
                rec.record(item, false);
            }
            newest = Some(r);
        }
        let failed = self.recorder.as_ref().and_then(|r| r.failure());
        if let Some(f) = failed {
            self.message = Some((f, Severity::Problem));
            self.stop_recording();
        }
        let Some(running) = &mut self.running else {
            return;
        };
        if let Ok(e) = running.pipeline.errors.try_recv() {
            let note = format!("{e}. The app keeps running: pick another source above.");
            tracing::warn!("{note}");
            self.message = Some((note, Severity::Problem));
            running.ended = true;
        } else if newest.is_none()
            && !running.ended
            && running.pipeline.results.is_empty()
            && running.pipeline.is_finished()
        {
            running.ended = true;
            self.message = Some((format!("{}: end of source.", running.spec), Severity::Info));
        }
        if let Some(r) = newest {
            self.show_result(r);
        }
    }

    fn show_result(&mut self, r: FrameResult) {
        self.frames_shown += 1;
        self.frame_view.set(
            &self.ctx,
            ColorImage::from_rgb(
                [r.frame.rgb.width() as usize, r.frame.rgb.height() as usize],
                r.frame.rgb.as_raw(),
            ),
        );
        // Follow the selected face by its track id, else take the largest.
        let previous = self.selected;
        self.selected = self
            .selected_track
            .and_then(|t| r.faces.iter().position(|f| f.detected.track == t))
            .unwrap_or(0);
        if previous != self.selected {
            self.smoother.reset();
            self.intensity_smoother.reset();
        }
        if let Some(face) = r.faces.get(self.selected) {
            self.selected_track = Some(face.detected.track);
            let p = &face.prediction;
            self.query_view
                .set(&self.ctx, views::grey_image(&face.aligned));
            self.reference_view
                .set(&self.ctx, views::grey_image(&p.reference));
            self.generated_view
                .set(&self.ctx, views::grey_image(&p.generated));
            self.difference_view.set(
                &self.ctx,
                views::heat_map_image(&face.aligned, &p.reference),
            );
            let smoothed = self.smoother.update(r.frame.time_s, &p.probs);
            self.shown_probs = if self.show_raw { p.probs } else { smoothed };
            let [smoothed] = self
                .intensity_smoother
                .update(r.frame.time_s, &[p.intensity]);
            self.shown_intensity = if self.show_raw { p.intensity } else { smoothed };
            self.timeline
                .push(r.frame.time_s, self.shown_probs, self.shown_intensity);
        } else {
            self.selected_track = None;
        }
        self.latest = Some(r);
    }

    fn set_own_reference(&mut self, own: Option<OwnReference>) {
        self.own_reference = own.as_ref().map(|o| o.face.clone());
        if let Some(r) = &self.running {
            if r.pipeline
                .control
                .try_send(Control::OwnReference(own))
                .is_err()
            {
                self.message = Some((
                    "the model is busy: press the button again".into(),
                    Severity::Problem,
                ));
            }
        }
    }

    fn toggle_own_reference(&mut self) {
        if self.own_reference.is_some() {
            self.set_own_reference(None);
            return;
        }
        let face = self
            .latest
            .as_ref()
            .and_then(|r| r.faces.get(self.selected));
        match face {
            Some(f) => {
                let own = OwnReference {
                    face: f.aligned.clone(),
                    track: f.detected.track,
                };
                self.set_own_reference(Some(own));
            }
            None => {
                self.message = Some((
                    "no face in view to take as your neutral face".into(),
                    Severity::Problem,
                ))
            }
        }
    }

    fn source_bar_ui(&mut self, ui: &mut egui::Ui) {
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
    fn status_bar_ui(&mut self, ui: &mut egui::Ui) -> Option<f64> {
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
    fn face_panel_ui(&mut self, ui: &mut egui::Ui) -> serde_json::Value {
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
        let own = self.own_reference.is_some();
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
            let caption = if own {
                "your neutral face"
            } else {
                "generated neutral"
            };
            layout.insert(
                "reference".into(),
                px(views::face_tile_ui(ui, &self.reference_view, caption, side)),
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
                views::face_tile_ui(ui, &self.generated_view, "generated neutral", side);
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
                    "take the selected face, as it is now, as this person's neutral reference",
                )
                .clicked()
            {
                self.toggle_own_reference();
            }
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

    fn handle_keys(&mut self, ctx: &egui::Context) {
        if ctx.memory(|m| m.focused().is_some()) {
            return; // typing a path
        }
        let keys = ctx.input(key_actions);
        if keys.own_reference {
            self.toggle_own_reference();
        }
        if keys.raw {
            self.show_raw = !self.show_raw;
        }
        if keys.record {
            self.toggle_recording();
        }
        if let Some(label) = keys.label {
            self.label = label;
        }
    }

    fn toggle_recording(&mut self) {
        if self.recorder.is_some() {
            self.stop_recording();
            return;
        }
        let dir = crate::session::new_session_dir(&self.sessions_dir);
        self.start_recording(dir);
    }

    fn start_recording(&mut self, dir: PathBuf) {
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

    fn stop_recording(&mut self) {
        let Some(r) = self.recorder.take() else {
            return;
        };
        match r.finish() {
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
            Err(e) => self.message = Some((format!("{e}"), Severity::Problem)),
        }
    }

    fn recording_bar_ui(&mut self, ui: &mut egui::Ui) {
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

impl eframe::App for LiveApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        self.poll_start();
        self.poll_results();
        self.handle_keys(&ctx);

        egui::Panel::top("source").show(ui, |ui| {
            ui.add_space(4.0);
            self.source_bar_ui(ui);
            self.recording_bar_ui(ui);
            ui.add_space(4.0);
        });
        if self.browser.is_some() {
            let mut close = false;
            egui::CentralPanel::default_margins().show(ui, |ui| {
                if ui.button("◀ Back to live").clicked() {
                    close = true;
                }
                if let Some(b) = &mut self.browser {
                    b.ui(ui);
                }
            });
            if close {
                self.browser = None;
            }
            ctx.request_repaint_after(Duration::from_millis(250));
            return;
        }
        let cpu_cores = egui::Panel::bottom("status")
            .show(ui, |ui| self.status_bar_ui(ui))
            .inner;
        let mut layout = serde_json::Value::Null;
        egui::Panel::right("face")
            .resizable(true)
            .default_size(660.0)
            .min_size(420.0)
            .show(ui, |ui| {
                layout = self.face_panel_ui(ui);
            });
        egui::CentralPanel::default_margins().show(ui, |ui| {
            if self.recorder.is_some() || self.label.is_some() {
                let (text, color) = match self.label {
                    Some(l) => (
                        format!("label: {} ({})", l.name(), l.index() + 1),
                        views::expression_color(l),
                    ),
                    None => ("no label (keys 1–8 set one)".into(), Color32::GRAY),
                };
                ui.label(RichText::new(text).size(34.0).strong().color(color));
            }
            if let Some((text, severity)) = &self.message {
                let color = match severity {
                    Severity::Info => ui.visuals().text_color(),
                    Severity::Problem => Color32::from_rgb(255, 120, 90),
                };
                ui.label(RichText::new(text).color(color).size(16.0));
            }
            let (size, faces) = match &self.latest {
                Some(r) => (
                    [r.frame.rgb.width() as usize, r.frame.rgb.height() as usize],
                    r.faces.as_slice(),
                ),
                None => ([640, 480], &[][..]),
            };
            let (rect, clicked) =
                views::frame_view_ui(ui, &self.frame_view, size, faces, self.selected);
            if let Some(i) = clicked {
                if let Some(f) = faces.get(i) {
                    self.selected_track = Some(f.detected.track);
                    self.selected = i;
                    self.smoother.reset();
                    self.intensity_smoother.reset();
                }
            }
            if let Some(m) = layout.as_object_mut() {
                m.insert("frame".into(), rect_px(rect, ctx.pixels_per_point()));
                m.insert("faces".into(), faces.len().into());
                m.insert("cpu_cores".into(), serde_json::json!(cpu_cores));
            }
        });
        // A source that ends before that many frames were shown would otherwise never be
        // photographed (and the window never close): take it at the source's end.
        let source_ended = self.running.as_ref().is_some_and(|r| r.ended);
        let ready = self.frames_shown >= self.screenshot.after_frames() || source_ended;
        if let Err(e) = self.screenshot.step(&ctx, ready, layout) {
            if let Ok(mut f) = self.failure.lock() {
                *f = Some(format!("{e:#}"));
            }
        }
        // A heartbeat for the status bar; results themselves request repaints.
        ctx.request_repaint_after(Duration::from_millis(250));
    }
}

impl Drop for LiveApp {
    fn drop(&mut self) {
        self.stop_recording();
        // Stop every thread and release the camera before the process ends.
        if let Some(r) = self.running.take() {
            drop(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actions_for(key: Key, modifiers: egui::Modifiers) -> KeyActions {
        let ctx = egui::Context::default();
        let input = egui::RawInput {
            events: vec![
                egui::Event::ModifiersChanged(modifiers),
                egui::Event::Key {
                    key,
                    physical_key: None,
                    pressed: true,
                    repeat: false,
                    modifiers,
                },
            ],
            ..Default::default()
        };
        let mut out = KeyActions::default();
        let _ = ctx.run_ui(input, |ui| out = ui.ctx().input(key_actions));
        out
    }

    #[test]
    fn keys_set_labels_and_toggle_recording() {
        let none = egui::Modifiers::NONE;
        assert_eq!(
            actions_for(Key::Num2, none).label,
            Some(Some(Expression::Happy))
        );
        assert_eq!(
            actions_for(Key::Num8, none).label,
            Some(Some(Expression::Contempt))
        );
        assert_eq!(actions_for(Key::Num0, none).label, Some(None));
        assert_eq!(actions_for(Key::Num9, none).label, None);
        let ctrl_r = actions_for(Key::R, egui::Modifiers::COMMAND);
        assert!(ctrl_r.record && !ctrl_r.raw);
        let r = actions_for(Key::R, none);
        assert!(r.raw && !r.record);
        assert!(actions_for(Key::N, none).own_reference);
    }
}
