//! libbpf's messages go to `tracing` at debug level (target `libbpf`), never to stderr: they
//! would land in the tables of the CLI and the benchmark. `RUST_LOG=libbpf=debug` shows them
//! (the verifier's log of a rejected program among them).

use std::sync::Once;

/// Installs the callback once per process (loading the program does it).
pub fn route_to_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Debug, print)));
    });
}

fn print(level: libbpf_rs::PrintLevel, message: String) {
    let message = message.trim_end();
    tracing::debug!(target: "libbpf", ?level, "{message}");
}
