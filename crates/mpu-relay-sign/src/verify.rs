//! The verifier's half of signing: what a server (the cloud simulator) needs to check a received
//! request. Behind the `verify` feature, so that the operator's binary contains none of it.

use std::collections::BTreeMap;

use crate::{Method, SignError, V1Signature, V3_ALGORITHM, V3Signature, params, v1_sign, v3_sign};

/// Decodes a received query string (`a=b&c=d`) into a map, for the verifier. Accepts both `%20` and `+` for a
/// space, because today's Python SDK sends `+` (form encoding) while we and the old SDK send `%20`. A parameter
/// given twice is an error: which value was signed would be ambiguous.
pub fn decode_query(raw: &str) -> Result<BTreeMap<String, String>, SignError> {
    let mut map = BTreeMap::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key)?;
        let value = percent_decode(value)?;
        if map.contains_key(&key) {
            return Err(SignError::DuplicateParameter(key));
        }
        map.insert(key, value);
    }
    Ok(map)
}

fn percent_decode(input: &str) -> Result<String, SignError> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .ok_or(SignError::InvalidPercentEncoding)?;
                let hi = hex_value(hex[0]).ok_or(SignError::InvalidPercentEncoding)?;
                let lo = hex_value(hex[1]).ok_or(SignError::InvalidPercentEncoding)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| SignError::InvalidUtf8)
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|v| u8::try_from(v).ok())
}

/// Compares two signatures without stopping at the first difference, so a verifier leaks no timing hint.
pub fn signatures_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// For the verifier: recomputes the V1 signature of received parameters, ignoring the `Signature` among them.
pub fn v1_recompute(
    method: Method,
    received: &BTreeMap<String, String>,
    secret: &str,
) -> V1Signature {
    if received.contains_key(params::SIGNATURE) {
        let mut signed = received.clone();
        signed.remove(params::SIGNATURE);
        v1_sign(method, &signed, secret)
    } else {
        v1_sign(method, received, secret)
    }
}

/// The parts of a received V3 `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V3Authorization {
    pub access_key_id: String,
    /// Lowercase names, in the order given.
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Parses `ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=a;b,Signature=hex`.
pub fn parse_v3_authorization(value: &str) -> Result<V3Authorization, SignError> {
    let (algorithm, rest) = value
        .trim()
        .split_once(' ')
        .ok_or(SignError::MalformedAuthorization)?;
    if algorithm != V3_ALGORITHM {
        return Err(SignError::UnsupportedAlgorithm(algorithm.to_owned()));
    }
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (key, val) = part
            .trim()
            .split_once('=')
            .ok_or(SignError::MalformedAuthorization)?;
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => return Err(SignError::MalformedAuthorization),
        };
        if slot.replace(val).is_some() {
            return Err(SignError::MalformedAuthorization);
        }
    }
    match (credential, signed, signature) {
        (Some(ak), Some(names), Some(sig))
            if !ak.is_empty() && !names.is_empty() && !sig.is_empty() =>
        {
            Ok(V3Authorization {
                access_key_id: ak.to_owned(),
                signed_headers: names.split(';').map(str::to_ascii_lowercase).collect(),
                signature: sig.to_owned(),
            })
        }
        _ => Err(SignError::MalformedAuthorization),
    }
}

/// For the verifier: recomputes a V3 signature from a received request. Only the headers named in
/// `signed_header_names` (from the `Authorization` header) are used; one that was not received is an error.
/// `payload_sha256` should be the server's own hash of the received body, not the client's header.
#[allow(clippy::too_many_arguments)] // each argument is a separate part of the received request
pub fn v3_recompute(
    method: Method,
    path: &str,
    query: &BTreeMap<String, String>,
    received_headers: &[(String, String)],
    signed_header_names: &[String],
    payload_sha256: &str,
    access_key_id: &str,
    secret: &str,
) -> Result<V3Signature, SignError> {
    let mut selected = Vec::with_capacity(signed_header_names.len());
    for name in signed_header_names {
        let before = selected.len();
        selected.extend(
            received_headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .cloned(),
        );
        if selected.len() == before {
            return Err(SignError::MissingSignedHeader(name.clone()));
        }
    }
    Ok(v3_sign(
        method,
        path,
        query,
        &selected,
        payload_sha256,
        access_key_id,
        secret,
    ))
}
