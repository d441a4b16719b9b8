//! An AccessKey ready to sign with, and the type that keeps its secret out of every log line.
//!
//! A leaf: the HTTP client signs with these and the credential sources
//! ([`crate::cloud::credentials`]) produce them, so both sit above it.

use std::fmt;
use std::sync::Arc;

use crate::cloud::sign;

/// A secret value. Debug and Display print `<redacted>`; only [`SecretString::expose`] gives
/// the value, and only signing calls it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(Arc<str>);

impl SecretString {
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        SecretString(value.into())
    }

    /// The secret itself. Call it only to sign a request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An AccessKey ready to sign with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: SecretString,
    /// STS token of temporary credentials.
    pub security_token: Option<SecretString>,
}

impl Credentials {
    /// AccessKey credentials (long-term, or temporary with a token).
    pub fn access_key(
        access_key_id: impl Into<String>,
        access_key_secret: impl Into<Arc<str>>,
        security_token: Option<String>,
    ) -> Self {
        Credentials {
            access_key_id: access_key_id.into(),
            access_key_secret: SecretString::new(access_key_secret),
            security_token: security_token.map(SecretString::new),
        }
    }

    /// The borrowed form the signer takes.
    pub fn signing(&self) -> sign::SigningKey<'_> {
        sign::SigningKey {
            access_key_id: &self.access_key_id,
            access_key_secret: self.access_key_secret.expose(),
            security_token: self.security_token.as_ref().map(SecretString::expose),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_never_appear_in_debug_or_display() {
        let c = Credentials::access_key("LTAIexample", "s3cr3t-value", Some("tok3n".into()));
        let printed = format!("{c:?} {} {:?}", c.access_key_secret, c.signing());
        assert!(!printed.contains("s3cr3t-value"), "{printed}");
        assert!(!printed.contains("tok3n"), "{printed}");
        assert!(printed.contains("LTAIexample"));
    }
}
