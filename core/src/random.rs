//! The one source of randomness of the crate: the operating system's (or the
//! browser's `crypto.getRandomValues`) through `getrandom`.

/// Returns `N` random bytes.
///
/// # Panics
/// Panics if the platform has no random source at all; nothing in Amicus can
/// work safely without one, so continuing would be worse.
pub(crate) fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).expect("the platform's random number generator failed");
    out
}
