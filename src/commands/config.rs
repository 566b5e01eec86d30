use clap::Subcommand;
use reverie_shared::config::Config;

use crate::app::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// The configuration after every layer, secrets masked, as TOML.
    Show,
    /// Every key, its environment variable, default and meaning (Markdown).
    Keys,
}

pub fn run(global: &GlobalArgs, command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Show => print!("{}", global.load_config()?.to_redacted_toml()),
        ConfigCommand::Keys => print!("{}", Config::keys_markdown()),
    }
    Ok(())
}
