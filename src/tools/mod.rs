//! The course's socket utilities as commands: the well-known ports table
//! ([`ports`]), name and address lookups and conversions ([`resolve`]), and a
//! `connect_ex`-style port checker ([`probe`]). Each returns plain data that
//! the CLI prints as a table or as JSON (shapes in `docs/tools.md`).

pub mod ports;
pub mod probe;
pub mod resolve;
