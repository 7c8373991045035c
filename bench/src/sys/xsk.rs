//! The AF_XDP packet ceiling: an AF_XDP transmit loop in the client namespace blasts 64-byte
//! frames at the server's veth end, where an AF_XDP receiver counts them per second.
//!
//! This is the only module of the benchmark that uses the AF_XDP layer (`synack::xsk`)
//! directly.
//!
//! On veth the receive path (XDP and the copy into the UMEM) runs on the **sending** CPU, so
//! the figure is the packets per second one sending core can push through AF_XDP receive:
//! the budget every veth benchmark on this machine competes for (docs/machine-notes.md).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

use synack::xsk::{PollMode, RxVerdict, XskConfig, XskSocket};

use super::cleanup;
use super::frame;
use super::net::TestLink;

/// One measurement of the ceiling.
#[derive(Debug, Clone, Serialize)]
pub struct CeilingRun {
    /// Bytes per frame.
    pub frame_bytes: usize,
    /// Ceiling frames received per second during the window.
    pub rx_pps: f64,
    /// Ceiling frames received during the window.
    pub rx_frames_window: u64,
    /// Length of the window, seconds.
    pub window_s: f64,
    /// Frames the blaster put on the wire per second (whole run).
    pub tx_pps: f64,
    /// Frames the blaster sent.
    pub tx_frames: u64,
    /// Seconds the blaster ran.
    pub tx_seconds: f64,
    /// Frames received that were not ceiling frames.
    pub rx_other_frames: u64,
    /// The receiver socket's `XDP_STATISTICS`: frames dropped for want of room, and so on.
    pub rx_dropped: u64,
    /// `XDP_STATISTICS.rx_ring_full`.
    pub rx_ring_full: u64,
    /// `XDP_STATISTICS.rx_fill_ring_empty_descs`.
    pub rx_fill_ring_empty: u64,
    /// TX kicks (`sendto`) the blaster made, and how many the kernel answered with EAGAIN etc.
    pub tx_kicks: u64,
    /// See `tx_kicks`.
    pub tx_kick_retries: u64,
}

/// Sets a flag when dropped, so that a thread that fails or panics still releases its peer.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

struct RxResult {
    frames: u64,
    window_s: f64,
    other: u64,
    rx_dropped: u64,
    rx_ring_full: u64,
    rx_fill_ring_empty: u64,
}

struct TxResult {
    frames: u64,
    seconds: f64,
    kicks: u64,
    kick_retries: u64,
}

/// Measures the ceiling once: `warmup` after the first frame arrives, the receiver counts
/// frames for `window`. The receiver runs on `server_cpu` in the server namespace, the
/// blaster on `client_cpu` in the client namespace.
pub fn measure_ceiling(
    link: &TestLink,
    warmup: Duration,
    window: Duration,
    server_cpu: usize,
    client_cpu: usize,
    frame_bytes: usize,
) -> Result<CeilingRun> {
    let receiver_done = AtomicBool::new(false);
    let blaster_done = AtomicBool::new(false);
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    // Every loop below is bounded by this, whatever happens to the other side.
    let limit = warmup + window + Duration::from_secs(15);

    let (rx, tx) = std::thread::scope(|scope| {
        let (receiver_done, blaster_done) = (&receiver_done, &blaster_done);
        let rx = scope.spawn(move || {
            let _done = SetOnDrop(receiver_done);
            link.server
                .netns
                .run_pinned(Some(server_cpu), || {
                    receive(&link.server.ifname, ready_tx, blaster_done, warmup, window, limit)
                })
                .map_err(anyhow::Error::from)
        });
        let tx = scope.spawn(move || {
            let _done = SetOnDrop(blaster_done);
            // The receiver must be bound (and its XDP program attached) before the first frame.
            ready_rx.recv_timeout(Duration::from_secs(20)).map_err(|_| anyhow!("the AF_XDP receiver did not start"))?;
            Ok(link.client.netns.run_pinned(Some(client_cpu), || blast(link, receiver_done, limit, frame_bytes))?)
        });
        (join(rx.join()), join(tx.join()))
    });
    let (rx, tx) = (rx.context("AF_XDP receiver")?, tx.context("AF_XDP blaster")?);
    Ok(CeilingRun {
        frame_bytes,
        rx_pps: rx.frames as f64 / rx.window_s.max(1e-9),
        rx_frames_window: rx.frames,
        window_s: rx.window_s,
        tx_pps: tx.frames as f64 / tx.seconds.max(1e-9),
        tx_frames: tx.frames,
        tx_seconds: tx.seconds,
        rx_other_frames: rx.other,
        rx_dropped: rx.rx_dropped,
        rx_ring_full: rx.rx_ring_full,
        rx_fill_ring_empty: rx.rx_fill_ring_empty,
        tx_kicks: tx.kicks,
        tx_kick_retries: tx.kick_retries,
    })
}

