//! Where the benches find what lives outside the checkout: real images and the peers script.
//!
//! `VGGCACHE_TEST_DATA` (a folder holding `catsdogs/`, default `../shared/data` beside the checkout
//! when it exists) and `VGGCACHE_PEERS` (the peers script, default `../shared/bench/peers.py`);
//! tests/it/common.rs and scripts/testdata.py read the same variables with the same defaults.
#![allow(dead_code)] // each bench uses part of this module

use std::path::PathBuf;

/// The crate root (`CARGO_MANIFEST_DIR`).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `<test data>/<rel>` when it is a folder, else `None` after a `SKIP` line on stderr naming `what`.
pub fn test_data(what: &str, rel: &str) -> Option<PathBuf> {
    let base = match std::env::var_os("VGGCACHE_TEST_DATA") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => root().join("../shared/data"),
    };
    let p = base.join(rel);
    if p.is_dir() {
        return Some(p);
    }
    eprintln!(
        "SKIP {what}: {} absent (set VGGCACHE_TEST_DATA to a folder holding {rel}/)",
        p.display()
    );
    None
}

/// The peers script (`$VGGCACHE_PEERS`, else `../shared/bench/peers.py`) when it exists.
pub fn peers() -> Option<PathBuf> {
    let p = match std::env::var_os("VGGCACHE_PEERS") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => root().join("../shared/bench/peers.py"),
    };
    p.is_file().then_some(p)
}
