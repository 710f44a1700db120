//! The counters and gauges in memory: loaded from the database once at start, then moved by
//! each committed batch. A scrape reads only this, so it costs the same whatever the history.

use std::collections::{BTreeMap, HashMap};

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::store::{Counts, Delta, Outcomes, SeriesKey, Store};

/// A 5-hour block (ccusage's definition: starts at its first event floored to the hour, ends
/// 5 h later; an event 5 h or more after the previous one, or after the block's end, starts a
/// new block).
pub const BLOCK_MS: i64 = 5 * 3600 * 1000;
/// How far back events are kept for the block gauges.
const EVENTS_KEEP_MS: i64 = 48 * 3600 * 1000;
/// How far back days are kept for the day and month gauges.
const DAYS_KEEP: i32 = 62;

/// What the scrape serves.
#[derive(Debug)]
pub struct Live {
    pub tz: TimeZone,
    /// Whether the usage families carry a `user` label (decided at start, for the run). When
    /// not, every key below has the user `""`.
    pub label_user: bool,
    pub series: BTreeMap<SeriesKey, Counts>,
    pub unpriced: BTreeMap<String, u64>,
    pub lines: Outcomes,
    /// (local date of the event, model, project, user) -> (cost, tokens).
    pub days: HashMap<(Date, String, String, String), (f64, u64)>,
    /// Event time (ms) -> (tokens, cost), the last 48 h.
    pub events: BTreeMap<i64, (u64, f64)>,
    /// (project, user) -> last event time (ms).
    pub last_activity: BTreeMap<(String, String), i64>,
    pub files_followed: u64,
    pub lag_seconds: f64,
    /// Times the database was found deleted, replaced or damaged and rebuilt, since start.
    pub database_rebuilds: u64,
    /// The last block of `events`, worked out again only after `events` changed, so that a
    /// scrape's cost does not grow with the number of recent requests.
    last_block: std::sync::Mutex<Option<(u64, Option<Block>)>>,
    /// Changes to `events` so far (the key of `last_block`).
    events_version: u64,
}

/// The active block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Block {
    pub start_ms: i64,
    pub end_ms: i64,
    pub first_ms: i64,
    pub last_ms: i64,
    pub tokens: u64,
    pub cost: f64,
}

impl Block {
    /// Cost at the block's end at the current burn rate (cost per minute between its first
    /// and last event; with a single event, no rate: the cost so far).
    pub fn projected_cost(&self, now_ms: i64) -> f64 {
        let span = self.last_ms - self.first_ms;
        if span <= 0 {
            return self.cost;
        }
        let rate = self.cost / span as f64;
        self.cost + rate * (self.end_ms - now_ms).max(0) as f64
    }
}

/// (cost, tokens) per (model, project, user).
pub type ByModel = BTreeMap<(String, String, String), (f64, u64)>;

/// Split events (sorted by time) into blocks.
pub fn blocks(events: impl IntoIterator<Item = (i64, u64, f64)>) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::new();
    for (ts, tokens, cost) in events {
        match out.last_mut() {
            Some(b) if ts < b.end_ms && ts - b.last_ms < BLOCK_MS => {
                b.last_ms = ts;
                b.tokens += tokens;
                b.cost += cost;
            }
            _ => {
                let start = ts.div_euclid(3_600_000) * 3_600_000;
                out.push(Block {
                    start_ms: start,
                    end_ms: start + BLOCK_MS,
                    first_ms: ts,
                    last_ms: ts,
                    tokens,
                    cost,
                });
            }
        }
    }
    out
}

impl Live {
    /// Empty; `label_user`: whether series are kept (and served) by user.
    pub fn new(tz: TimeZone, label_user: bool) -> Live {
        Live {
            tz,
            label_user,
            series: BTreeMap::new(),
            unpriced: BTreeMap::new(),
            lines: [0; 4],
            days: HashMap::new(),
            events: BTreeMap::new(),
            last_activity: BTreeMap::new(),
            files_followed: 0,
            lag_seconds: 0.0,
            database_rebuilds: 0,
            last_block: std::sync::Mutex::new(None),
            events_version: 0,
        }
    }

