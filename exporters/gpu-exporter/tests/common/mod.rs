//! Shared by the integration tests of gpu-exporter.
#![allow(dead_code)] // each test binary uses a different part

pub mod capture;
