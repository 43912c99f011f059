//! This process's resident memory, CPU time and thread count, read from `/proc/self`
//! (Linux). Elsewhere every reading is `None`. Used by the swarm report and benchmarks.

use std::time::Duration;

/// Linux reports CPU times in clock ticks of `USER_HZ`, 100 per second on every
/// architecture's user-space ABI.
const USER_HZ: u64 = 100;

fn status_field(name: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resident set size in bytes.
pub fn rss_bytes() -> Option<u64> {
    status_field("VmRSS:").map(|kb| kb * 1024)
}

/// Threads of this process.
pub fn threads() -> Option<u64> {
    status_field("Threads:")
}

/// CPU time used so far, user plus system.
pub fn cpu_time() -> Option<Duration> {
    cpu_time_of("/proc/self/stat")
}

/// CPU time used so far by process `pid`, user plus system.
pub fn cpu_time_of_pid(pid: u32) -> Option<Duration> {
    cpu_time_of(&format!("/proc/{pid}/stat"))
}

fn cpu_time_of(path: &str) -> Option<Duration> {
    let text = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces; fields resume after its closing parenthesis.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15 (1-based).
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

/// Asks the C allocator to give freed pages back to the OS (glibc's `malloc_trim`). After a
/// burst such as a swarm joining, freed memory otherwise stays in the process's arenas and
/// counts as resident. A no-op where the allocator is not glibc's.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it has no
    // preconditions and is safe to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn readings_are_plausible() {
        let rss = rss_bytes().expect("VmRSS");
        assert!(rss > 100_000 && rss < 64 << 30, "{rss}");
        assert!(threads().expect("Threads") >= 1);
        // Spin until this process has used 100 ms of CPU (however loaded the machine is):
        // the reading must grow, and by no more than the wall time allows on this thread.
        let before = cpu_time().expect("cpu");
        let t = std::time::Instant::now();
        let mut x = 0u64;
        let used = loop {
            for _ in 0..100_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            let used = cpu_time().expect("cpu") - before;
            if used >= Duration::from_millis(100) || t.elapsed() > Duration::from_secs(20) {
                break used;
            }
        };
        std::hint::black_box(x);
        let wall = t.elapsed();
        assert!(
            used >= Duration::from_millis(100),
            "{used:?} of CPU in {wall:?}"
        );
        // Other test threads of this process may run too: allow the machine's two cores.
        assert!(
            used <= wall * 4 + Duration::from_millis(50),
            "{used:?} in {wall:?}"
        );
    }
}
