//! The collectors: both read the scanner's snapshot ([`crate::scan`]).

pub mod processes;
pub mod pss;
