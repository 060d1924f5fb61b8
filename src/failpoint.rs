//! Named fault points for crash tests of the commit protocol (sharded extraction): a test, or an
//! operator rehearsing a failure, makes a real process stop at an exact step, then kills it or
//! lets it crash, and checks what the next attempt does.
//!
//! `VGGCACHE_FAILPOINT=NAME:ACTION` arms the point `NAME` (`NAME#K:ACTION`: the K-th time the
//! process reaches it, K ≥ 1); `ACTION` is `pause` (print a line on stderr, then sleep until
//! killed) or `abort` (print, then abort: a crash with SIGABRT). The library never prints: the
//! line `failpoint NAME reached (ACTION), pid PID` goes to the announcer the front end installs
//! with [`set_announcer`] (the `vggcache` binary prints it on stderr; tests wait for it there).
//! With `VGGCACHE_FAILPOINT_ONCE=FILE` the point fires only in the process that creates `FILE`
//! (create-new), so exactly one attempt fails and its retries run through. Unset, [`hit`] costs
//! one environment lookup.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Where a reached point's line goes; unset, nowhere.
static ANNOUNCER: OnceLock<fn(&str)> = OnceLock::new();

/// Sends the line of each reached point to `f` (the first call wins; later ones are ignored).
pub fn set_announcer(f: fn(&str)) {
    let _ = ANNOUNCER.set(f);
}

/// Environment variable arming a point: `NAME:pause` or `NAME:abort`.
pub const ENV: &str = "VGGCACHE_FAILPOINT";
/// Environment variable naming a marker file: the point fires once, in the process creating it.
pub const ENV_ONCE: &str = "VGGCACHE_FAILPOINT_ONCE";

/// Stops here when `name` is armed (see the module docs); returns at once otherwise.
pub fn hit(name: &str) {
    let Ok(spec) = std::env::var(ENV) else {
        return;
    };
    let Some((point, action)) = spec.split_once(':') else {
        return;
    };
    let (point, nth) = match point.split_once('#') {
        Some((p, k)) => (p, k.parse::<usize>().unwrap_or(1)),
        None => (point, 1),
    };
    if point != name {
        return;
    }
    static HITS: AtomicUsize = AtomicUsize::new(0);
    if HITS.fetch_add(1, Ordering::SeqCst) + 1 != nth {
        return;
    }
    if let Ok(marker) = std::env::var(ENV_ONCE) {
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&marker);
        if created.is_err() {
            return;
        }
    }
    if let Some(announce) = ANNOUNCER.get() {
        announce(&format!(
            "failpoint {name} reached ({action}), pid {}",
            std::process::id()
        ));
    }
    match action {
        "pause" => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        "abort" => std::process::abort(),
        _ => {}
    }
}
