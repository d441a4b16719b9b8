//! Where calls may go: an account's endpoint, normalized so that every spelling of one host is
//! one endpoint, and the operator's allow-list of endpoints.
//!
//! The allow-list is the line between what a tenant writes and where the operator sends signed
//! requests: an endpoint outside it is refused before any request is built.

use std::fmt;

/// URL scheme of an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    fn parse(s: &str) -> Option<Scheme> {
        match s.to_ascii_lowercase().as_str() {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            _ => None,
        }
    }
}

/// A normalized endpoint: scheme, lowercase host, explicit port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
}

/// Why an endpoint or a pattern was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("endpoint {0:?} is not a host, host:port or http(s) URL without a path")]
    Malformed(String),
    #[error("endpoint scheme of {0:?} is not http or https")]
    Scheme(String),
    #[error("endpoint {endpoint} is not in the operator's allowed endpoints ({allowed})")]
    NotAllowed { endpoint: String, allowed: String },
    #[error(
        "allowed-endpoint pattern {0:?} is not scheme://host[:port], scheme://*.domain[:port] or with port *"
    )]
    Pattern(String),
}

impl Endpoint {
    /// Parses `host`, `host:port` or `http(s)://host[:port][/]`; HTTPS unless `http://` is
    /// written. Hosts are DNS names or IPv4 addresses, compared case-insensitively.
    pub fn parse(endpoint: &str) -> Result<Endpoint, EndpointError> {
        let malformed = || EndpointError::Malformed(bounded(endpoint));
        let trimmed = endpoint.trim();
        let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
        let (scheme, rest) = match trimmed.split_once("://") {
            Some((scheme, rest)) => (
                Scheme::parse(scheme).ok_or_else(|| EndpointError::Scheme(bounded(endpoint)))?,
                rest,
            ),
            None => (Scheme::Https, trimmed),
        };
        let (host, port) = split_port(rest).ok_or_else(malformed)?;
        let host = normalize_host(host).ok_or_else(malformed)?;
        Ok(Endpoint {
            scheme,
            port: port.unwrap_or(scheme.default_port()),
            host,
        })
    }

    /// `host` or `host:port` when the port is not the scheme's default: what the `Host` header
    /// carries, and so what V3 signs.
    pub fn authority(&self) -> String {
        if self.port == self.scheme.default_port() {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `scheme://authority`, the base of every request URL.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme.as_str(), self.authority())
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base_url())
    }
}

/// `host[:port]`, the port a number in 1..=65535.
fn split_port(s: &str) -> Option<(&str, Option<u16>)> {
    match s.rsplit_once(':') {
        None => Some((s, None)),
        Some((host, port)) => {
            let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
            Some((host, Some(port)))
        }
    }
}

/// Lowercase, without a trailing dot; `None` unless every label is 1..63 of `[a-z0-9-]` and
/// the whole at most 253 characters (no userinfo, path, IPv6 or other surprises).
fn normalize_host(host: &str) -> Option<String> {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    valid.then_some(host)
}

/// Text from outside, bounded before it goes into an error message.
fn bounded(s: &str) -> String {
    s.chars().take(300).collect()
}

