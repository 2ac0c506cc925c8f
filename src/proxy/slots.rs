//! Per-key slots for work that one request does while the others for the same
//! key wait on it (a token per scope, a referrers check per subject): a map
//! of `Arc<tokio::sync::Mutex<Option<T>>>`, which drops the slots it no
//! longer needs once it holds many, so that a client asking for ever new keys
//! cannot grow it without end.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// Keys past which a new key first drops the slots no longer worth keeping.
pub const PRUNE_ABOVE: usize = 4096;

/// One key's value, locked while it is being made.
pub type Slot<T> = Arc<tokio::sync::Mutex<Option<T>>>;

pub struct Slots<K, T>(pub(super) Mutex<HashMap<K, Slot<T>>>);

impl<K, T> Default for Slots<K, T> {
    fn default() -> Self {
        Slots(Mutex::new(HashMap::new()))
    }
}

impl<K: Hash + Eq, T> Slots<K, T> {
    /// The slot of `key`. Past [`PRUNE_ABOVE`] keys, a new one first drops
    /// the slots not in use whose value `keep` says is not worth its place
    /// (or that hold none): they are as good as never filled.
    pub fn slot(&self, key: K, keep: impl Fn(&T) -> bool) -> Slot<T> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= PRUNE_ABOVE && !map.contains_key(&key) {
            map.retain(|_, slot| match slot.try_lock() {
                Ok(value) => value.as_ref().is_some_and(&keep),
                Err(_) => true,
            });
        }
        map.entry(key).or_default().clone()
    }
}
