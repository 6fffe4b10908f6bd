//! Readable names of exported spans that repeat on every request ("stage 0 thinker",
//! "transfer 0->1"), made once per process: naming an exported span then allocates nothing.
//!
//! The names live in a process-wide set of at most [`MAX_NAMES`] leaked strings (a few KiB);
//! each thread keeps the ones it used in a small cache, so the set's lock is taken only on a
//! thread's first use of a name. Beyond the bound, a name is formatted each time.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Mutex;

/// Names kept process-wide at most.
const MAX_NAMES: usize = 1024;
/// Names a thread's cache keeps at most.
const THREAD_CACHE: usize = 64;

static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

thread_local! {
    static CACHE: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
    /// Where a name is written before it is looked up: no allocation for a known name.
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
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
    let cached = CACHE
        .try_with(|cache| {
            let cache = cache.try_borrow().ok()?;
            cache.iter().find(|n| **n == text).copied()
        })
        .ok()
        .flatten();
    if let Some(name) = cached {
        return Cow::Borrowed(name);
    }
    let name = {
        let Ok(mut all) = NAMES.lock() else {
            return Cow::Owned(text.to_owned());
        };
        match all.iter().find(|n| **n == text) {
            Some(name) => *name,
            None if all.len() < MAX_NAMES => {
                let name: &'static str = Box::leak(text.to_owned().into_boxed_str());
                all.push(name);
                name
            }
            None => return Cow::Owned(text.to_owned()),
        }
    };
    let _ = CACHE.try_with(|cache| {
        if let Ok(mut cache) = cache.try_borrow_mut() {
            if cache.len() < THREAD_CACHE {
                cache.push(name);
            }
        }
    });
    Cow::Borrowed(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

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
}
