//! Alibaba's percent-encoding: the output holds only unreserved characters and `%XX` with
//! uppercase hex, has the predicted length, and decodes back to the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mpu_relay_operator::cloud::sign::{percent_encode, verify::decode_query};

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

fuzz_target!(|input: &str| {
    let encoded = percent_encode(input);
    let bytes = encoded.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = &bytes[i + 1..i + 3];
            assert!(
                hex.iter()
                    .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h)),
                "{encoded:?}"
            );
            i += 3;
        } else {
            assert!(
                unreserved(bytes[i]),
                "{encoded:?} keeps {:?}",
                bytes[i] as char
            );
            i += 1;
        }
    }
    let expected_len: usize = input
        .bytes()
        .map(|b| if unreserved(b) { 1 } else { 3 })
        .sum();
    assert_eq!(encoded.len(), expected_len);
    // Decoding gives the input back, as a value and as a key.
    let decoded = decode_query(&format!("k={encoded}")).expect("our own encoding decodes");
    assert_eq!(decoded.get("k").map(String::as_str), Some(input));
    if !input.is_empty() {
        let decoded = decode_query(&format!("{encoded}=v")).expect("our own encoding decodes");
        assert_eq!(decoded.get(input).map(String::as_str), Some("v"));
    }
});