/// Flattens a thread's result: a panic is resumed, an error passed on.
fn join<T>(joined: std::thread::Result<Result<Result<T>>>) -> Result<T> {
    match joined {
        Ok(result) => result?,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn receive(
    ifname: &str,
    ready: mpsc::Sender<()>,
    blaster_done: &AtomicBool,
    warmup: Duration,
    window: Duration,
    limit: Duration,
) -> Result<RxResult> {
    let mut config = XskConfig::new(ifname, 0);
    // libxdp's default program redirects every frame of queue 0 to this socket; nothing else
    // is served on the link while the ceiling is measured.
    config.load_default_program = true;
    config.poll_mode = PollMode::Busy;
    // Deep rings: the receiver shares its CPU with whatever else runs there, and while it is
    // off the CPU the sending core keeps filling the RX ring (and empties the fill ring).
    config.rx_ring_size = 4096;
    config.fill_ring_size = 4096;
    config.frame_count = 8192;
    let mut socket = XskSocket::new(config).context("cannot bind the AF_XDP receiver")?;
    socket.refill();
    let _ = ready.send(());

    let (mut matched, mut other) = (0u64, 0u64);
    let start = Instant::now();
    let mut first: Option<Instant> = None;
    let mut window_start: Option<(Instant, u64)> = None;
    let mut result = None;
    while start.elapsed() < limit {
        let received = socket.rx_batch(usize::MAX, |f| {
            if frame::is_ceiling_frame(f) {
                matched += 1;
            } else {
                other += 1;
            }
            RxVerdict::Release
        });
        socket.refill();
        let now = Instant::now();
        if received > 0 && first.is_none() {
            first = Some(now);
        }
        match (first, window_start) {
            (Some(first), None) if now >= first + warmup => window_start = Some((now, matched)),
            (_, Some((since, count))) if now >= since + window => {
                result = Some((matched - count, (now - since).as_secs_f64()));
                break;
            }
            _ => {}
        }
        if received == 0 && (blaster_done.load(Ordering::Acquire) || cleanup::interrupted()) {
            break;
        }
    }
    cleanup::check_interrupted()?;
    let (frames, window_s) = result
        .ok_or_else(|| anyhow!("the blaster stopped before the window ended ({matched} ceiling frames received)"))?;
    let stats = socket.xdp_statistics().context("XDP_STATISTICS")?;
    Ok(RxResult {
        frames,
        window_s,
        other,
        rx_dropped: stats.rx_dropped,
        rx_ring_full: stats.rx_ring_full,
        rx_fill_ring_empty: stats.rx_fill_ring_empty_descs,
    })
}

fn blast(link: &TestLink, receiver_done: &AtomicBool, limit: Duration, frame_bytes: usize) -> Result<TxResult> {
    let mut config = XskConfig::new(&link.client.ifname, 0);
    config.poll_mode = PollMode::Busy;
    let mut socket = XskSocket::new(config).context("cannot bind the AF_XDP blaster")?;
    let template = frame::udp_frame(link.server.mac, link.client.mac, link.client.ip, link.server.ip, 0, frame_bytes);
    let mut sent = 0u64;
    let start = Instant::now();
    while !receiver_done.load(Ordering::Acquire) && start.elapsed() < limit {
        socket.reap_completions();
        for _ in 0..64 {
            let Some(mut buf) = socket.tx_alloc() else {
                break;
            };
            buf[..template.len()].copy_from_slice(&template);
            frame::set_seq(&mut buf, sent);
            if socket.tx_submit(template.len()).is_err() {
                break;
            }
            sent += 1;
        }
        socket.flush().map_err(|e| anyhow!("AF_XDP blaster: {e}"))?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let _ = socket.drain_tx(Duration::from_secs(2));
    let counters = *socket.counters();
    Ok(TxResult {
        frames: counters.tx_completed,
        seconds,
        kicks: counters.tx_kicks,
        kick_retries: counters.tx_kick_errors,
    })
}
