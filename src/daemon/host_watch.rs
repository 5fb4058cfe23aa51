//! This host's addresses as the daemon's loop sees them: one netlink dump per reconcile period (and
//! at once when asked, after a change), shared by every master. The netlink socket is reopened
//! after a failure, so a socket that died never fails every round forever.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use crate::network::netlink::Netlink;

use super::Signal;

/// Starts the watcher; `refresh` asks for a dump now.
pub fn spawn(period: Duration, tx: mpsc::Sender<Signal>) -> Arc<Notify> {
    let refresh = Arc::new(Notify::new());
    tokio::spawn(run(period, tx, refresh.clone()));
    refresh
}

async fn run(period: Duration, tx: mpsc::Sender<Signal>, refresh: Arc<Notify>) {
    let mut nl: Option<Netlink> = None;
    loop {
        let result = async {
            if nl.is_none() {
                nl = Some(Netlink::open()?);
            }
            nl.as_ref().expect("opened above").snapshot().await
        }
        .await;
        if result.is_err() {
            nl = None;
        }
        if tx.send(Signal::Host(result.map_err(|f| f.to_string()))).await.is_err() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = refresh.notified() => {}
        }
    }
}
