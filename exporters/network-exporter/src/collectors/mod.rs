//! One file per data source. Each file's first doc comment says what it reads and which
//! metrics it produces.
pub mod tcpstat;
pub mod netstat;
pub mod sockstat;
