use reverie_scheduler::Scheduler;

use crate::app::{self, GlobalArgs};

/// `reverie scheduler`: requests over AMQP and HTTP, plans, jobs, events, replies.
pub async fn run(global: &GlobalArgs) -> anyhow::Result<()> {
    let config = app::start(global)?;
    Scheduler::run_from_config(&config, app::shutdown_signal()).await?;
    Ok(())
}
