//! The verifier's parser of V3 `Authorization` headers: any header value parses or is refused
//! without a panic; a parsed one has every part, and rendering it again parses to the same parts.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mpu_relay_operator::cloud::sign::{V3_ALGORITHM, verify::parse_v3_authorization};

fuzz_target!(|value: &str| {
    let Ok(auth) = parse_v3_authorization(value) else {
        return;
    };
    assert!(!auth.access_key_id.is_empty());
    assert!(!auth.signature.is_empty());
    assert!(!auth.signed_headers.is_empty());
    for name in &auth.signed_headers {
        assert_eq!(name, &name.to_ascii_lowercase());
        assert!(!name.contains(';') && !name.contains(','));
    }
    let rendered = format!(
        "{V3_ALGORITHM} Credential={},SignedHeaders={},Signature={}",
        auth.access_key_id,
        auth.signed_headers.join(";"),
        auth.signature
    );
    assert_eq!(
        parse_v3_authorization(&rendered).expect("a rendered header parses"),
        auth,
        "{rendered:?}"
    );
});
