//! Process memory tuning for reading large feature caches: glibc malloc thresholds and
//! transparent huge pages.
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
