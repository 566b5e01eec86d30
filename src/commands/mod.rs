//! One module per command group; each maps its flags onto a library's plain options and calls it.

mod config;
mod worker;

use clap::Subcommand;

use crate::app::Cli;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a worker: consume jobs, render, store results.
    Worker(worker::WorkerArgs),
    /// Show the configuration in effect, or every key with its default.
    #[command(subcommand)]
    Config(config::ConfigCommand),
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Worker(args) => worker::run(&cli.global, args).await,
        Command::Config(command) => config::run(&cli.global, command),
    }
}
