//! Prices are data: `pricing/anthropic.toml` (shipped, embedded in the binary) or the file of
//! `--pricing.file`. This module reads that table, maps a model id to its entry (aliases and
//! dated ids included) and prices one response's usage.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use serde::Deserialize;

use crate::usage::{Speed, Usage};

/// The shipped table, embedded so the binary needs no file at run time.
pub const SHIPPED: &str = include_str!("../pricing/anthropic.toml");

/// USD per million tokens of each token type.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rates {
    pub input: f64,
    pub output: f64,
    pub cache_write_5m: f64,
    pub cache_write_1h: f64,
    pub cache_read: f64,
}

/// One model's entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModelPrice {
    #[serde(flatten)]
    pub base: Rates,
    /// Prices of a request whose input (cache reads and writes included) exceeds the table's
    /// `long_context_threshold`: they apply to the whole request.
    pub long_context: Option<Rates>,
    /// Factor on every token price when `usage.speed` is `fast`.
    pub fast_multiplier: Option<f64>,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub source: String,
    pub date: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    long_context_threshold: u64,
    web_search_per_request: f64,
    #[serde(default)]
    #[allow(dead_code)]
    web_search_source: Option<String>,
    models: BTreeMap<String, ModelPrice>,
}

/// The price table, ready for lookups.
#[derive(Debug, Clone)]
pub struct Pricing {
    pub long_context_threshold: u64,
    pub web_search_per_request: f64,
    models: BTreeMap<String, ModelPrice>,
    /// Every id and alias, normalised, to its entry's key.
    index: BTreeMap<String, String>,
}

impl Pricing {
    /// The table shipped with the binary.
    pub fn shipped() -> Pricing {
        Pricing::parse(SHIPPED).expect("the shipped pricing table parses")
    }

