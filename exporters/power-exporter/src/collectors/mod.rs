//! One module per data source.

pub mod battery;
pub mod hwmon;
pub mod rapl;
pub mod thermal;
