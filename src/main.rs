//! `dgcn`: parse flags, set up logging, dispatch; errors are printed once, as one line.
use clap::Parser;
use dgcn::cli::{Cli, Command};
use dgcn::commands;

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("DGCN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("dgcn=info,warn,ort=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command.unwrap_or(Command::Live) {
        Command::Live => Err(anyhow::anyhow!(
            "the live app is not built yet; use `dgcn infer IMAGE…` (see README)"
        )),
        Command::Train(a) => commands::run_train(&a),
        Command::Eval(a) => commands::run_eval(&a),
        Command::Infer(a) => commands::run_infer(&a),
        Command::Doctor(a) => commands::run_doctor(&a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
