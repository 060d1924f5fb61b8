//! Process memory: glibc malloc tuning and transparent huge pages for reading large feature
//! caches, and how much memory a run can use (sizes from flags are checked against it).
//!
//! Why it is its own module: these knobs change how the whole process allocates, not how the cache
//! is laid out; the cache reader calls them, but they belong to no file format. Both are best
//! effort and no-ops off Linux (malloc tuning: off glibc).

/// Tunes glibc malloc for reading large caches: keeps freed blocks up to 32 MiB on the heap
/// (`M_MMAP_THRESHOLD`) and does not hand heap memory back to the OS below 1 GiB
/// (`M_TRIM_THRESHOLD`). Parquet decodes every 1 MiB page into a fresh buffer; without this each
/// one is a new mapping whose pages fault in and are zeroed, which costs more than decoding
/// (measured: 0.19 → 0.34 GB/s, page faults 20x fewer; docs/BENCHMARKS.md). The price is that the
/// process keeps up to that much freed memory. Called once by
/// [`crate::cache::FeatureCache::open`]; a no-op except on Linux with glibc.
pub fn tune_allocator() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes glibc's allocation thresholds; the values are in range.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
            libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        }
    });
}

/// Asks Linux to back `buf` with 2 MiB transparent huge pages (where THP is `always` or
/// `madvise`), so a fresh feature matrix of ~100 MB faults in ~50 times instead of ~25,000. It
/// helps buffers above glibc's mmap threshold (32 MiB after [`tune_allocator`]), whose pages are
/// untouched until written: call it before the first write. Best effort: an error or another OS
/// leaves `buf` as it was.
pub fn advise_huge_pages(buf: &mut [f32]) {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let addr = buf.as_mut_ptr() as usize;
        let start = addr.next_multiple_of(PAGE);
        let end = (addr + std::mem::size_of_val(buf)) / PAGE * PAGE;
        if end >= start + (2 << 20) {
            // SAFETY: [start, end) lies inside `buf`, which we borrow mutably; MADV_HUGEPAGE only
            // changes how the kernel backs these pages, never their contents.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buf;
}

/// Total RAM of this machine in bytes (`MemTotal` of `/proc/meminfo`), `None` where unknown.
pub fn total_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Memory a run can still use, in bytes: `MemAvailable` of `/proc/meminfo`, lowered to the
/// room left under this process's cgroup (v2 `memory.max`) where one is set; `None` where
/// neither is known.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok();
    let avail = text.as_deref().and_then(|t| {
        let line = t.lines().find(|l| l.starts_with("MemAvailable:"))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok()
    });
    let avail = avail.map(|kb| kb * 1024).or_else(total_memory);
    let read = |f: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{f}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let cgroup =
        read("memory.max").map(|max| max.saturating_sub(read("memory.current").unwrap_or(0)));
    match (avail, cgroup) {
        (Some(a), Some(c)) => Some(a.min(c)),
        (a, c) => a.or(c),
    }
}

/// The memory a config's sizes are checked against before anything is allocated:
/// [`available_memory`], or 8 GiB where it is unknown.
pub fn usable_memory() -> u64 {
    available_memory().unwrap_or(8 << 30)
}

/// `bytes` as gigabytes for messages (`12.35 GB`).
pub fn gb(bytes: u64) -> String {
    format!("{:.2} GB", bytes as f64 / 1e9)
}

/// A size that does not fit the memory this machine has available (see [`fits`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} need {}, more than the {} this machine has available", gb(*need), gb(*have))]
pub struct NoRoom {
    /// What the bytes are for (a flag and its value, a part of a plan).
    pub what: String,
    /// The bytes needed.
    pub need: u64,
    /// The bytes available ([`usable_memory`]).
    pub have: u64,
}

/// Refuses `need` bytes beyond [`usable_memory`]: the error says the need, what this machine
/// has, and `what` the bytes are for.
pub fn fits(need: u64, what: &str) -> Result<(), NoRoom> {
    let have = usable_memory();
    if need > have {
        return Err(NoRoom {
            what: what.to_string(),
            need,
            have,
        });
    }
    Ok(())
}
