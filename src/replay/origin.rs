//! Where a span was measured: the host and the process of its resource, which tell whether
//! two spans' times come from one clock.
//!
//! Spans of one process share its clock: a child outside its parent is then real data (the
//! exported end of a span that was entered is its last exit, and `tracing` closes a parent
//! after its children), never skew. Spans of different hosts or processes may disagree by
//! their clocks' skew.

use std::hash::{DefaultHasher, Hash as _, Hasher as _};

/// The resource attribute naming the host (OpenTelemetry's semantic conventions).
pub(crate) const HOST_NAME: &str = "host.name";
/// The resource attribute naming the process (a service instance).
pub(crate) const SERVICE_INSTANCE_ID: &str = "service.instance.id";

/// The host and the process a span's resource names, each as a hash of its value (0: not
/// given).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Origin {
    host: u64,
    instance: u64,
}

/// Whether two spans' times come from one clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Clocks {
    /// The same host and process (as far as both resources say; one at least).
    One,
    /// Another host, or another process (`host.name` or `service.instance.id` differ).
    Different,
    /// The resources do not say (no `host.name` or `service.instance.id` given on both).
    Unknown,
}

impl Origin {
    /// Keeps `value` if `key` is one of the two attributes that name a host or a process
    /// (any other key is ignored).
    pub(crate) fn note(&mut self, key: &str, value: &str) {
        let slot = match key {
            HOST_NAME => &mut self.host,
            SERVICE_INSTANCE_ID => &mut self.instance,
            _ => return,
        };
        let mut hasher = DefaultHasher::new();
        value.hash(&mut hasher);
        // 0 is "not given".
        *slot = hasher.finish().max(1);
    }

    /// Whether a span of `self` and one of `other` share a clock.
    pub(crate) fn clocks(self, other: Origin) -> Clocks {
        let both = |a: u64, b: u64| a != 0 && b != 0;
        let differ = |a: u64, b: u64| both(a, b) && a != b;
        if differ(self.host, other.host) || differ(self.instance, other.instance) {
            Clocks::Different
        } else if both(self.host, other.host) || both(self.instance, other.instance) {
            Clocks::One
        } else {
            Clocks::Unknown
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(attrs: &[(&str, &str)]) -> Origin {
        let mut o = Origin::default();
        for (k, v) in attrs {
            o.note(k, v);
        }
        o
    }

    #[test]
    fn hosts_and_instances_tell_clocks_apart() {
        let a = origin(&[(HOST_NAME, "a"), (SERVICE_INSTANCE_ID, "1")]);
        let a2 = origin(&[(HOST_NAME, "a"), (SERVICE_INSTANCE_ID, "2")]);
        let b = origin(&[(HOST_NAME, "b")]);
        let only_a = origin(&[(HOST_NAME, "a"), ("service.name", "x")]);
        let none = origin(&[("service.name", "x")]);
        assert_eq!(a.clocks(a), Clocks::One);
        assert_eq!(a.clocks(only_a), Clocks::One);
        assert_eq!(a.clocks(a2), Clocks::Different);
        assert_eq!(a.clocks(b), Clocks::Different);
        assert_eq!(a.clocks(none), Clocks::Unknown);
        assert_eq!(none.clocks(none), Clocks::Unknown);
        assert_eq!(none, Origin::default(), "other attributes are ignored");
    }
}
