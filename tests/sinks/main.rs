//! The built-in sinks (console tables, JSON lines): escaped, capped, laid out as the
//! seed's tables (issue #6).

mod support;
mod tables;
