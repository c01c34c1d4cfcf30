//! Random identifiers, keys and nonces for the modules that cannot report a
//! failure: the operating system's generator (the browser's
//! `crypto.getRandomValues` in wasm) through `getrandom`. `files` calls
//! `getrandom` itself and reports a failure as an error; `intake` uses
//! x25519-dalek's generator over the same source.

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
