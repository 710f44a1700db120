//! The nvidia-smi backend: run `nvidia-smi --query-gpu=... --format=csv` (and
//! `--query-compute-apps`), parse what it prints.
//!
//! - [`table`]: the CSV and nvidia-smi's value tokens (`[N/A]`, units, hex masks, `P8`).
//! - [`parse`]: rows to [`crate::reading::GpuReading`] / [`crate::reading::ProcessReading`] by
//!   column name; the field list; `--help-query-gpu` to learn which fields a driver accepts.
//! - [`runner`]: running the command with a deadline, killing and reaping it on timeout.
//! - [`watchdog`]: the supervisor process each run goes through in the exporter, which kills
//!   a hung nvidia-smi at the timeout even when the exporter died.
//! - [`backend`]: the [`crate::reading::Backend`] built from the three: probes the field list
//!   once, then runs the queries on every read.

pub mod backend;
pub mod parse;
pub mod runner;
pub mod table;
pub mod watchdog;
