//! What a worker thread made once from a shared value (`Arc<T>`) and keeps for the next
//! request that brings the same value: the identity headers of a verified bearer token, the
//! encoded Envoy answer of an identity map. Keyed by the value's address and a key of the
//! maker's; the `Weak` kept beside each entry keeps that address from being reused for another
//! value while it is a key, so an equal address is the same value.

use std::cell::RefCell;
use std::hash::Hash;
use std::sync::{Arc, Weak};
use std::thread::LocalKey;

use rustc_hash::FxHashMap;

/// One kind of memo: by the value's address and `K`, what was made, with the `Weak`.
pub(super) struct Memo<T, K, V> {
    entries: FxHashMap<(usize, K), (Weak<T>, V)>,
}

impl<T, K, V> Default for Memo<T, K, V> {
    fn default() -> Self {
        Memo {
            entries: FxHashMap::default(),
        }
    }
}

/// Entries of each memo per worker thread; a memo is emptied when it holds this many.
const ENTRIES: usize = 1024;

/// What `memo` on this thread keeps for `value` and `key`, or what `make` makes (then kept).
pub(super) fn get_or_make<T, K: Eq + Hash, V: Clone>(
    memo: &'static LocalKey<RefCell<Memo<T, K, V>>>,
    value: &Arc<T>,
    key: K,
    make: impl FnOnce() -> V,
) -> V {
    let key = (Arc::as_ptr(value) as usize, key);
    if let Some(v) = memo.with_borrow(|m| m.entries.get(&key).map(|(_, v)| v.clone())) {
        return v;
    }
    let made = make();
    memo.with_borrow_mut(|m| {
        if m.entries.len() >= ENTRIES {
            m.entries.clear();
        }
        m.entries.insert(key, (Arc::downgrade(value), made.clone()));
    });
    made
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static NAMES: RefCell<Memo<String, bool, String>> = RefCell::new(Memo::default());
    }

    /// A value made for one `Arc` answered for another: only the same value (kept from reuse)
    /// and the same key get what was made; the bound empties the memo.
    #[test]
    fn identity_confusion_a_kept_value_is_given_only_for_the_same_arc_and_key() {
        let alice = Arc::new("alice".to_string());
        let bob = Arc::new("bob".to_string());
        let made = |a: &Arc<String>, k| get_or_make(&NAMES, a, k, || format!("{a}:{k}"));
        assert_eq!(made(&alice, true), "alice:true");
        assert_eq!(
            get_or_make(&NAMES, &alice, true, || panic!("made again")),
            "alice:true"
        );
        assert_eq!(made(&alice, false), "alice:false");
        assert_eq!(made(&bob, true), "bob:true");
        // A value dropped while kept: its address is not given to a new one.
        let weak = Arc::downgrade(&bob);
        drop(bob);
        let carol = Arc::new("carol".to_string());
        assert!(!std::ptr::eq(Arc::as_ptr(&carol), weak.as_ptr()));
        assert_eq!(made(&carol, true), "carol:true");
        for i in 0..ENTRIES {
            made(&Arc::new(i.to_string()), true);
        }
        assert!(NAMES.with_borrow(|m| m.entries.len()) <= ENTRIES);
        assert_eq!(made(&alice, true), "alice:true");
    }
}
