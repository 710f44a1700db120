//! The nvidia-smi backend: run `nvidia-smi --query-gpu=... --format=csv` (and
//! `--query-compute-apps`), parse what it prints.
//!
//! - [`table`]: the CSV and nvidia-smi's value tokens (`[N/A]`, units, hex masks, `P8`).
//! - [`parse`]: rows to [`crate::reading::GpuReading`] / [`crate::reading::ProcessReading`] by
//!   column name; the field list; `--help-query-gpu` to learn which fields a driver accepts.
//! - [`runner`]: running the command with a deadline, killing and reaping it on timeout.
//!
//! Not here yet (issue 3): the background collector that calls these every
//! `--collect.interval` and turns readings into metric families.

pub mod parse;
pub mod runner;
pub mod table;
