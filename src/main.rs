//! `dgcn`: parse flags, set up logging, dispatch; errors are printed once, as one line.
use clap::Parser;
use dgcn::cli::{Cli, Command};
use dgcn::commands;

fn main() {
    let mut cli = Cli::parse();
    if cli.command.is_none() {
        cli = Cli::parse_from(["dgcn", "live"]);
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("DGCN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("dgcn=info,warn,ort=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let Some(command) = cli.command else {
        return;
    };
    let result = match command {
        Command::Live(a) => commands::run_live(&a),
        Command::Train(a) => commands::run_train(&a),
        Command::Eval(a) => commands::run_eval(&a),
        Command::Infer(a) => commands::run_infer(&a),
        Command::Calibrate(a) => commands::run_calibrate(&a),
        Command::Doctor(a) => commands::run_doctor(&a),
        Command::Bench(a) => dgcn::bench::run_bench(&a),
        Command::Open(a) => dgcn::ui::run_browser(&a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