    /// From the database: persisted counters and the recent requests.
    pub fn load(
        store: &Store,
        tz: TimeZone,
        label_user: bool,
        now_ms: i64,
    ) -> anyhow::Result<Live> {
        let mut live = Live::new(tz, label_user);
        let (series, unpriced, lines) = store.load_totals()?;
        for ((source, model, project, user), c) in series {
            let user = live.user_key(&user);
            let s = live
                .series
                .entry((source, model, project, user))
                .or_default();
            for (t, v) in s.tokens.iter_mut().zip(c.tokens) {
                *t += v;
            }
            s.cost += c.cost;
            s.requests += c.requests;
            s.web_search += c.web_search;
        }
        live.unpriced = unpriced.into_iter().collect();
        live.lines = lines;
        for ((project, user), ts) in store.last_activity()? {
            let user = live.user_key(&user);
            let la = live.last_activity.entry((project, user)).or_insert(ts);
            *la = (*la).max(ts);
        }
        let since = now_ms - i64::from(DAYS_KEEP) * 86_400_000;
        store.for_each_recent(since, |(ts, model, project, user, tokens, cost)| {
            live.add_event(ts, &model, &project, &user, tokens, cost, now_ms);
        })?;
        Ok(live)
    }

    /// The user part of a key: the user when the label is on, else `""`.
    fn user_key(&self, user: &str) -> String {
        if self.label_user {
            user.to_string()
        } else {
            String::new()
        }
    }

    fn date_of(&self, ts_ms: i64) -> Option<Date> {
        let ts = Timestamp::from_millisecond(ts_ms).ok()?;
        Some(ts.to_zoned(self.tz.clone()).date())
    }

    #[allow(clippy::too_many_arguments)]
    fn add_event(
        &mut self,
        ts_ms: i64,
        model: &str,
        project: &str,
        user: &str,
        tokens: u64,
        cost: f64,
        now_ms: i64,
    ) {
        if ts_ms >= now_ms - i64::from(DAYS_KEEP) * 86_400_000 {
            if let Some(date) = self.date_of(ts_ms) {
                let user = self.user_key(user);
                let e = self
                    .days
                    .entry((date, model.to_string(), project.to_string(), user))
                    .or_default();
                e.0 += cost;
                e.1 += tokens;
            }
        }
        if ts_ms >= now_ms - EVENTS_KEEP_MS {
            let e = self.events.entry(ts_ms).or_default();
            e.0 += tokens;
            e.1 += cost;
            self.events_version += 1;
        }
    }

    /// Add what a committed batch counted.
    pub fn apply(&mut self, deltas: &[Delta], outcomes: Outcomes, now_ms: i64) {
        for (l, n) in self.lines.iter_mut().zip(outcomes) {
            *l += n;
        }
        for d in deltas {
            let user = self.user_key(&d.user);
            let c = self
                .series
                .entry((d.source, d.model.clone(), d.project.clone(), user.clone()))
                .or_default();
            let u = &d.usage;
            for (t, v) in c.tokens.iter_mut().zip([
                u.input,
                u.output,
                u.cache_read,
                u.cache_write_5m,
                u.cache_write_1h,
            ]) {
                *t += v;
            }
            c.cost += d.cost.unwrap_or(0.0);
            c.requests += u64::from(d.new_request);
            c.web_search += u.web_search_requests;
            if d.cost.is_none() && d.tokens() > 0 {
                *self.unpriced.entry(d.model.clone()).or_default() += d.tokens();
            }
            let la = self
                .last_activity
                .entry((d.project.clone(), user))
                .or_insert(d.ts_ms);
            *la = (*la).max(d.ts_ms);
            self.add_event(
                d.ts_ms,
                &d.model,
                &d.project,
                &d.user,
                d.tokens(),
                d.cost.unwrap_or(0.0),
                now_ms,
            );
        }
    }

    /// Drop days and events too old to matter.
    pub fn prune(&mut self, now_ms: i64) {
        let kept = self.events.split_off(&(now_ms - EVENTS_KEEP_MS));
        // What stayed behind in `events` is what was dropped.
        if !self.events.is_empty() {
            self.events_version += 1;
        }
        self.events = kept;
        if let Some(today) = self.date_of(now_ms) {
            if let Ok(oldest) = today.checked_sub(jiff::Span::new().days(i64::from(DAYS_KEEP))) {
                self.days.retain(|(d, _, _, _), _| *d >= oldest);
            }
        }
    }

    /// (cost, tokens) per (model, project, user) of the day of `now` and of its month.
    pub fn day_and_month(&self, now_ms: i64) -> (ByModel, ByModel) {
        let mut day = BTreeMap::new();
        let mut month = BTreeMap::new();
        let Some(today) = self.date_of(now_ms) else {
            return (day, month);
        };
        for ((d, model, project, user), (cost, tokens)) in &self.days {
            if d.year() == today.year() && d.month() == today.month() {
                let key = (model.clone(), project.clone(), user.clone());
                let m: &mut (f64, u64) = month.entry(key.clone()).or_default();
                m.0 += cost;
                m.1 += tokens;
                if *d == today {
                    let e: &mut (f64, u64) = day.entry(key).or_default();
                    e.0 += cost;
                    e.1 += tokens;
                }
            }
        }
        (day, month)
    }

