//! Behaviour tests of the metrics layer, through the real layer on a scoped subscriber.

mod bad_input;
mod behaviour;
mod concurrency;
mod identities;
mod issue6;
mod seed;
mod support;
