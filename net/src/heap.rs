//! How the C allocator keeps the memory a process frees. glibc gives the top of a heap back to the kernel
//! as soon as 128 KiB of it is free, and serves requests from 128 KiB up with mappings of their own (the
//! threshold then moves with what was freed). A peer moving blocks allocates and frees megabytes a second,
//! so the same pages went back to the kernel and were faulted in again; on a virtual machine that returns
//! freed memory to its host, each of those faults also costs the host. Keeping freed memory took a 1 GiB
//! seeder from 0.74-0.78 to 0.64 CPU s (page faults were 8% of its profile; `bench/RESULTS.md`, issue 17).

/// Freed heap kept by the allocator before it trims (per arena).
const TRIM_THRESHOLD: i32 = 16 * 1024 * 1024;

/// Allocations at least this large get a mapping of their own (and give it back when freed).
const MMAP_THRESHOLD: i32 = 4 * 1024 * 1024;

/// Keep up to [`TRIM_THRESHOLD`] of freed heap and map only allocations of [`MMAP_THRESHOLD`] and more on
/// their own. Call once, first thing, in a long-running process. Returns whether the allocator took the
/// settings (always false off glibc, where nothing is changed).
pub fn keep_freed_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes the allocator's tuning parameters; it is called before any thread
        // of ours starts.
        unsafe {
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
                && libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    /// glibc takes both settings (the values are inside its limits).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_takes_the_settings() {
        assert!(super::keep_freed_heap());
    }
}
