#[tokio::main]
async fn main() -> std::process::ExitCode {
    mpu_relay_operator::cli::parse_and_run().await
}
