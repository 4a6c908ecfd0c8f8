//! The live window (eframe/egui), last stage of the pipeline: it drains the pipeline's results
//! without waiting, shows the frame with its faces, the selected face's query, reference and
//! difference, the expression bars and timeline, and lets the user switch sources.
mod app;
pub mod browser;
pub mod screenshot;
pub mod views;

use std::sync::{Arc, Mutex};

use anyhow::Result;

use crate::cli::LiveArgs;
use crate::live::LiveSetup;

pub use app::{LiveApp, WindowOptions};
pub use screenshot::ScreenshotPlan;

/// Opens the window and runs until it is closed.
pub fn run_window(args: &LiveArgs) -> Result<()> {
    let setup = LiveSetup::from_args(args);
    let failure: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let plan = args.screenshot.clone().map(|path| ScreenshotPlan {
        path,
        after_frames: args.screenshot_after,
    });
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("dgcn — facial expressions (GCNet)")
            .with_inner_size([1400.0, 880.0])
            .with_min_inner_size([900.0, 600.0]),
        ..Default::default()
    };
    let source = args.source.clone();
    let labels = match &args.labels {
        Some(p) => Some(crate::rescore::read_label_csv(p)?),
        None => None,
    };
    let args = args.clone();
    let sessions_dir = args.sessions_dir.clone().unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join("dgcn-sessions")
    });
    let failure_app = failure.clone();
    eframe::run_native(
        "dgcn",
        options,
        Box::new(move |cc| {
            Ok(Box::new(LiveApp::new(
                &cc.egui_ctx,
                setup,
                WindowOptions {
                    source,
                    screenshot: plan,
                    sessions_dir,
                    record: args.record.clone(),
                    labels,
                    record_frames: args.record_frames,
                },
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
pub fn run_browser(args: &crate::cli::OpenArgs) -> Result<()> {
    let mut browser = browser::SessionBrowser::open(&args.session)?;
    if let Some(frame) = args.frame {
        browser.go_to_frame(frame);
    }
    let failure: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let plan = args.screenshot.clone().map(|path| ScreenshotPlan {
        path,
        after_frames: 5,
    });
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title(format!("dgcn — session {}", args.session.display()))
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
