//! Progress of the extraction phase on stderr: a bar on a terminal, a plain line every ~10% otherwise.

use std::io::IsTerminal;
use std::time::Instant;

pub(crate) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: usize,
    done: usize,
    next_line: usize,
    /// `done` at the last plain line.
    printed: usize,
    start: Instant,
}

impl Progress {
    /// Progress over `total` images.
    pub fn new(total: usize) -> Self {
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

    /// `n` more images done (written or skipped).
    pub fn tick(&mut self, n: usize) {
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
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        } else if self.done > 0 && self.printed != self.done {
            self.line();
        }
    }

    fn line(&self) {
        let rate = self.done as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
        let eta = (self.total - self.done) as f64 / rate.max(1e-9);
        eprintln!(
            "{}/{} images, {rate:.2} img/s, ETA {eta:.0} s",
            self.done, self.total
        );
    }
}
