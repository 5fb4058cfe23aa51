//! Runs the provider API calls the core asks for ([`super::core::Effect::Deliver`],
//! [`super::core::Effect::CheckDelivery`]): one under way per master, each answered as an
//! [`Input::Delivery`], each written down as a `cloud` record with the provider's request ids, and
//! stopped when this host lets go.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::core::{DeliveryOutcome, Input};
use super::metrics::Metrics;
use crate::cloud::Api;
use crate::config::Config;
use crate::record::{self, Actor, Record};

/// Every master's provider API, and the call under way for each.
pub struct Clouds {
    apis: BTreeMap<String, Arc<Api>>,
    under_way: HashMap<String, AbortHandle>,
    tx: mpsc::Sender<Input>,
    metrics: Arc<Metrics>,
}

impl Clouds {
    /// The APIs of the masters with a `[masters.NAME.cloud]` table.
    pub fn new(config: &Config, tx: mpsc::Sender<Input>, metrics: Arc<Metrics>) -> Result<Clouds, String> {
        let mut apis = BTreeMap::new();
        for m in config.masters.values() {
            if let Some(api) = Api::of(m)? {
                apis.insert(m.name.clone(), Arc::new(api));
            }
        }
        Ok(Clouds { apis, under_way: HashMap::new(), tx, metrics })
    }

    /// Starts a move (or with `checked_only` a question) for `master`, replacing any under way.
    pub fn start(&mut self, master: String, generation: u64, checked_only: bool) {
        let Some(api) = self.apis.get(&master).cloned() else { return };
        let (tx, metrics) = (self.tx.clone(), self.metrics.clone());
        let name = master.clone();
        let task = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let result = if checked_only { api.check().await } else { api.deliver().await };
            let call = if checked_only { "check" } else { "deliver" };
            let outcome = match &result {
                Ok(d) if d.here => "delivered",
                Ok(_) => "elsewhere",
                Err(_) => "error",
            };
            let labels = vec![
                ("master".to_string(), name.clone()),
                ("call".to_string(), call.to_string()),
                ("outcome".to_string(), outcome.to_string()),
            ];
            metrics.cloud_calls.get_or_create(&labels).inc();
            // A check that finds things as they were is not worth a line; every move and every
            // surprise is.
            if !checked_only || outcome != "delivered" {
                let text = match &result {
                    Ok(d) => format!("{call}: holder {}; request ids: {}", d.holder, d.request_ids.join(", ")),
                    Err(_) => format!("{call}: bound, not delivered"),
                };
                let mut r = Record::note(record::Event::Cloud, Actor::Watch, &name, outcome, text);
                r.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
                if let Err(e) = &result {
                    r = r.failed(e);
                }
                r.emit();
            }
            let outcome = match result {
                Ok(d) => DeliveryOutcome::Answered(d),
                Err(e) => DeliveryOutcome::Failed(e),
            };
            let _ = tx.send(Input::Delivery { master: name, generation, checked_only, outcome }).await;
        });
        if let Some(old) = self.under_way.insert(master, task.abort_handle()) {
            old.abort();
        }
    }

    /// Stops the call under way for `master`: the request is dropped, and its answer never reaches
    /// the core.
    pub fn stop(&mut self, master: &str) {
        if let Some(h) = self.under_way.remove(master) {
            h.abort();
        }
    }
}
