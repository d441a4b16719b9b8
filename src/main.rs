// jemalloc instead of the system allocator: at 10 000 tasks a fresh operator taking over (the
// initial list, a first reconcile of everything) leaves glibc's per-thread arenas holding far more
// than is live, and its malloc/free were 13 % of the operator's CPU. Measured with `make profile`
// (docs/benchmarks-history.md, "Memory and CPU"): RSS 69.8 -> 56.0 MiB, CPU per 1 000 polls 0.234 -> 0.161 s;
// mimalloc gave the same CPU but kept more (71 MiB, 89 MiB peak).
// The `system-allocator` feature (heap profiling only) leaves glibc's, which heaptrack can see.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// One thread: a reconcile is a few tens of microseconds of CPU between waits, so the work never
// needs a second core, and handing wakeups between worker threads cost more than the work itself
// (futex wakes and context switches were a quarter of the multi-threaded profile). At 10 000
// tasks taking over: 0.176 -> 0.109 CPU s per 1 000 polls. Nothing here blocks its thread:
// Secrets and tokens come from the API server, DNS runs on tokio's blocking pool.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    // One TLS crypto provider for the whole process (kube and the cloud client): ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    mpu_relay_operator::cli::parse_and_run().await
}
