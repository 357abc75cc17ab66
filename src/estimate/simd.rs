//! Runtime dispatch of the numeric passes over large matrices to the CPU's vector units, and
//! memory for them on huge pages ([`reserve_f64`]).
//!
//! The binary is built for the baseline x86-64 CPU (SSE2). The passes whose cost is one read of
//! a large matrix are written once as plain loops that the compiler vectorises, marked
//! `#[inline(always)]`, and instantiated twice: once for the baseline and once inside a
//! function compiled with AVX2 (four f64 lanes instead of two). [`wide`] says once per process
//! whether the CPU has AVX2; the callers branch on it.
//!
//! The two instantiations compute the same values bit for bit: the compiler does not reorder
//! floating-point additions nor contract a multiply and an add into an FMA without being told,
//! so vectorisation only runs independent (per-column) sums side by side. Sums across a row
//! are written with explicit independent accumulators where they appear, the same on both
//! paths. A test runs both paths on the same data and compares the bits.

/// True when the CPU has AVX2 (checked once; always false off x86-64 or when
/// `INFOAUDIT_NO_SIMD` is set, e.g. to time the baseline path).
pub fn wide() -> bool {
    use std::sync::OnceLock;
    #[cfg(test)]
    if BASELINE_ONLY.with(|b| b.get()) {
        return false;
    }
    static WIDE: OnceLock<bool> = OnceLock::new();
    *WIDE.get_or_init(|| {
        if std::env::var_os("INFOAUDIT_NO_SIMD").is_some() {
            return false;
        }
        detect()
    })
}

