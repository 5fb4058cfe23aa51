//! This host's addresses as the daemon's loop sees them: one netlink dump per reconcile period,
//! shared by every master (the applier sends its own dump after a change). The netlink socket is
//! reopened after a failure, so a socket that died never fails every round forever.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::network::netlink::Reopening;

use super::core::Input;

/// Starts the watcher.
pub fn spawn(period: Duration, tx: mpsc::Sender<Input>) {
    tokio::spawn(run(period, tx));
}

async fn run(period: Duration, tx: mpsc::Sender<Input>) {
    let mut nl = Reopening::default();
    loop {
        let result = nl.snapshot().await;
        if tx.send(Input::Host(result.map_err(|f| f.to_string()))).await.is_err() {
            return;
        }
        tokio::time::sleep(period).await;
    }
}