    /// The block `now` is in, if any.
    pub fn active_block(&self, now_ms: i64) -> Option<Block> {
        let mut cached = self
            .last_block
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let b = match *cached {
            Some((version, block)) if version == self.events_version => block,
            _ => {
                let block = blocks(self.events.iter().map(|(t, (k, c))| (*t, *k, *c)))
                    .last()
                    .copied();
                *cached = Some((self.events_version, block));
                block
            }
        }?;
        (now_ms < b.end_ms && now_ms - b.last_ms < BLOCK_MS && now_ms >= b.start_ms).then_some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn blocks_as_ccusage_computes_them() {
        let t0 = 1_795_600_800_000 + 20 * 60_000; // 10:20
        let bs = blocks([
            (t0, 10, 1.0),
            (t0 + H, 10, 1.0),
            // 5 h after 10:00: a new block, floored to 15:00.
            (t0 + 5 * H, 5, 0.5),
            // a gap of 5 h since the last event: a new block.
            (t0 + 10 * H + 1, 1, 0.1),
        ]);
        assert_eq!(bs.len(), 3);
        assert_eq!(bs[0].start_ms, t0 - 20 * 60_000);
        assert_eq!(bs[0].end_ms, bs[0].start_ms + 5 * H);
        assert_eq!(bs[0].tokens, 20);
        assert_eq!(bs[1].start_ms, bs[0].start_ms + 5 * H);
        assert_eq!(bs[2].tokens, 1);
    }

    #[test]
    fn projection_at_the_burn_rate() {
        let b = Block {
            start_ms: 0,
            end_ms: 5 * H,
            first_ms: 0,
            last_ms: H,
            tokens: 1,
            cost: 2.0,
        };
        // $2 an hour, 3 h left at 2 h: $2 + $6.
        assert!((b.projected_cost(2 * H) - 8.0).abs() < 1e-9);
    }

    #[test]
    fn the_active_block_is_cached_until_events_change() {
        let t0 = 1_795_600_800_000; // 10:00
        let mut live = Live::new(TimeZone::UTC, false);
        live.add_event(t0, "m", "p", "", 10, 1.0, t0);
        assert_eq!(live.active_block(t0 + H).unwrap().tokens, 10);
        // Served again from the cache, and still right when asked at another time.
        assert_eq!(live.active_block(t0 + 2 * H).unwrap().tokens, 10);
        live.add_event(t0 + H, "m", "p", "", 5, 0.5, t0 + H);
        let b = live.active_block(t0 + 2 * H).unwrap();
        assert_eq!((b.tokens, b.last_ms), (15, t0 + H));
        // Past its end there is no active block; two days later the events are pruned.
        assert_eq!(live.active_block(t0 + 6 * H), None);
        live.prune(t0 + 50 * H);
        assert!(live.events.is_empty());
        assert_eq!(live.active_block(t0 + 2 * H), None);
    }

    #[test]
    fn days_by_event_time_in_the_zone() {
        let tz = TimeZone::get("America/New_York").unwrap();
        let mut live = Live::new(tz, false);
        // 2026-11-25T03:00Z is still the 24th in New York.
        let now = 1_795_600_800_000; // 2026-11-25T10:00Z
        let early = now - 7 * H;
        live.add_event(early, "m", "p", "ada", 5, 0.5, now);
        live.add_event(now, "m", "p", "bob", 7, 0.7, now);
        let (day, month) = live.day_and_month(now);
        // Without the user label, users are summed.
        assert_eq!(day[&("m".into(), "p".into(), "".into())].1, 7);
        assert_eq!(month[&("m".into(), "p".into(), "".into())].1, 12);
        let mut live = Live::new(TimeZone::UTC, true);
        live.add_event(now - H, "m", "p", "ada", 5, 0.5, now);
        live.add_event(now, "m", "p", "bob", 7, 0.7, now);
        let (day, _) = live.day_and_month(now);
        assert_eq!(day[&("m".into(), "p".into(), "ada".into())].1, 5);
        assert_eq!(day[&("m".into(), "p".into(), "bob".into())].1, 7);
    }
}
