//! The layer that turns flags into running parts, and the only one that knows the command line:
//! `cli` (clap), then one runner per subcommand. Each builds plain data for the modules below it
//! — a [`crate::runtime::Runtime`], a [`crate::pipeline::setup::LiveSetup`], window options, a
//! training configuration — and returns errors with context; `main` prints them once.
pub mod bench;
pub mod cli;
pub mod doctor;
pub mod folder_eval;
pub mod infer;
pub mod learn;
pub mod live;
pub mod rescore;

use anyhow::Result;

use cli::Command;

/// Runs one subcommand.
pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Live(a) => live::run_live(&a),
        Command::Train(a) => learn::run_train(&a),
        Command::Eval(a) => learn::run_eval(&a),
        Command::Infer(a) => infer::run_infer(&a),
        Command::Calibrate(a) => learn::run_calibrate(&a),
        Command::Doctor(a) => doctor::run_doctor(&a),
        Command::Bench(a) => bench::run_bench(&a),
        Command::Data(cli::DataCommand::Pack(a)) => learn::run_pack(&a),
        #[cfg(feature = "window")]
        Command::Open(a) => crate::ui::run_browser(&a.session, a.frame, a.screenshot.clone()),
        #[cfg(not(feature = "window"))]
        Command::Open(_) => Err(crate::capture::CaptureError::NotBuilt("window").into()),
    }
}
