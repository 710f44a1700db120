//! token-collector: token usage and cost of Claude Code and the Anthropic API, per model and
//! project, live, with history. See docs/token-collector.md.

pub mod capture;
pub mod ingest;
pub mod live;
pub mod pricing;
pub mod shell_init;
pub mod store;
pub mod transcript;
pub mod usage;
pub mod wrap;
