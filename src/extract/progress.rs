//! Progress of the extraction phase, sent as [`Event::Batch`] steps to the caller's [`Events`].

use std::sync::Mutex;

use crate::events::{Event, Events};

/// Counts the images of one extraction phase and reports each step; shared by the thread that
/// hands out batches (skips) and the writer (written batches).
pub(crate) struct Progress<'a> {
    events: &'a dyn Events,
    total: usize,
    done: Mutex<usize>,
}

impl<'a> Progress<'a> {
    /// Progress over `total` images, reported to `events`; reports the phase's opening step.
    pub fn new(total: usize, events: &'a dyn Events) -> Self {
        events.event(&Event::Batch {
            done: 0,
            total,
            images: 0,
        });
        Self {
            events,
            total,
            done: Mutex::new(0),
        }
    }

    /// `n` more images done (written or skipped). Steps are reported in the order they are
    /// counted, so `done` only grows.
    pub fn tick(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        *done += n;
        self.events.event(&Event::Batch {
            done: *done,
            total: self.total,
            images: n,
        });
    }
}
