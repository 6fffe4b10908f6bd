//! Readable names of exported spans that repeat on every request ("stage 0 thinker",
//! "transfer 0->1"), made once per process: naming an exported span then allocates nothing.
//!
//! The names live in a process-wide set of at most [`MAX_NAMES`] leaked strings (a few KiB).
//! Each thread finds the stage and transfer names it used by their numbers ([`stage`],
//! [`transfer`]) in a small list of its own, without formatting (formatting and comparing
//! the text cost about 500 instructions per exported span), so the set's lock is taken only
//! on a thread's first use of a name. Beyond the bound, a name is formatted each time.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

/// Names kept process-wide at most.
const MAX_NAMES: usize = 1024;
/// Names a thread's cache keeps at most.
const THREAD_CACHE: usize = 64;

static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

thread_local! {
    /// Where a name is written before it is looked up: no allocation for a known name.
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
}

/// What a stage's or transfer's name is made of.
#[derive(Debug, PartialEq)]
enum Key {
    /// `stage {id} {name}`; stage names are interned per thread, so equal names are
    /// usually the same pointer (`Arc`'s equality checks that first).
    Stage(u64, Option<Arc<str>>),
    /// `transfer {from}->{to}`.
    Transfer(u64, u64),
}

thread_local! {
    static BY_KEY: RefCell<Vec<(Key, &'static str)>> = const { RefCell::new(Vec::new()) };
}

/// `stage {stage_id} {stage_name}` (or `stage {stage_id}`), the readable name of an
/// exported stage span.
#[inline]
pub(super) fn stage(stage_id: u64, stage_name: Option<&Arc<str>>) -> Cow<'static, str> {
    by_key(
        |key| matches!(key, Key::Stage(id, name) if *id == stage_id && name.as_ref() == stage_name),
        || Key::Stage(stage_id, stage_name.cloned()),
        |out| {
            let _ = match stage_name {
                Some(n) => write!(out, "stage {stage_id} {n}"),
                None => write!(out, "stage {stage_id}"),
            };
        },
    )
}

/// `transfer {from}->{to}`, the readable name of an exported transfer span.
#[inline]
pub(super) fn transfer(from: u64, to: u64) -> Cow<'static, str> {
    by_key(
        |key| *key == Key::Transfer(from, to),
        || Key::Transfer(from, to),
        |out| {
            let _ = write!(out, "transfer {from}->{to}");
        },
    )
}

/// The name whose key `is` matches; else written by `write` and kept under `key()` (the key
/// is only made then: a stage name's `Arc` is not cloned per span).
fn by_key(
    is: impl Fn(&Key) -> bool,
    key: impl FnOnce() -> Key,
    write: impl Fn(&mut String),
) -> Cow<'static, str> {
    let known = BY_KEY
        .try_with(|names| {
            let names = names.try_borrow().ok()?;
            names.iter().find(|(k, _)| is(k)).map(|(_, n)| *n)
        })
        .ok()
        .flatten();
    if let Some(name) = known {
        return Cow::Borrowed(name);
    }
    let name = repeated(write);
    if let Cow::Borrowed(name) = name {
        let _ = BY_KEY.try_with(|names| {
            if let Ok(mut names) = names.try_borrow_mut() {
                if names.len() < THREAD_CACHE {
                    names.push((key(), name));
                }
            }
        });
    }
    name
}

/// The name written by `write`, as a `'static` string when it is (or can become) one of the
/// process's repeated names.
pub(super) fn repeated(write: impl Fn(&mut String)) -> Cow<'static, str> {
    let found = SCRATCH
        .try_with(|scratch| {
            let mut text = scratch.try_borrow_mut().ok()?;
            text.clear();
            write(&mut text);
            Some(lookup(&text))
        })
        .ok()
        .flatten();
    found.unwrap_or_else(|| {
        let mut text = String::new();
        write(&mut text);
        Cow::Owned(text)
    })
}

fn lookup(text: &str) -> Cow<'static, str> {
    let Ok(mut all) = NAMES.lock() else {
        return Cow::Owned(text.to_owned());
    };
    match all.iter().find(|n| **n == text) {
        Some(name) => Cow::Borrowed(*name),
        None if all.len() < MAX_NAMES => {
            let name: &'static str = Box::leak(text.to_owned().into_boxed_str());
            all.push(name);
            Cow::Borrowed(name)
        }
        None => Cow::Owned(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_name_is_made_once() {
        let name = "thinker";
        let a = repeated(|s| {
            let _ = write!(s, "stage {} {name}", 0);
        });
        let b = repeated(|s| s.push_str("stage 0 thinker"));
        assert_eq!(a, "stage 0 thinker");
        match (a, b) {
            (Cow::Borrowed(a), Cow::Borrowed(b)) => assert!(std::ptr::eq(a, b)),
            other => panic!("not interned: {other:?}"),
        }
    }

    #[test]
    fn stage_and_transfer_names_are_found_by_their_numbers() {
        let thinker: Arc<str> = Arc::from("thinker");
        let again: Arc<str> = Arc::from("thinker");
        assert_eq!(stage(0, Some(&thinker)), "stage 0 thinker");
        assert_eq!(stage(0, Some(&again)), "stage 0 thinker");
        assert_eq!(stage(1, Some(&thinker)), "stage 1 thinker");
        assert_eq!(stage(0, None), "stage 0");
        assert_eq!(transfer(0, 1), "transfer 0->1");
        assert_eq!(transfer(1, 0), "transfer 1->0");
        assert!(matches!(
            (stage(0, Some(&again)), transfer(0, 1)),
            (Cow::Borrowed(_), Cow::Borrowed(_))
        ));
    }
}
