//! `/health`, `/healthz` and `/ready`.
//!
//! A component (collector) is healthy when it has never run yet ("pending": `last_run` and
//! `last_success` are null), or its last run succeeded and no background run is overdue. The
//! overall status is `healthy` when every component is healthy (or there are none),
//! `unhealthy` when there are components and none is healthy, `degraded` otherwise.

use serde::Serialize;

use crate::collector::Mode;
use crate::runtime::{unix_secs, Runtime, Slot};

#[derive(Debug, Serialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Healthy,
    Degraded,
    Unhealthy,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub status: Status,
    pub version: &'static str,
    /// `--demo`: the values are demo data, not this machine's.
    pub demo: bool,
    pub uptime_seconds: f64,
    pub components: std::collections::BTreeMap<&'static str, Component>,
}

#[derive(Debug, Serialize)]
pub struct Component {
    pub healthy: bool,
    /// `pending` (never ran), `ok`, `failed`, or `overdue` (a background run is past its
    /// timeout).
    pub state: &'static str,
    /// `on_scrape` or `background`.
    pub mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    /// Unix seconds when the last run ended.
    pub last_run: Option<f64>,
    pub last_success: Option<f64>,
    pub last_duration_seconds: Option<f64>,
    pub consecutive_failures: u64,
    pub item_errors_total: u64,
    /// Most recent last, at most 10.
    pub errors: Vec<ErrorEntry>,
    /// What the collector says about itself ([`crate::Collector::detail`]), e.g. which
    /// backend it uses and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ErrorEntry {
    pub time: f64,
    pub message: String,
}

pub fn component(slot: &Slot) -> Component {
    let st = slot.state();
    let overdue = Slot::overdue(&st, slot.mode);
    let healthy = slot.healthy(&st);
    let state = match (st.last_ok, overdue) {
        (_, Some(_)) => "overdue",
        (None, None) => "pending",
        (Some(true), None) => "ok",
        (Some(false), None) => "failed",
    };
    let (mode, interval, timeout) = match slot.mode {
        Mode::OnScrape => ("on_scrape", None, None),
        Mode::Background { interval, timeout } => (
            "background",
            Some(interval.as_secs_f64()),
            Some(timeout.as_secs_f64()),
        ),
    };
    let mut errors: Vec<ErrorEntry> = st
        .errors
        .iter()
        .map(|e| ErrorEntry {
            time: unix_secs(e.time),
            message: e.message.clone(),
        })
        .collect();
    if let Some(running) = overdue {
        errors.push(ErrorEntry {
            time: unix_secs(std::time::SystemTime::now()),
            message: format!(
                "run in progress for {:.1}s, past its {:.1}s timeout",
                running.as_secs_f64(),
                timeout.unwrap_or_default()
            ),
        });
        if errors.len() > crate::runtime::MAX_ERRORS {
            errors.remove(0);
        }
    }
    Component {
        healthy,
        state,
        mode,
        interval_seconds: interval,
        timeout_seconds: timeout,
        last_run: st.last_run.map(unix_secs),
        last_success: st.last_success.map(unix_secs),
        last_duration_seconds: st.last_duration.map(|d| d.as_secs_f64()),
        consecutive_failures: st.consecutive_failures + u64::from(overdue.is_some()),
        item_errors_total: st.item_errors_total,
        errors,
        detail: slot.collector.detail(),
    }
}

pub fn overall(components: impl IntoIterator<Item = bool>) -> Status {
    let (mut total, mut healthy) = (0usize, 0usize);
    for h in components {
        total += 1;
        healthy += usize::from(h);
    }
    if healthy == total {
        Status::Healthy
    } else if healthy == 0 {
        Status::Unhealthy
    } else {
        Status::Degraded
    }
}

pub fn report(rt: &Runtime) -> Report {
    let components: std::collections::BTreeMap<_, _> =
        rt.slots.iter().map(|s| (s.name, component(s))).collect();
    Report {
        status: overall(components.values().map(|c| c.healthy)),
        version: rt.id.version,
        demo: rt.id.demo,
        uptime_seconds: (rt.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        components,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overall_status() {
        assert_eq!(overall([]), Status::Healthy);
        assert_eq!(overall([true, true]), Status::Healthy);
        assert_eq!(overall([true, false]), Status::Degraded);
        assert_eq!(overall([false]), Status::Unhealthy);
        assert_eq!(overall([false, false]), Status::Unhealthy);
    }

    #[test]
    fn status_serializes_lowercase() {
        assert_eq!(
            serde_json::to_string(&Status::Degraded).unwrap(),
            "\"degraded\""
        );
    }
}
