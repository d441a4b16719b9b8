//! Canonical query and its decoder: `decode_query(canonical_query(map)) == map` for any map;
//! any received query string decodes or is refused without a panic, and what decodes re-encodes
//! to a canonical form that decodes to the same map.

#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mpu_relay_operator::cloud::sign::{canonical_query, verify::decode_query};

#[derive(Arbitrary, Debug)]
enum Input {
    Map(BTreeMap<String, String>),
    Raw(String),
}

fuzz_target!(|input: Input| {
    match input {
        Input::Map(map) => {
            let query = canonical_query(&map);
            let decoded = decode_query(&query).expect("a canonical query decodes");
            assert_eq!(decoded, map, "{query:?}");
            // Canonical means stable: encoding the decoded map again gives the same text.
            assert_eq!(canonical_query(&decoded), query);
        }
        Input::Raw(raw) => {
            if let Ok(map) = decode_query(&raw) {
                let canonical = canonical_query(&map);
                assert_eq!(
                    decode_query(&canonical).expect("re-encoded query decodes"),
                    map
                );
            }
        }
    }
});
