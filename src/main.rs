//! `dgcn`: parse flags, set up logging, dispatch; errors are printed once, as one line.
use clap::Parser;
use dgcn::app::cli::Cli;

fn main() {
    let heap = dgcn::runtime::keep_tensor_buffers_in_heap();
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
    if !heap {
        tracing::warn!(
            "the allocator kept its default thresholds: tensors may be slower to allocate"
        );
    }
    let Some(command) = cli.command else {
        return;
    };
    let result = dgcn::app::run(command);
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