    /// `path`, or the shipped table when `None`.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Pricing> {
        match path {
            None => Ok(Pricing::shipped()),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read pricing file {}", p.display()))?;
                Pricing::parse(&text).with_context(|| format!("pricing file {}", p.display()))
            }
        }
    }

    pub fn parse(text: &str) -> anyhow::Result<Pricing> {
        let file: File = toml::from_str(text)?;
        anyhow::ensure!(
            file.version == 1,
            "unknown pricing table version {}",
            file.version
        );
        let mut index = BTreeMap::new();
        for (key, m) in &file.models {
            for id in std::iter::once(key).chain(m.aliases.iter()) {
                if let Some(prev) = index.insert(normalize(id), key.clone()) {
                    anyhow::bail!("model id {id:?} names both {prev:?} and {key:?}");
                }
            }
        }
        Ok(Pricing {
            long_context_threshold: file.long_context_threshold,
            web_search_per_request: file.web_search_per_request,
            models: file.models,
            index,
        })
    }

    /// The entry of `model` (an id as Claude Code writes it: dated, aliased, with a provider
    /// prefix such as `anthropic/` or a context suffix such as `[1m]`), if the table has one.
    pub fn lookup(&self, model: &str) -> Option<(&str, &ModelPrice)> {
        let key = self.index.get(&normalize(model))?;
        self.models.get(key).map(|m| (key.as_str(), m))
    }

    /// The cost in USD of one response, or `None` when the model has no price.
    pub fn cost(&self, model: &str, usage: &Usage, speed: Speed) -> Option<f64> {
        let (_, m) = self.lookup(model)?;
        let context = usage.input + usage.cache_read + usage.cache_write_5m + usage.cache_write_1h;
        let rates = match m.long_context {
            Some(lc) if context > self.long_context_threshold => lc,
            _ => m.base,
        };
        let mult = match speed {
            Speed::Fast => m.fast_multiplier.unwrap_or(1.0),
            Speed::Standard => 1.0,
        };
        let tokens = usage.input as f64 * rates.input
            + usage.output as f64 * rates.output
            + usage.cache_write_5m as f64 * rates.cache_write_5m
            + usage.cache_write_1h as f64 * rates.cache_write_1h
            + usage.cache_read as f64 * rates.cache_read;
        Some(tokens * mult / 1e6 + usage.web_search_requests as f64 * self.web_search_per_request)
    }

    /// Every entry: key, price.
    pub fn models(&self) -> impl Iterator<Item = (&str, &ModelPrice)> {
        self.models.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// Lower case; without a provider prefix (`anthropic/`, `anthropic.`), a context suffix
/// (`[1m]`), a `-latest` suffix, a Bedrock `-v1:0` suffix or a date suffix (`-20250929`);
/// `claude-4-sonnet` style ids keep their own order (listed as aliases where needed).
pub fn normalize(model: &str) -> String {
    let mut s = model.trim().to_ascii_lowercase();
    if let Some(i) = s.find('[') {
        s.truncate(i);
    }
    for prefix in ["anthropic/", "anthropic.", "us.anthropic.", "eu.anthropic."] {
        if let Some(rest) = s.strip_prefix(prefix) {
            s = rest.to_string();
        }
    }
    if let Some(i) = s.find("-v1:") {
        s.truncate(i);
    }
    if let Some(i) = s.find('@') {
        s.truncate(i);
    }
    if let Some(rest) = s.strip_suffix("-latest") {
        s = rest.to_string();
    }
    if let Some((head, tail)) = s.rsplit_once('-') {
        if tail.len() == 8 && tail.bytes().all(|b| b.is_ascii_digit()) {
            s = head.to_string();
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(input: u64, output: u64, cr: u64, cw5: u64, cw1h: u64) -> Usage {
        Usage {
            input,
            output,
            cache_read: cr,
            cache_write_5m: cw5,
            cache_write_1h: cw1h,
            ..Usage::default()
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn shipped_table_parses_and_every_entry_has_a_source() {
        let p = Pricing::shipped();
        assert!(p.models().count() >= 15);
        for (k, m) in p.models() {
            assert!(m.source.starts_with("https://"), "{k}");
            assert_eq!(m.date.len(), 10, "{k}");
            assert!(m.base.cache_read < m.base.input, "{k}");
        }
        assert_eq!(p.long_context_threshold, 200_000);
    }

    #[test]
    fn dated_ids_and_aliases_map_to_one_entry() {
        let p = Pricing::shipped();
        let key = |m: &str| p.lookup(m).map(|(k, _)| k.to_string());
        assert_eq!(
            key("claude-sonnet-4-5-20250929").as_deref(),
            Some("claude-sonnet-4-5")
        );
        assert_eq!(
            key("claude-sonnet-4-5").as_deref(),
            Some("claude-sonnet-4-5")
        );
        assert_eq!(
            key("claude-opus-4-1-20250805").as_deref(),
            Some("claude-opus-4-1")
        );
        assert_eq!(key("claude-opus-4-1").as_deref(), Some("claude-opus-4-1"));
        assert_eq!(
            key("claude-opus-4-20250514").as_deref(),
            Some("claude-opus-4")
        );
        assert_eq!(key("claude-opus-4-0").as_deref(), Some("claude-opus-4"));
        assert_eq!(
            key("claude-3-5-haiku-20241022").as_deref(),
            Some("claude-3-5-haiku")
        );
        assert_eq!(
            key("claude-3-5-haiku-latest").as_deref(),
            Some("claude-3-5-haiku")
        );
        assert_eq!(
            key("claude-sonnet-4-6[1m]").as_deref(),
            Some("claude-sonnet-4-6")
        );
        assert_eq!(
            key("anthropic/claude-haiku-4-5").as_deref(),
            Some("claude-haiku-4-5")
        );
        assert_eq!(
            key("claude-mythos-5-1").as_deref(),
            Some("claude-fable-5-1")
        );
        assert_eq!(key("<synthetic>"), None);
        assert_eq!(key("gpt-5"), None);
    }

    #[test]
    fn every_token_type_has_its_price() {
        let p = Pricing::shipped();
        let m = "claude-sonnet-4-5-20250929";
        let c = |us: Usage| p.cost(m, &us, Speed::Standard).unwrap();
        assert!(close(c(u(100_000, 0, 0, 0, 0)), 0.3));
        assert!(close(c(u(0, 1_000_000, 0, 0, 0)), 15.0));
        assert!(close(c(u(0, 0, 100_000, 0, 0)), 0.03));
        assert!(close(c(u(0, 0, 0, 100_000, 0)), 0.375));
        assert!(close(c(u(0, 0, 0, 0, 100_000)), 0.6));
        // 1-hour writes cost more than 5-minute ones.
        assert!(c(u(0, 0, 0, 0, 1000)) > c(u(0, 0, 0, 1000, 0)));
    }

    #[test]
    fn long_context_prices_the_whole_request() {
        let p = Pricing::shipped();
        let m = "claude-sonnet-4-5";
        // 200,000 exactly: standard prices.
        let at = p
            .cost(m, &u(150_000, 1000, 50_000, 0, 0), Speed::Standard)
            .unwrap();
        assert!(close(at, 0.45 + 0.015 + 0.015));
        // One more token (as a cache write): every token at the long-context prices.
        let over = p
            .cost(m, &u(150_000, 1000, 50_000, 1, 0), Speed::Standard)
            .unwrap();
        assert!(close(over, 0.9 + 0.0225 + 0.03 + 7.5e-6));
        // A model without a long-context tier keeps its prices.
        let h = p
            .cost("claude-haiku-4-5", &u(300_000, 0, 0, 0, 0), Speed::Standard)
            .unwrap();
        assert!(close(h, 0.3));
    }

    /// Where ccusage computes differently (docs/token-collector.md): ccusage prices each token
    /// type on its own, only the tokens of a type beyond 200k at the higher price. Anthropic
    /// prices the whole request at the long-context rates once input + cache reads + cache
    /// writes exceed 200k. Request: 150,000 input, 60,000 cache read, 1,000 output on Claude
    /// Sonnet 4.5 (210,000 input tokens in all).
    #[test]
    fn long_context_worked_example_differs_from_ccusage() {
        let p = Pricing::shipped();
        let us = u(150_000, 1000, 60_000, 0, 0);
        let ours = p
            .cost("claude-sonnet-4-5-20250929", &us, Speed::Standard)
            .unwrap();
        // 150,000 x $6 + 60,000 x $0.60 + 1,000 x $22.50 (per MTok) = $0.9585
        assert!(close(ours, 0.9585));
        // ccusage: no type exceeds 200k, so all at base prices:
        // 150,000 x $3 + 60,000 x $0.30 + 1,000 x $15 = $0.483
        let per_type_base = 150_000.0 * 3.0 / 1e6 + 60_000.0 * 0.3 / 1e6 + 1000.0 * 15.0 / 1e6;
        assert!(close(per_type_base, 0.483));
        assert!(ours > per_type_base);
    }

    #[test]
    fn fast_speed_and_web_search() {
        let p = Pricing::shipped();
        let one = u(100_000, 0, 0, 0, 0);
        assert!(close(
            p.cost("claude-opus-4-6", &one, Speed::Fast).unwrap(),
            3.0
        ));
        assert!(close(
            p.cost("claude-opus-4-6", &one, Speed::Standard).unwrap(),
            0.5
        ));
        // No multiplier in the table: fast costs the same.
        assert!(close(
            p.cost("claude-sonnet-4-5", &one, Speed::Fast).unwrap(),
            0.3
        ));
        let ws = Usage {
            web_search_requests: 3,
            ..Usage::default()
        };
        assert!(close(
            p.cost("claude-sonnet-4-5", &ws, Speed::Standard).unwrap(),
            0.03
        ));
    }

    #[test]
    fn a_bad_table_is_refused() {
        assert!(Pricing::parse(
            "version = 2\nlong_context_threshold = 1\nweb_search_per_request = 0\n[models]\n"
        )
        .is_err());
        let dup = "version = 1\nlong_context_threshold = 1\nweb_search_per_request = 0\n\
                   [models.a]\ninput=1\noutput=1\ncache_write_5m=1\ncache_write_1h=1\ncache_read=1\nsource=\"x\"\ndate=\"x\"\n\
                   [models.b]\ninput=1\noutput=1\ncache_write_5m=1\ncache_write_1h=1\ncache_read=1\nsource=\"x\"\ndate=\"x\"\naliases=[\"a\"]\n";
        assert!(Pricing::parse(dup).is_err());
    }
}
