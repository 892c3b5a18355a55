//! Software prefetch: the window state is latency-bound on cache misses (each event touches a
//! random user's state), so the operator asks for the next users' memory a few events ahead.

/// Cache line size of the machines vigil targets.
const LINE: usize = 64;

/// Hints the CPU to load the cache lines holding `value`; never faults, never changes results.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    let start = (value as *const T).cast::<u8>();
    for offset in (0..std::mem::size_of::<T>().max(1)).step_by(LINE) {
        prefetch_line(start.wrapping_add(offset));
    }
}

#[inline(always)]
fn prefetch_line(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` is a hint with no architectural effect; it does not fault even on an
    // invalid address (here it is inside a live reference). SSE is part of the x86_64 baseline,
    // so the target feature is always present.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}
