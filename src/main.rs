//! `reverie`: one binary for every role (scheduler, worker) and every client command, so one container
//! image serves the whole farm. This file only parses the command line and hands over to `commands`.

mod app;
mod commands;
mod library_api;

use clap::Parser;

use crate::app::GlobalArgs;
use crate::commands::Command;

/// mimalloc instead of the system allocator: the farm's hot paths (AMQP frames, S3 requests, JSON
/// records) allocate many small short-lived buffers, where glibc's malloc took about a tenth of the
/// process's CPU under load (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "reverie",
    version,
    about = "Personalised images from your own photo library."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match commands::run(&cli.global, cli.command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // One clear line (with its causes) instead of a panic or a debug dump.
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