#[cfg(test)]
thread_local! {
    static BASELINE_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the baseline instances only on this thread (tests compare the two paths).
#[cfg(test)]
pub(crate) fn on_baseline<T>(f: impl FnOnce() -> T) -> T {
    BASELINE_ONLY.with(|b| b.set(true));
    let out = f();
    BASELINE_ONLY.with(|b| b.set(false));
    out
}

#[cfg(target_arch = "x86_64")]
fn detect() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> bool {
    false
}

/// Defines `$name` (the dispatcher) from `$body`, an `#[inline(always)]` function with the same
/// signature: the AVX2 instance runs when [`wide`] says so, the baseline instance otherwise.
macro_rules! dispatched {
    ($(#[$m:meta])* $vis:vis fn $name:ident / $body:ident ( $($arg:ident : $ty:ty),* $(,)? ) -> $ret:ty) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn wide_instance($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                if $crate::estimate::simd::wide() {
                    // SAFETY: `wide()` checked at run time that the CPU has AVX2, the only
                    // feature this instance is compiled for.
                    #[allow(unsafe_code)]
                    return unsafe { wide_instance($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}
pub(crate) use dispatched;

/// Sum of `x` with 16 independent accumulators (four AVX2 registers; the memory-bandwidth
/// yardstick of the benches, and what numpy's pairwise `sum` does in spirit).
#[inline(always)]
fn sum_body(x: &[f64]) -> f64 {
    let mut acc = [0.0f64; 16];
    let chunks = x.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..16 {
            acc[i] += c[i];
        }
    }
    let mut pair = [0.0f64; 8];
    for i in 0..8 {
        pair[i] = acc[i] + acc[i + 8];
    }
    let mut s = 0.0;
    for p in pair {
        s += p;
    }
    for v in rest {
        s += v;
    }
    s
}

dispatched! {
    /// Sum of the values (see [`sum_body`]); the same bits on both paths.
    pub fn sum / sum_body(x: &[f64]) -> f64
}

/// Sum of `x` on the baseline path, whatever the CPU (for tests and benches that compare).
pub fn sum_baseline(x: &[f64]) -> f64 {
    sum_body(x)
}

/// Asks the CPU to bring the cache lines of `x` towards the core (a hint: no fault, no effect
/// on any value). The passes that do some work per row of a large matrix call it for a row a few
/// rows ahead, so the memory reads overlap the work instead of waiting behind it.
#[inline(always)]
pub fn prefetch(x: &[f64]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = x.as_ptr().cast::<i8>();
        let bytes = std::mem::size_of_val(x);
        let mut off = 0;
        while off < bytes {
            // SAFETY: SSE is part of the x86-64 baseline, and a prefetch of an address inside
            // the slice (here every 64th byte of it) neither faults nor changes memory.
            #[allow(unsafe_code)]
            unsafe {
                _mm_prefetch(p.add(off), _MM_HINT_T0)
            };
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}

/// An empty vector with room for `count` values. From 16 MiB on, the kernel is asked to back it
/// with huge pages (`MADV_HUGEPAGE`, which Linux honours where transparent huge pages are set to
/// `madvise` or `always`): the passes over a large probability matrix are bound by memory, and
/// with 4 KiB pages they also miss the TLB every 4 KiB (numpy does the same for its large
/// arrays). Elsewhere, or if the kernel refuses, the vector is the same, on ordinary pages.
pub fn reserve_f64(count: usize) -> Result<Vec<f64>, std::collections::TryReserveError> {
    let mut v: Vec<f64> = Vec::new();
    v.try_reserve_exact(count)?;
    let bytes = count * std::mem::size_of::<f64>();
    if bytes >= HUGE_FROM {
        advise_huge(v.as_mut_ptr().cast(), bytes);
    }
    Ok(v)
}

/// Arrays from this size on are advised to huge pages (see [`reserve_f64`]).
const HUGE_FROM: usize = 16 << 20;

#[cfg(target_os = "linux")]
fn advise_huge(start: *mut u8, bytes: usize) {
    const PAGE: usize = 4096;
    let addr = start as usize;
    let first = addr.div_ceil(PAGE) * PAGE;
    let end = (addr + bytes) / PAGE * PAGE;
    if end <= first {
        return;
    }
    if let Some(p) = std::ptr::NonNull::new(first as *mut std::ffi::c_void) {
        // SAFETY: [first, end) lies inside the allocation just reserved by this vector (whole
        // pages of it); MADV_HUGEPAGE only changes how the kernel backs those pages, never
        // their contents or their mapping, and a refusal is ignored.
        #[allow(unsafe_code)]
        let _ = unsafe {
            nix::sys::mman::madvise(p, end - first, nix::sys::mman::MmapAdvise::MADV_HUGEPAGE)
        };
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge(_start: *mut u8, _bytes: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sum_paths_give_the_same_bits() {
        // On a CPU without AVX2 both calls take the baseline path and the test still checks
        // the sum against the compensated one.
        // Values of very different magnitudes, so that any reordering of the additions would
        // show in the last bits.
        let x: Vec<f64> = (0..10_007)
            .map(|i: i32| ((i * 7919) % 1000) as f64 * 10f64.powi(i % 13 - 6))
            .collect();
        assert_eq!(sum(&x).to_bits(), sum_baseline(&x).to_bits());
        assert_eq!(sum(&x).to_bits(), on_baseline(|| sum(&x)).to_bits());
        let exact: f64 = {
            // Compensated reference sum.
            let (mut s, mut c) = (0.0f64, 0.0f64);
            for &v in &x {
                let y = v - c;
                let t = s + y;
                c = (t - s) - y;
                s = t;
            }
            s
        };
        assert!((sum(&x) - exact).abs() <= 1e-12 * exact.abs());
    }

    /// A large reservation is usable like any vector, and where the kernel offers transparent
    /// huge pages on request (`[madvise]` or `[always]`), the pages behind it are huge: the
    /// mapping that holds the vector reports `AnonHugePages` in /proc/self/smaps.
    #[test]
    fn large_reservations_are_backed_by_huge_pages_where_the_kernel_allows() {
        let n = 64 << 17; // 64 MiB of f64
        let mut v = reserve_f64(n).unwrap();
        assert!(v.is_empty() && v.capacity() >= n);
        v.extend((0..n).map(|i| i as f64));
        assert_eq!(v[n - 1], (n - 1) as f64);
        assert!(reserve_f64(0).unwrap().is_empty());
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .unwrap_or_default();
        if !(thp.contains("[madvise]") || thp.contains("[always]")) {
            eprintln!("transparent huge pages are off here ({thp:?}): only the vector is checked");
            return;
        }
        // The advice covers whole pages, so the kernel splits the mapping: look at the one
        // holding the middle of the vector.
        let addr = v.as_ptr() as usize + n * 4;
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        let mut huge_kb = None;
        for line in smaps.lines() {
            let head = line.split_whitespace().next().unwrap_or("");
            if let Some((a, b)) = head.split_once('-') {
                if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
                {
                    inside = a <= addr && addr < b;
                    continue;
                }
            }
            if inside && line.starts_with("AnonHugePages:") {
                huge_kb = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<u64>().ok());
            }
        }
        let huge_kb = huge_kb.expect("the vector's mapping is in smaps");
        assert!(
            huge_kb >= 2048,
            "no huge page behind a 64 MiB reservation ({huge_kb} kB)"
        );
    }
}
