//! Response and error decoding: any status, header and body decode to a value or a typed error,
//! never a panic, and what comes out respects the decoder's documented bounds.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mpu_relay_operator::cloud::response::{
    CloudError, ID_MAX, MESSAGE_MAX, decode_response, parse_retry_after,
    server_string_to_sign, truncate_chars,
};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    http_status: u16,
    retry_after: Option<&'a str>,
    body: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let ok_status = (200..300).contains(&input.http_status);
    match decode_response(input.http_status, input.retry_after, input.body) {
        Ok(status) => {
            assert!(
                ok_status,
                "a {} answer decoded as a status",
                input.http_status
            );
            // The body was a JSON object naming this RequestId, kept to its first ID_MAX
            // characters (a RequestId ends up in status and logs: bounded like an error's).
            let value: serde_json::Value = serde_json::from_slice(input.body).unwrap();
            let sent = value["RequestId"].as_str().unwrap();
            assert_eq!(truncate_chars(sent, ID_MAX), status.request_id);
            assert!(status.request_id.chars().count() <= ID_MAX + 1);
            assert_eq!(value["Status"].as_i64(), Some(status.status));
        }
        Err(error) => {
            // Everything the controller asks of an error works on every error.
            let _ = (
                error.class(),
                error.reason(),
                error.retry_after(),
                error.to_string(),
            );
            match &error {
                CloudError::Api(api) => {
                    assert!(
                        !ok_status,
                        "a {} answer decoded as an error",
                        api.http_status
                    );
                    assert!(!api.code.is_empty());
                    assert!(api.code.chars().count() <= ID_MAX + 1);
                    assert!(api.message.chars().count() <= MESSAGE_MAX + 1);
                    assert_eq!(api.retry_after, parse_retry_after(input.retry_after));
                    let _ = server_string_to_sign(&api.message);
                }
                CloudError::Decode { .. } => {}
                other => panic!("decoding produced a transport error: {other:?}"),
            }
        }
    }
    if let Some(delay) = parse_retry_after(input.retry_after) {
        assert!(!delay.is_zero(), "only a positive retry-after counts");
    }
});
