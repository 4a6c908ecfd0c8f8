//! The live window (eframe/egui), last stage of the pipeline: it drains the pipeline's results
//! without waiting, shows the frame with its faces, the selected face's query, reference and
//! difference, the expression bars and timeline, and lets the user switch sources.
pub mod browser;
mod live;
pub mod screenshot;
pub mod views;

use std::sync::{Arc, Mutex};

use anyhow::Result;

use crate::pipeline::setup::LiveSetup;

pub use live::{LiveApp, WindowOptions};
pub use screenshot::ScreenshotPlan;

/// Opens the window and runs until it is closed.
pub fn run_window(setup: LiveSetup, window: WindowOptions) -> Result<()> {
    let failure: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("dgcn — facial expressions (GCNet)")
            .with_inner_size([1400.0, 880.0])
            .with_min_inner_size([900.0, 600.0]),
        ..Default::default()
    };
    let failure_app = failure.clone();
    eframe::run_native(
        "dgcn",
        options,
        Box::new(move |cc| {
            Ok(Box::new(LiveApp::new(
                &cc.egui_ctx,
                setup,
                window,
                failure_app,
            )))
        }),
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "could not open the window ({e}); without a display, use `dgcn live --headless`"
        )
    })?;
    let failed = failure.lock().ok().and_then(|mut f| f.take());
    match failed {
        Some(e) => anyhow::bail!("{e}"),
        None => Ok(()),
    }
}

/// `dgcn open SESSION`: the session browser in its own window.
/// `dgcn open SESSION`: the session browser in its own window, at `frame` when given;
/// `screenshot` saves the window after a few frames and closes it.
pub fn run_browser(
    session: &std::path::Path,
    frame: Option<u64>,
    screenshot: Option<std::path::PathBuf>,
) -> Result<()> {
    let mut browser = browser::SessionBrowser::open(session)?;
    if let Some(frame) = frame {
        browser.go_to_frame(frame);
    }
    let failure: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let plan = screenshot.map(|path| ScreenshotPlan {
        path,
        after_frames: 5,
    });
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title(format!("dgcn — session {}", session.display()))
            .with_inner_size([1400.0, 900.0]),
        ..Default::default()
    };
    let failure_app = failure.clone();
    eframe::run_native(
        "dgcn-session",
        options,
        Box::new(move |_cc| {
            Ok(Box::new(BrowserApp {
                browser,
                screenshot: screenshot::Screenshotter::new(plan),
                frames_drawn: 0,
                failure: failure_app,
            }))
        }),
    )
    .map_err(|e| anyhow::anyhow!("could not open the window ({e})"))?;
    let failed = failure.lock().ok().and_then(|mut f| f.take());
    match failed {
        Some(e) => anyhow::bail!("{e}"),
        None => Ok(()),
    }
}

struct BrowserApp {
    browser: browser::SessionBrowser,
    screenshot: screenshot::Screenshotter,
    frames_drawn: u64,
    failure: Arc<Mutex<Option<String>>>,
}

impl eframe::App for BrowserApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        let mut layout = serde_json::Value::Null;
        egui::CentralPanel::default_margins().show(ui, |ui| {
            layout = self.browser.ui(ui);
        });
        self.frames_drawn += 1;
        let ready = self.frames_drawn >= self.screenshot.after_frames();
        if let Err(e) = self.screenshot.step(&ctx, ready, layout) {
            if let Ok(mut f) = self.failure.lock() {
                *f = Some(format!("{e:#}"));
            }
        }
        if self.frames_drawn < 10 {
            ctx.request_repaint();
        }
    }
}
