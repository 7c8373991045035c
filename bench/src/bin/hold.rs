//! `synack-hold`: the Linux client and server of the `concurrency` case of `synack-sysbench`
//! (`synack_bench::hold`): `connect` opens many idle connections and holds them, `accept`
//! accepts and holds them. Each prints one JSON line per event and runs until it is killed.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use synack_bench::hold::{accept, connect, Line};

#[derive(Debug, Parser)]
#[command(name = "synack-hold", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Open connections `first..first+count` (of the case's numbering) to TARGET and hold them.
    Connect {
        #[arg(long)]
        target: SocketAddrV4,
        /// Source addresses, comma-separated, used round-robin (all on the local interface).
        #[arg(long, value_delimiter = ',', required = true)]
        sources: Vec<Ipv4Addr>,
        /// Source port of each address's first connection.
        #[arg(long, default_value_t = 10_000)]
        port_base: u16,
        #[arg(long, default_value_t = 0)]
        first: u64,
        #[arg(long)]
        count: u64,
        /// Connects in flight at most.
        #[arg(long, default_value_t = 512)]
        in_flight: usize,
        /// A connect not established within this many seconds fails.
        #[arg(long, default_value_t = 30)]
        connect_timeout_s: u64,
        /// Exit non-zero after more failures than this [default: 1 % of --count].
        #[arg(long)]
        max_failed: Option<u64>,
        /// Exit non-zero when nothing completes for this many seconds.
        #[arg(long, default_value_t = 60)]
        stall_timeout_s: u64,
    },
    /// Listen on ADDR, accept and hold up to MAX connections.
    Accept {
        #[arg(long)]
        listen: SocketAddrV4,
        #[arg(long)]
        max: u64,
        #[arg(long, default_value_t = 65_535)]
        backlog: i32,
    },
}

fn main() -> ExitCode {
    let outcome = match Args::parse().command {
        Command::Connect {
            target,
            sources,
            port_base,
            first,
            count,
            in_flight,
            connect_timeout_s,
            max_failed,
            stall_timeout_s,
        } => connect::run(&connect::Config {
            target,
            sources,
            port_base,
            first,
            count,
            in_flight: in_flight.max(1),
            connect_timeout: Duration::from_secs(connect_timeout_s),
            max_failed: max_failed.unwrap_or(count / 100),
            stall_timeout: Duration::from_secs(stall_timeout_s),
            progress_every: Duration::from_millis(500),
        }),
        Command::Accept { listen, max, backlog } => {
            accept::run(&accept::Config { listen, max, backlog, progress_every: Duration::from_millis(500) })
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Setup errors come here without a line of their own.
            Line::Failed { message: format!("{e:#}") }.print();
            eprintln!("synack-hold: {e:#}");
            ExitCode::FAILURE
        }
    }
}
