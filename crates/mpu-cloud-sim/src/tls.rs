//! HTTPS for the simulator: a CA and a server certificate generated for each run (rcgen), and the
//! rustls server settings. The operator is given the CA (`--ca-bundle`), as a user is given a
//! private endpoint's; certificates that must fail (another host's, an expired one) come from
//! the same CA, so the failure is the one named and not an unknown issuer.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The hosts a [`ServerCertificate::Valid`] certificate names: what a client may dial the
/// simulator by on loopback, and any name under `sim.test` (a reserved test domain) that a
/// test resolves to it through DNS of its own.
pub const SERVER_NAMES: [&str; 3] = ["127.0.0.1", "localhost", "*.sim.test"];
/// The only host a [`ServerCertificate::WrongHost`] certificate names (`.invalid` never resolves).
pub const WRONG_HOST: &str = "not-this-host.invalid";

/// Which server certificate the simulator presents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServerCertificate {
    /// Signed by the run's CA, for [`SERVER_NAMES`], valid from 1975 to 4096 (rcgen's default).
    #[default]
    Valid,
    /// Signed by the run's CA, in its validity period, but for [`WRONG_HOST`] only.
    WrongHost,
    /// Signed by the run's CA, for [`SERVER_NAMES`], expired on 2020-01-02.
    Expired,
}

/// What can stop the certificates from being made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot generate the simulator's certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("invalid TLS server settings: {0}")]
    Config(#[from] rustls::Error),
}

/// A run's CA (to hand to clients) and the server settings presenting its certificate.
#[derive(Clone)]
pub struct Tls {
    ca_pem: String,
    config: Arc<rustls::ServerConfig>,
}

impl Tls {
    /// A new CA and a `certificate` signed by it.
    pub fn generate(certificate: ServerCertificate) -> Result<Tls, TlsError> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        // A name of its own per run: two runs' CAs with one name would look like one CA whose
        // signature is wrong, not like the unknown CA each is to the other.
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        ca_params.distinguished_name.push(
            DnType::CommonName,
            format!("mpu-cloud-sim CA {run:x} (generated for one run)"),
        );
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;

        let names: Vec<String> = match certificate {
            ServerCertificate::WrongHost => vec![WRONG_HOST.to_string()],
            ServerCertificate::Valid | ServerCertificate::Expired => {
                SERVER_NAMES.iter().map(|s| s.to_string()).collect()
            }
        };
        let server_key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "mpu-cloud-sim");
        if certificate == ServerCertificate::Expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 2);
        }
        let server = params.signed_by(&server_key, &ca)?;

        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
        // A provider of its own, not the process-wide one: the simulator runs inside test
        // processes whose client installs its own.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from(server.der().to_vec())], key)?;
        // The server speaks HTTP/1.1 only; a client offering h2 settles on it.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            ca_pem: ca.pem(),
            config: Arc::new(config),
        })
    }

    /// The CA certificate, PEM: what a client must trust to reach this simulator.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_certificate_kind_is_generated_with_a_pem_ca() {
        for kind in [
            ServerCertificate::Valid,
            ServerCertificate::WrongHost,
            ServerCertificate::Expired,
        ] {
            let tls = Tls::generate(kind).expect("generates");
            assert!(tls.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        }
    }

    #[test]
    fn each_run_has_its_own_ca() {
        let a = Tls::generate(ServerCertificate::Valid).unwrap();
        let b = Tls::generate(ServerCertificate::Valid).unwrap();
        assert_ne!(a.ca_pem(), b.ca_pem());
    }
}
