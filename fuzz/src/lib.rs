//! The operator's parsers of untrusted input, compiled from the operator's own source files (not
//! copies) under the operator's crate name, so the fuzz targets read
//! `mpu_relay_operator::cloud::...` exactly as the operator's code does.
//!
//! Why not depend on the operator crate: it would build kube, k8s-openapi, axum and the rest with
//! sanitizer and coverage instrumentation (over 15 minutes on 2 cores) for two modules that use
//! none of them. `src/cloud/response.rs` is pure and uses only the crates
//! listed in `fuzz/Cargo.toml` (kept at the operator's versions); if it starts using
//! another part of the operator, this shim stops compiling and says so.

#[path = "../../src/cloud/response.rs"]
#[doc(hidden)]
pub mod response;

/// The operator's `cloud` module paths (`#[path]` inside an inline module would resolve through a
/// `fuzz/src/cloud/` directory that does not exist, hence the re-exports).
pub mod cloud {
    pub use super::response;
    /// The workspace's signing crate, with its verifier (`verify`), which the targets fuzz.
    pub use mpu_relay_sign as sign;
}
