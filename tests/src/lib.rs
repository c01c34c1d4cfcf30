//! End-to-end tests of Amicus live in `tests/e2e`; this library holds
//! what the fuzz targets share with them.
#![forbid(unsafe_code)]

pub mod fuzz;
