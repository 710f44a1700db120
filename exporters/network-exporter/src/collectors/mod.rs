//! One file per data source. Each file's first doc comment says what it reads and which
//! metrics it produces.

// Not yet used by main.rs: remove these allows once the lead wires the collectors in.
#[allow(dead_code)]
pub mod device_filter;
#[allow(dead_code)]
pub mod netclass;
#[allow(dead_code)]
pub mod netdev;
#[allow(dead_code)]
pub mod softnet;
#[allow(dead_code)]
pub mod wireless;
