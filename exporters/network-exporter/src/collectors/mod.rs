//! One file per data source. Each file's first doc comment says what it reads and which
//! metrics it produces.

#[allow(dead_code)] // until main.rs builds the DNS collector from DnsArgs
pub mod dns;
