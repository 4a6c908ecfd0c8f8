//! The live window (eframe/egui), last stage of the pipeline: it drains the pipeline's results
//! without waiting, shows the frame with its faces, the selected face's query, reference and
//! difference, the expression bars and timeline, and lets the user switch sources.
mod app;
pub mod views;

use std::sync::{Arc, Mutex};

use anyhow::Result;

use crate::cli::LiveArgs;
use crate::live::LiveSetup;

pub use app::{LiveApp, ScreenshotPlan};

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
    let failure_app = failure.clone();
    eframe::run_native(
        "dgcn",
        options,
        Box::new(move |cc| {
            Ok(Box::new(LiveApp::new(
                &cc.egui_ctx,
                setup,
                source,
                plan,
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
