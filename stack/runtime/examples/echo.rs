//! A minimal embedding: an echo server on AF_XDP, run until Ctrl-C... or for `SECONDS`.
//!
//! ```sh
//! cargo run --release -p synack --example echo -- IFACE IPV4 PORT [SECONDS]
//! ```

use std::net::Ipv4Addr;
use std::time::Duration;

use synack::iface::{App, ConnId, Interface};
use synack::runtime::{Runtime, RuntimeConfig};

/// Echoes every byte; closes once the peer has closed and everything went back.
struct Echo;

impl App for Echo {
    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        let _ = iface.splice(conn, conn, usize::MAX);
    }
    fn on_writable(&mut self, iface: &mut Interface, conn: ConnId) {
        let _ = iface.splice(conn, conn, usize::MAX);
    }
    fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
        let _ = iface.splice(conn, conn, usize::MAX);
        iface.close(conn);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [iface, ip, port, rest @ ..] = args.as_slice() else {
        return Err("usage: echo IFACE IPV4 PORT [SECONDS]".into());
    };
    let seconds: u64 = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(60);
    let mut config = RuntimeConfig::new(iface.clone(), ip.parse::<Ipv4Addr>()?);
    config.listen_ports = vec![port.parse()?];
    let runtime = Runtime::start(config, |_queue| Echo)?;
    println!("echo ready on {ip}:{port} ({:?} address)", runtime.address_mode());
    std::thread::sleep(Duration::from_secs(seconds));
    println!("{}", runtime.stop().counters);
    Ok(())
}
