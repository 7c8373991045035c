//! iperf3 compatibility: `synack serve --app iperf3` answers the standard `iperf3 -c` client
//! (TCP; `-P`, `-R`, `--bidir`, `-t`, `-n`, `-k`, `-O`, `-J`); `synack iperf3` is a client
//! for either that server or the kernel's `iperf3 -s`.

pub mod client;
mod proto;
mod server;
#[cfg(test)]
mod tests;

pub use proto::Mode;
pub use server::Iperf3Server;
