//! SIGINT and SIGTERM, for whoever stops on them: the hub node (`cli`) and the dashboard's link,
//! which closes the window on them. Uses tokio only.

/// Resolves on SIGINT (Ctrl-C) or SIGTERM; an error when the handlers cannot be installed.
pub async fn wait_for_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    tracing::info!("signal received");
    Ok(())
}
