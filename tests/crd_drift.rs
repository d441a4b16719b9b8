//! `crds/` and the chart's copy are generated from the Rust types and must never drift from them.

use mpu_relay_operator::api::{CRD_FILE_NAME, crd_yaml};
use std::path::Path;

fn assert_matches_types(path: &Path) {
    let on_disk = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(
        on_disk == crd_yaml(),
        "{} differs from the Rust types in src/api.rs; regenerate it with `make crds`",
        path.display()
    );
}

#[test]
fn crds_directory_matches_the_rust_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_matches_types(&root.join("crds").join(CRD_FILE_NAME));
}

#[test]
fn chart_crds_directory_matches_the_rust_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_matches_types(
        &root
            .join("charts/mpu-relay-operator/crds")
            .join(CRD_FILE_NAME),
    );
}
