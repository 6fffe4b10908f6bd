//! The built-in sinks (console tables, JSON lines): off the engine's threads, escaped,
//! capped, never torn, losses counted (issue #6, items 5, 6, 10 and 18).

mod console;
mod cost;
mod jsonl;
mod stderr;
mod support;
mod tables;
