//! The CLI's [`Events`] renderer: job events as the lines `vggcache` prints on stderr (the
//! per-epoch table and a trained run on stdout), with a progress bar on a terminal and a plain
//! line every ~10% otherwise.

use std::sync::Mutex;

use vggcache::events::{Event, Events, Repair};

use super::print::{print_epoch, print_trained, EPOCH_HEADER};
use super::progress::{end_phase, say, Phase};

/// Renders events on stderr. Progress: an indicatif bar when stderr is a terminal, otherwise
/// `done/total images, rate, ETA` lines. A phase starts at its opening step (`done: 0`) and
/// ends at the next phase, [`Event::Finished`] or when the renderer is dropped.
#[derive(Default)]
pub struct Render {
    phase: Mutex<Option<Phase>>,
}

impl Events for Render {
    fn event(&self, e: &Event) {
        let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        match e {
            Event::Provider {
                name,
                cuda_fallback,
            } => {
                say(&phase, &format!("execution provider: {name}"));
                if let Some(why) = cuda_fallback {
                    say(&phase, &format!("note: CUDA not used ({why})"));
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
                say(
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
                    say(
                        &phase,
                        &format!(
                            "{moved} cached rows moved to another split (the split options or \
                             folders changed)"
                        ),
                    );
                }
                say(
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
                    end_phase(&mut phase);
                    *phase = Some(Phase::new(*total));
                }
                if let Some(p) = phase.as_mut().filter(|_| *images > 0) {
                    p.tick(*images);
                }
            }
            Event::Deleted { files } => say(
                &phase,
                &format!(
                    "deleted {} file(s) left by interrupted runs:\n  {}",
                    files.len(),
                    files.join("\n  ")
                ),
            ),
            Event::Repaired(r) => say(&phase, &repair_line(r)),
            Event::Notice(text) => say(&phase, text),
            Event::Training { .. } => println!("{EPOCH_HEADER}"),
            Event::Epoch(m) => print_epoch(m),
            Event::Trained {
                run_dir,
                summary,
                page,
            } => print_trained(summary, run_dir, page.as_deref()),
            Event::Finished { .. } => end_phase(&mut phase),
            // Skips are listed in the cache's skipped file and counted in the summary.
            _ => {}
        }
    }
}

impl Drop for Render {
    fn drop(&mut self) {
        end_phase(self.phase.get_mut().unwrap_or_else(|p| p.into_inner()));
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
