#[tokio::main]
async fn main() -> std::process::ExitCode {
    // One TLS crypto provider for the whole process (kube and the cloud client): ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    mpu_relay_operator::cli::parse_and_run().await
}
