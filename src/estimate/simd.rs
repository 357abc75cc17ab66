//! Runtime dispatch of the numeric passes over large matrices to the CPU's vector units.
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
}
