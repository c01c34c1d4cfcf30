//! Security and convergence properties of `amicus-core`, written for auditors.
//! Each module states a property and checks it; `support` holds the helpers.

mod age_interop;
mod documents;
mod drop_boxes;
mod records;
mod removal;
mod restart;
mod revocation;
mod spaces;
mod support;
