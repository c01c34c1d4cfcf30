#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| amicus_tests::fuzz::frames(data));
