//! Every input kept under `fuzz/regressions/<target>/` (seeds, and what
//! fuzzing once found) goes through its fuzz target's body in every test
//! run: `amicus_tests::fuzz`.

use std::path::Path;

#[test]
fn every_kept_fuzz_input_still_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
    for (name, body) in amicus_tests::fuzz::TARGETS {
        let dir = root.join(name);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "{} holds no input", dir.display());
        for input in &inputs {
            println!("{name}: {}", input.display());
            body(&std::fs::read(input).unwrap());
        }
    }
}
