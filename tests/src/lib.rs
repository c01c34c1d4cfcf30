//! End-to-end tests of Amicus; they live in `tests/e2e`.
