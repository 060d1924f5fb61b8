//! One extraction phase's progress on stderr: an indicatif bar on a terminal, otherwise a plain
//! `done/total images, rate, ETA` line every ~10%.

use std::io::IsTerminal;
use std::time::Instant;

/// One extraction phase's progress display.
pub(crate) struct Phase {
    bar: Option<indicatif::ProgressBar>,
    total: usize,
    done: usize,
    next_line: usize,
    /// `done` at the last plain line.
    printed: usize,
    start: Instant,
}

impl Phase {
    pub(crate) fn new(total: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(total as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} ETA {eta}")
                    .expect("static template"),
            );
            b
        });
        Self {
            bar,
            total,
            done: 0,
            next_line: 0,
            printed: 0,
            start: Instant::now(),
        }
    }

    /// `n` more images done.
    pub(crate) fn tick(&mut self, n: usize) {
        self.done += n;
        if let Some(b) = &self.bar {
            b.inc(n as u64);
        } else if self.done >= self.next_line {
            self.line();
            self.next_line = self.done + self.total.div_ceil(10).max(1);
            self.printed = self.done;
        }
    }

    /// Clears the bar; in plain mode prints the final count and rate if the last line did not.
    pub(crate) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        } else if self.done > 0 && self.printed != self.done {
            self.line();
        }
    }

    fn line(&self) {
        let rate = self.done as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
        let eta = self.total.saturating_sub(self.done) as f64 / rate.max(1e-9);
        eprintln!(
            "{}/{} images, {rate:.2} img/s, ETA {eta:.0} s",
            self.done, self.total
        );
    }
}

/// Ends the current progress phase, if any.
pub(crate) fn end_phase(phase: &mut Option<Phase>) {
    if let Some(p) = phase.take() {
        p.finish();
    }
}

/// Prints `text` on stderr, above the bar when one is shown.
pub(crate) fn say(phase: &Option<Phase>, text: &str) {
    match phase.as_ref().and_then(|p| p.bar.as_ref()) {
        Some(b) => b.suspend(|| eprintln!("{text}")),
        None => eprintln!("{text}"),
    }
}
