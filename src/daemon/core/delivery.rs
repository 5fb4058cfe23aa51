//! The core's side of a provider's API: it follows [`policy::delivery`] after every decision and
//! answer, asks the I/O loop to call or check ([`Effect::Deliver`], [`Effect::CheckDelivery`]),
//! stops what is under way when this host lets go, and books what the provider answered.

use std::time::Instant;

use super::master::Timer;
use super::{Core, Effect, Metric};
use crate::cloud::{CallError, Delivered};
use crate::policy::delivery::{self, Phase, Schedule, Step};

/// One master's delivery.
#[derive(Debug, Default)]
pub(super) struct State {
    /// Where it stands.
    pub phase: Phase,
    /// Numbers the calls: an answer to a call made before a stop is not this one's.
    pub generation: u64,
    /// The provider's last word on the holder.
    pub holder: Option<String>,
    /// The last failure, as people read it.
    pub error: Option<String>,
    /// The run of failed calls so far (its first failure, how many): kept across the retries'
    /// calls so that the back-off grows and ends at `retry_for`.
    pub failures: Option<(Instant, u32)>,
}

/// What came back from the provider (see [`super::Input::Delivery`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// A move and the question after it, or the question alone, answered.
    Answered(Delivered),
    /// It failed.
    Failed(CallError),
}

impl Core {
    /// Follows the rule for `name` at `now`: call, check, stop, or set the timer.
    pub(super) fn delivery_step(&mut self, name: &str, now: Instant) {
        // Runs after every decision: only what it needs is read from the config, nothing cloned.
        let Some(cloud) = self.config.masters.get(name).and_then(|m| m.cloud.as_ref()) else { return };
        if self.settings.dry_run {
            return;
        }
        let schedule = Schedule { retry_for: cloud.retry_for, verify_every: cloud.verify_every };
        let provider = cloud.provider.name();
        let st = self.masters.get_mut(name).expect("configured");
        let releasing = st.in_flight == Some(crate::policy::Act::Release);
        let entitled = delivery::entitled(st.belief.as_ref(), st.holding, releasing);
        let d = &mut st.delivery;
        let master = name.to_string();
        match delivery::step(entitled, d.phase, now, schedule) {
            Step::Call => {
                d.generation += 1;
                d.phase = Phase::Calling;
                st.timers.set(Timer::Delivery, None);
                self.effects.push(Effect::Deliver { master, generation: d.generation });
            }
            Step::Check => {
                d.generation += 1;
                d.phase = Phase::Checking;
                st.timers.set(Timer::Delivery, None);
                self.effects.push(Effect::CheckDelivery { master, generation: d.generation });
            }
            Step::Stop => {
                let was = std::mem::take(&mut d.phase);
                d.generation += 1;
                d.failures = None;
                st.timers.set(Timer::Delivery, None);
                if matches!(was, Phase::Calling | Phase::Checking) {
                    tracing::info!("master `{name}`: this host lets go; the call to {provider} under way is stopped");
                }
                self.effects.push(Effect::StopDelivery { master: master.clone() });
                self.effects.push(Effect::Metric(Metric::Delivered { master, delivered: false }));
            }
            Step::Wait(at) => st.timers.set(Timer::Delivery, at),
        }
    }

    /// The provider answered a call or a check of generation `generation`.
    pub(super) fn delivery_done(
        &mut self,
        name: &str,
        generation: u64,
        checked_only: bool,
        outcome: DeliveryOutcome,
        now: Instant,
    ) {
        let Some(provider) = self.config.masters.get(name).and_then(|m| m.cloud.as_ref()).map(|c| c.provider.name())
        else {
            return;
        };
        let Some(st) = self.masters.get_mut(name) else { return };
        let d = &mut st.delivery;
        if generation != d.generation || !matches!(d.phase, Phase::Calling | Phase::Checking) {
            tracing::debug!("master `{name}`: a {provider} answer of a stopped call arrived; ignored");
            return;
        }
        let master = name.to_string();
        let failed = |d: &mut State, retryable: bool| {
            let (first, attempts) = d.failures.unwrap_or((now, 0));
            d.failures = Some((first, attempts + 1));
            d.phase = Phase::Failed { first, at: now, attempts: attempts + 1, retryable };
        };
        match outcome {
            DeliveryOutcome::Answered(seen) if seen.here => {
                if !checked_only || d.error.is_some() || d.holder.as_deref() != Some(seen.holder.as_str()) {
                    tracing::info!(
                        "master `{name}`: {provider} delivers the VIPs here ({}; request ids: {})",
                        seen.holder,
                        ids(&seen.request_ids)
                    );
                }
                d.phase = Phase::Delivered { at: now };
                d.holder = Some(seen.holder);
                d.error = None;
                d.failures = None;
                self.effects.push(Effect::Metric(Metric::Delivered { master, delivered: true }));
            }
            DeliveryOutcome::Answered(seen) => {
                let why = if checked_only {
                    format!("{provider} names {} as the holder; delivering again", seen.holder)
                } else {
                    format!("after the call {provider} still names {} as the holder", seen.holder)
                };
                tracing::warn!(
                    "master `{name}`: bound, not delivered: {why} (request ids: {})",
                    ids(&seen.request_ids)
                );
                if checked_only {
                    // Another host's late call, or a change by hand: call again at once.
                    d.phase = Phase::Idle;
                    d.failures = None;
                } else {
                    failed(d, true);
                }
                d.holder = Some(seen.holder);
                d.error = Some(why);
                self.effects.push(Effect::Metric(Metric::Delivered { master, delivered: false }));
            }
            DeliveryOutcome::Failed(e) => {
                tracing::warn!("master `{name}`: bound, not delivered: {e}");
                failed(d, e.retryable);
                d.error = Some(e.to_string());
                self.effects.push(Effect::Metric(Metric::Delivered { master, delivered: false }));
            }
        }
        self.delivery_step(name, now);
    }

    /// How the master's delivery stands, for `vipctl status`; `None` without a cloud table.
    pub(super) fn delivery_status(&self, name: &str, now: Instant) -> Option<String> {
        let cloud = self.config.masters.get(name)?.cloud.as_ref()?;
        let st = &self.masters[name];
        let d = &st.delivery;
        let what = cloud.provider.moves();
        let since = |t: Instant| format!("{:.1} s ago", now.saturating_duration_since(t).as_secs_f64());
        Some(match d.phase {
            Phase::Idle if st.holding => format!("bound, not delivered: not this host's to deliver ({what})"),
            Phase::Idle => format!("{what}: not held here"),
            Phase::Calling => format!("bound, delivering: calling {}", cloud.provider.name()),
            Phase::Checking => format!("delivered ({what}); checking"),
            Phase::Delivered { at } => {
                format!(
                    "delivered ({what}; the provider names {}, checked {})",
                    d.holder.as_deref().unwrap_or("this host"),
                    since(at)
                )
            }
            Phase::Failed { attempts, at, .. } => format!(
                "bound, not delivered: {} ({attempts} failed call{} in a row, the last {})",
                d.error.as_deref().unwrap_or("no answer"),
                if attempts == 1 { "" } else { "s" },
                since(at)
            ),
        })
    }
}

fn ids(ids: &[String]) -> String {
    if ids.is_empty() { "none given".into() } else { ids.join(", ") }
}
