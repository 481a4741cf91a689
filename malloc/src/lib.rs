//! How many malloc arenas the `euid-map` command's threads spread over (glibc only).
//!
//! glibc gives each new thread an arena of its own, up to eight per core, and keeps the
//! memory freed in an arena for that arena. A run's stages (reader, hasher, mapper, writer,
//! the joins of `refresh` and of exact dedupe) allocate on a dozen threads: each arena
//! keeps its own high-water mark, so peak RSS is their sum, not the live heap's. A
//! `refresh` night with an export (`scripts/bench_compare.sh`, 2 cores) peaked at 260-271
//! MiB for about 185 MB of live heap. Interleaved runs with `MALLOC_ARENA_MAX` (medians of
//! 3): 16 (glibc's default here) 27.9 s, 33.3 CPU-s, 266 MiB; 4: 28.4 s, 34.6, 224; 3: 27.5
//! s, 33.4, 229; 2: 27.5 s, 33.7, 215. One more arena than cores costs no time here. The
//! cap cost the default `map` (window dedupe, no large join) 2-3 % of CPU at 4, so the
//! command sets it for `refresh` and exact dedupe only.
//!
//! Kept in a crate of its own so that the library keeps `unsafe_code = "forbid"`; here too
//! the one call below is the only exception.
#![deny(unsafe_code)]

/// Arenas for `cores` cores: one per core (the hashing runs a thread per core) and one
/// more.
#[must_use]
pub fn arenas_for(cores: usize) -> usize {
    cores.max(1) + 1
}

/// Caps glibc's malloc arenas at `n`, unless the user set `MALLOC_ARENA_MAX` or
/// `glibc.malloc.arena_max` in `GLIBC_TUNABLES` (theirs wins). Call first thing in `main`, before any thread starts:
/// threads that already hold an arena keep it. Returns whether the cap was set (never off
/// glibc).
pub fn limit_arenas(n: usize) -> bool {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some()
        || std::env::var_os("GLIBC_TUNABLES").is_some()
    {
        return false;
    }
    set_arena_max(n)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_arena_max(n: usize) -> bool {
    let n = libc::c_int::try_from(n).unwrap_or(libc::c_int::MAX).max(1);
    // SAFETY: mallopt takes no pointer and only stores one of the allocator's parameters;
    // any positive value is valid for M_ARENA_MAX. glibc documents it MT-Unsafe: the caller
    // (the binary's `main`) calls it before any other thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, n) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_n: usize) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arenas_are_one_per_core_and_one_more() {
        assert_eq!(arenas_for(0), 2);
        assert_eq!(arenas_for(2), 3);
        assert_eq!(arenas_for(16), 17);
    }

    #[test]
    fn glibc_accepts_the_cap() {
        if std::env::var_os("MALLOC_ARENA_MAX").is_none()
            && !std::env::var("GLIBC_TUNABLES")
                .unwrap_or_default()
                .contains("arena_max")
        {
            assert_eq!(
                limit_arenas(4),
                cfg!(all(target_os = "linux", target_env = "gnu"))
            );
        }
    }
}