/// One allowed-endpoint pattern: `https://*.aliyuncs.com`, `http://127.0.0.1:*`,
/// `https://live.aliyuncs.com:8443`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pattern {
    scheme: Scheme,
    host: HostPattern,
    /// `None` for `*`.
    port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*.suffix`: any host with at least one more label in front of `.suffix`.
    Subdomains(String),
}

impl Pattern {
    fn parse(pattern: &str) -> Result<Pattern, EndpointError> {
        let bad = || EndpointError::Pattern(bounded(pattern));
        let (scheme, rest) = pattern.trim().split_once("://").ok_or_else(bad)?;
        let scheme = Scheme::parse(scheme).ok_or_else(bad)?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, "*")) => (host, None),
            Some((host, port)) => (host, Some(port.parse::<u16>().map_err(|_| bad())?)),
            None => (rest, Some(scheme.default_port())),
        };
        let host = match host.strip_prefix("*.") {
            Some(suffix) => HostPattern::Subdomains(normalize_host(suffix).ok_or_else(bad)?),
            None => HostPattern::Exact(normalize_host(host).ok_or_else(bad)?),
        };
        Ok(Pattern { scheme, host, port })
    }

    fn matches(&self, endpoint: &Endpoint) -> bool {
        self.scheme == endpoint.scheme
            && self.port.is_none_or(|p| p == endpoint.port)
            && match &self.host {
                HostPattern::Exact(host) => *host == endpoint.host,
                HostPattern::Subdomains(suffix) => endpoint
                    .host
                    .strip_suffix(suffix.as_str())
                    .is_some_and(|front| front.len() > 1 && front.ends_with('.')),
            }
    }
}

/// The endpoints the operator may call (the `--allowed-endpoints` flag).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedEndpoints {
    patterns: Vec<Pattern>,
    text: String,
}

/// Alibaba Cloud's public API hosts, over HTTPS.
pub const DEFAULT_ALLOWED_ENDPOINTS: &str = "https://*.aliyuncs.com";

impl Default for AllowedEndpoints {
    fn default() -> Self {
        AllowedEndpoints::parse(&[DEFAULT_ALLOWED_ENDPOINTS]).expect("the default is valid")
    }
}

impl AllowedEndpoints {
    /// Parses the patterns; an empty list allows nothing.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, EndpointError> {
        let patterns: Vec<&str> = patterns
            .iter()
            .map(|p| p.as_ref().trim())
            .filter(|p| !p.is_empty())
            .collect();
        Ok(AllowedEndpoints {
            text: patterns.join(","),
            patterns: patterns
                .iter()
                .map(|p| Pattern::parse(p))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Parses `endpoint` and checks it against the list.
    pub fn check(&self, endpoint: &str) -> Result<Endpoint, EndpointError> {
        let parsed = Endpoint::parse(endpoint)?;
        if self.patterns.iter().any(|p| p.matches(&parsed)) {
            Ok(parsed)
        } else {
            Err(EndpointError::NotAllowed {
                endpoint: parsed.base_url(),
                allowed: self.text.clone(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(patterns: &[&str]) -> AllowedEndpoints {
        AllowedEndpoints::parse(patterns).unwrap()
    }

    #[test]
    fn every_spelling_of_one_host_is_one_endpoint() {
        let a = Endpoint::parse("live.aliyuncs.com").unwrap();
        for spelling in [
            "https://LIVE.aliyuncs.com:443",
            "https://live.aliyuncs.com/",
            "live.aliyuncs.com.",
            "HTTPS://Live.Aliyuncs.Com",
        ] {
            assert_eq!(Endpoint::parse(spelling).unwrap(), a, "{spelling}");
        }
        assert_eq!(a.authority(), "live.aliyuncs.com");
        assert_eq!(a.base_url(), "https://live.aliyuncs.com");
    }

    #[test]
    fn non_default_ports_stay_in_the_authority() {
        let e = Endpoint::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(e.authority(), "127.0.0.1:8080");
        assert_eq!(e.base_url(), "http://127.0.0.1:8080");
    }

    #[test]
    fn endpoints_with_paths_userinfo_other_schemes_or_bad_ports_are_malformed() {
        for bad in [
            "",
            "https://live.aliyuncs.com/x",
            "ftp://live.aliyuncs.com",
            "https://user@live.aliyuncs.com",
            "live.aliyuncs.com:0",
            "live.aliyuncs.com:70000",
            "[::1]:80",
            "live..aliyuncs.com",
            "-live.aliyuncs.com",
            "live.aliyuncs.com?x=1",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn default_allows_https_aliyuncs_hosts_only() {
        let list = AllowedEndpoints::default();
        assert!(list.check("live.aliyuncs.com").is_ok());
        assert!(list.check("https://live.cn-shanghai.aliyuncs.com").is_ok());
        for refused in [
            "http://live.aliyuncs.com",
            "aliyuncs.com",
            "live.aliyuncs.com.evil.example",
            "evilaliyuncs.com",
            "https://live.aliyuncs.com:8443",
            "127.0.0.1",
            "http://127.0.0.1:8080",
        ] {
            let err = list.check(refused).unwrap_err();
            assert!(
                matches!(err, EndpointError::NotAllowed { .. }),
                "{refused}: {err}"
            );
        }
    }

    #[test]
    fn port_wildcards_and_exact_hosts_widen_the_list() {
        let list = allowed(&["https://*.aliyuncs.com", "http://127.0.0.1:*"]);
        assert!(list.check("http://127.0.0.1:38211").is_ok());
        assert!(list.check("https://127.0.0.1:38211").is_err());
        assert!(list.check("http://127.0.0.2:38211").is_err());
        let exact = allowed(&["http://127.0.0.1:8080"]);
        assert!(exact.check("http://127.0.0.1:8080").is_ok());
        assert!(exact.check("http://127.0.0.1:8081").is_err());
    }

    #[test]
    fn empty_list_allows_nothing_and_bad_patterns_are_refused() {
        assert!(allowed(&[]).check("live.aliyuncs.com").is_err());
        for bad in [
            "*.aliyuncs.com",
            "https://",
            "https://*",
            "gopher://x.com",
            "https://x.com:99999",
        ] {
            assert!(AllowedEndpoints::parse(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn refusal_names_the_endpoint_and_the_list() {
        let err = AllowedEndpoints::default()
            .check("http://10.0.0.1:80")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "endpoint http://10.0.0.1 is not in the operator's allowed endpoints (https://*.aliyuncs.com)"
        );
    }
}
