//! `crds/` and the chart's copy are generated from the Rust types and must never drift from them.

use mpu_relay_operator::api::crd_files;
use std::collections::BTreeSet;
use std::path::Path;

fn assert_matches_types(dir: &Path) {
    let expected = crd_files();
    for file in &expected {
        let path = dir.join(&file.file_name);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read {}: {e}; regenerate with `make crds`",
                path.display()
            )
        });
        assert!(
            on_disk == file.yaml,
            "{} differs from the Rust types in src/api/; regenerate it with `make crds`",
            path.display()
        );
    }
    let names: BTreeSet<String> = expected.into_iter().map(|f| f.file_name).collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        on_disk,
        names,
        "{} holds other files than the generated CRDs",
        dir.display()
    );
}

#[test]
fn crds_directory_matches_the_rust_types() {
    assert_matches_types(&Path::new(env!("CARGO_MANIFEST_DIR")).join("crds"));
}

#[test]
fn chart_crds_directory_matches_the_rust_types() {
    assert_matches_types(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/mpu-relay-operator/crds"),
    );
}
