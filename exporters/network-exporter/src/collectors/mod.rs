//! One file per data source. Each file's first doc comment says what it reads and which
//! metrics it produces; `SPEC` in the crate root declares them.

pub mod device_filter;
pub mod dns;
pub mod netclass;
pub mod netdev;
pub mod netstat;
pub mod sockstat;
pub mod softnet;
pub mod tcpstat;
#[cfg(test)]
pub(crate) mod testing;
pub mod wireless;
