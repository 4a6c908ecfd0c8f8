//! The live window: its state and the frame-by-frame layout here, each concern in its own file —
//! `sources` (starting, retiring and draining pipelines), `selection` (the selected face by track
//! id, smoothing, timeline, own reference), `recording`, `panels` (source bar, status bar, face
//! panel) and `keys`. The files extend [`LiveApp`] and share this module's imports.
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver};
use egui::{Color32, ColorImage, Key, RichText, TextureOptions};

mod keys;
mod panels;
mod recording;
mod selection;
mod sources;

use crate::capture::{list_cameras, CameraEntry, SourceSpec, VideoOptions};
use crate::cpu_use::CpuMeter;
use crate::face::AlignedFace;
use crate::frame::FrameResult;
use crate::labels::{Expression, NUM_CLASSES};
use crate::pipeline::setup::{LiveSetup, Started};
use crate::pipeline::{AutoNeutralRule, Control, OwnReference, Pipeline, PipelineConfig};
use crate::session::recorder::RecordItem;
use crate::session::Recorder;
use crate::ui::browser::SessionBrowser;
use crate::ui::screenshot::{bars_layout, rect_px, ScreenshotPlan, Screenshotter};
use crate::ui::views::{self, ImageView, Smoother, Timeline};

struct Running {
    pipeline: Pipeline,
    spec: SourceSpec,
    device: String,
    /// The network's number format ("f32" or "bf16"), recorded with sessions.
    format: &'static str,
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
    /// The own neutral face the user took (N); one taken by itself is known from the results.
    own_reference: Option<AlignedFace>,
    /// Whether the pipeline takes the own neutral face by itself (`--no-auto-neutral`: no).
    auto_neutral: bool,
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
    /// Threads that open or stop a source or finish a recording off the UI thread: joined once
    /// they are done, and all of them before the window goes away.
    helpers: Vec<std::thread::JoinHandle<()>>,
    /// A recording being finished by a helper: its summary (or error) arrives here.
    finishing: Option<Receiver<Result<crate::session::recorder::RecordSummary, String>>>,
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
        let auto_neutral = setup.auto_neutral.is_some();
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
            auto_neutral,
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
            helpers: Vec::new(),
            finishing: None,
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
}

impl eframe::App for LiveApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        self.poll_start();
        self.poll_results();
        self.reap_helpers();
        self.poll_finishing();
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
        // Stop every thread and release the camera before the process ends; no helper outlives
        // the window (a recording being finished is written to the end).
        if let Some(r) = self.running.take() {
            drop(r);
        }
        for h in self.helpers.drain(..) {
            let _ = h.join();
        }
        self.poll_finishing();
    }
}
