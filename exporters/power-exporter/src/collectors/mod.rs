//! One module per data source.

pub mod battery;
pub mod gpu;
pub mod hwmon;
pub mod rapl;
pub mod thermal;
