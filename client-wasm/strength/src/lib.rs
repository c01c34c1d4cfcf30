//! The passphrase strength check of the browser: `amicus_core::at_rest::
//! check_new_passphrase` (zxcvbn, the threshold `amicus register` applies)
//! through wasm-bindgen, in a module of its own so that the client's
//! module does not carry zxcvbn's dictionaries.

use wasm_bindgen::prelude::*;

/// The zxcvbn score (0 to 4) of a new passphrase for `user` if it is too
/// easy to guess, or nothing if it may be used.
#[wasm_bindgen]
pub fn weakness(passphrase: &str, user: &str) -> Option<u8> {
    amicus_core::at_rest::check_new_passphrase(passphrase, &[user])
        .err()
        .map(|weak| weak.score)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The passphrases the browser tests choose pass; easy ones do not.
    #[test]
    fn the_browser_refuses_what_the_command_line_refuses() {
        for weak in ["amina2024", "password1", "azertyuiop"] {
            assert!(weakness(weak, "amina").is_some(), "{weak} accepted");
        }
        for strong in [
            "correct horse battery staple",
            "another browser, another passphrase",
            "a third passphrase",
        ] {
            assert_eq!(weakness(strong, "amina"), None, "{strong} refused");
        }
    }
}
