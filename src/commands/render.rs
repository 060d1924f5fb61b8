//! The CLI's [`Events`] renderer: job events as the lines `vggcache` prints on stderr (the
//! per-epoch table and a trained run on stdout), with a progress bar on a terminal and a plain
//! line every ~10% otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Instant;

use vggcache::events::{Event, Events, Repair};

use super::print::{print_epoch, print_trained, EPOCH_HEADER};

/// Renders events on stderr. Progress: an indicatif bar when stderr is a terminal, otherwise
/// `done/total images, rate, ETA` lines. A phase starts at its opening step (`done: 0`) and
/// ends at the next phase, [`Event::Finished`] or when the renderer is dropped.
#[derive(Default)]
pub struct Render {
    phase: Mutex<Option<Phase>>,
}

/// One extraction phase's progress display.
struct Phase {
    bar: Option<indicatif::ProgressBar>,
    total: usize,
    done: usize,
    next_line: usize,
    /// `done` at the last plain line.
    printed: usize,
    start: Instant,
}

impl Phase {
    fn new(total: usize) -> Self {
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
    fn tick(&mut self, n: usize) {
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
    fn finish(&self) {
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

impl Render {
    /// Ends the current progress phase, if any.
    fn end_phase(phase: &mut Option<Phase>) {
        if let Some(p) = phase.take() {
            p.finish();
        }
    }

    /// Prints `text` on stderr, above the bar when one is shown.
    fn say(phase: &Option<Phase>, text: &str) {
        match phase.as_ref().and_then(|p| p.bar.as_ref()) {
            Some(b) => b.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }
}

impl Events for Render {
    fn event(&self, e: &Event) {
        let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        match e {
            Event::Provider {
                name,
                cuda_fallback,
            } => {
                Self::say(&phase, &format!("execution provider: {name}"));
                if let Some(why) = cuda_fallback {
                    Self::say(&phase, &format!("note: CUDA not used ({why})"));
                }
            }
            Event::Scanned {
                images,
                root,
                layout,
                classes,
                skipped,
            } => {
                let classes = if classes.is_empty() {
                    "none".to_string()
                } else {
                    classes.join(", ")
                };
                Self::say(
                    &phase,
                    &format!(
                        "{images} images in {} ({layout} layout, classes: {classes}); {skipped} \
                         skipped while scanning",
                        root.display()
                    ),
                );
            }
            Event::Planned {
                images,
                reused,
                removed,
                moved,
            } => {
                if *moved > 0 {
                    Self::say(
                        &phase,
                        &format!(
                            "{moved} cached rows moved to another split (the split options or \
                             folders changed)"
                        ),
                    );
                }
                Self::say(
                    &phase,
                    &format!(
                        "{images} to extract, {reused} cached and unchanged, {removed} stale rows \
                         dropped"
                    ),
                );
            }
            Event::Batch {
                done,
                total,
                images,
            } => {
                if *done == 0 || phase.is_none() {
                    Self::end_phase(&mut phase);
                    *phase = Some(Phase::new(*total));
                }
                if let Some(p) = phase.as_mut().filter(|_| *images > 0) {
                    p.tick(*images);
                }
            }
            Event::Deleted { files } => Self::say(
                &phase,
                &format!(
                    "deleted {} file(s) left by interrupted runs:\n  {}",
                    files.len(),
                    files.join("\n  ")
                ),
            ),
            Event::Repaired(r) => Self::say(&phase, &repair_line(r)),
            Event::Notice(text) => Self::say(&phase, text),
            Event::Training { .. } => println!("{EPOCH_HEADER}"),
            Event::Epoch(m) => print_epoch(m),
            Event::Trained {
                run_dir,
                summary,
                page,
            } => print_trained(summary, run_dir, page.as_deref()),
            Event::Finished { .. } => Self::end_phase(&mut phase),
            // Skips are listed in the cache's skipped file and counted in the summary.
            _ => {}
        }
    }
}

impl Drop for Render {
    fn drop(&mut self) {
        Self::end_phase(self.phase.get_mut().unwrap_or_else(|p| p.into_inner()));
    }
}

/// The warning line of a repair.
#[allow(unreachable_patterns)] // `Repair` is non-exhaustive outside the library crate
fn repair_line(r: &Repair) -> String {
    match r {
        Repair::ManifestRebuilt { adopted, why } => format!(
            "warning: manifest rebuilt from the intact shards ({adopted} adopted) because: {why}"
        ),
        Repair::ShardDropped { detail } => format!("warning: {detail}"),
        Repair::Quarantined { files } => format!(
            "warning: {} file(s) moved to quarantine/ (kept, not deleted; delete them once you no \
             longer need them): {}",
            files.len(),
            files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Repair::Redo { images } => {
            format!(
                "warning: {images} image(s) of damaged or missing shards will be extracted again"
            )
        }
        _ => format!("warning: {r:?}"),
    }
}
