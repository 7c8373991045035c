//! Frame capture (`RuntimeConfig::pcap`): the frames the workers receive and send, in the pcap
//! format tcpdump and tshark read. tcpdump on the interface cannot see them: the XDP program
//! steers them to AF_XDP before the kernel's taps.
//!
//! Off the hot path: a worker copies a frame into a buffer from a pool allocated at start and
//! passes it through a bounded channel to a writer thread, which stamps and writes it and gives
//! the buffer back. When the pool is empty (the writer or the disk is behind) the frame is not
//! captured, and counted ([`PcapStats::dropped`]); a worker never waits. Off, it costs a branch
//! per frame.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use synack_proto::time::Instant;

/// Buffers in the pool shared by the workers, each as long as the longest frame (2 KiB at MTU
/// 1500: 8 MiB in all; a joined 9014-byte chain at MTU 9000: 37 MB).
const POOL: usize = 4096;

/// Where to capture, and how much.
#[derive(Debug, Clone)]
pub struct PcapConfig {
    /// The pcap file (created, or truncated).
    pub path: PathBuf,
    /// Frames to write at most; then capture stops (the workers go on).
    pub max_frames: u64,
}

/// What the capture did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PcapStats {
    /// Frames written to the file.
    pub written: u64,
    /// Frames not captured because every buffer was in use (the writer was behind).
    pub dropped: u64,
}

/// One captured frame on its way to the writer.
struct Record {
    /// The worker's clock when it saw the frame (`crate::clock::now`).
    at: Instant,
    /// Length on the wire.
    len: usize,
    /// The frame's first bytes, up to the capture's snap length.
    data: Box<[u8]>,
}

/// A worker's end: takes free buffers, sends full ones.
pub(crate) struct PcapTap {
    free: Receiver<Record>,
    full: Sender<Record>,
    dropped: Arc<AtomicU64>,
}

impl PcapTap {
    /// Copies `frame` for the writer; counts it as dropped if no buffer is free. Returns false
    /// once the writer has stopped (the frame bound was reached): the caller drops the tap.
    #[inline]
    pub(super) fn capture(&mut self, at: Instant, frame: &[u8]) -> bool {
        let mut record = match self.free.try_recv() {
            Ok(record) => record,
            Err(TryRecvError::Empty) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            Err(TryRecvError::Disconnected) => return false,
        };
        let n = frame.len().min(record.data.len());
        record.data[..n].copy_from_slice(&frame[..n]);
        record.len = frame.len();
        record.at = at;
        match self.full.try_send(record) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

/// The writer thread and the workers' taps.
pub(crate) struct Pcap {
    writer: JoinHandle<std::io::Result<u64>>,
    free: Receiver<Record>,
    full: Sender<Record>,
    dropped: Arc<AtomicU64>,
}

impl Pcap {
    /// Creates the file, writes the pcap header, allocates the pool of `snaplen`-byte buffers
    /// (the longest frame a worker lends) and starts the writer.
    pub(super) fn start(config: &PcapConfig, snaplen: usize) -> std::io::Result<Pcap> {
        let file = File::create(&config.path)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        // pcap global header: magic (microseconds), version 2.4, no zone, no sigfigs,
        // snaplen, link type 1 (Ethernet).
        out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
        out.write_all(&2u16.to_le_bytes())?;
        out.write_all(&4u16.to_le_bytes())?;
        out.write_all(&0i32.to_le_bytes())?;
        out.write_all(&0u32.to_le_bytes())?;
        out.write_all(&(snaplen as u32).to_le_bytes())?;
        out.write_all(&1u32.to_le_bytes())?;
        out.flush()?;
        let (free_tx, free) = crossbeam_channel::bounded(POOL);
        let (full, full_rx) = crossbeam_channel::bounded::<Record>(POOL);
        for _ in 0..POOL {
            let _ =
                free_tx.send(Record { at: Instant::from_nanos(0), len: 0, data: vec![0; snaplen].into_boxed_slice() });
        }
        // Wall-clock time of the workers' clock's zero, for the records' timestamps.
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_sub(Duration::from_nanos(crate::clock::now().as_nanos()));
        let max = config.max_frames;
        let writer = std::thread::Builder::new().name("synack-pcap".into()).spawn(move || {
            let mut written = 0u64;
            // Ends when every tap and the runtime's sender are gone, or at the bound.
            while written < max {
                let Ok(record) = full_rx.recv() else { break };
                let at = epoch + Duration::from_nanos(record.at.as_nanos());
                let kept = record.len.min(record.data.len());
                out.write_all(&(at.as_secs() as u32).to_le_bytes())?;
                out.write_all(&at.subsec_micros().to_le_bytes())?;
                out.write_all(&(kept as u32).to_le_bytes())?;
                out.write_all(&(record.len as u32).to_le_bytes())?;
                out.write_all(&record.data[..kept])?;
                written += 1;
                let _ = free_tx.try_send(record);
                if full_rx.is_empty() {
                    out.flush()?;
                }
            }
            out.flush()?;
            Ok(written)
        })?;
        Ok(Pcap { writer, free, full, dropped: Arc::new(AtomicU64::new(0)) })
    }

    /// A tap for one worker.
    pub(super) fn tap(&self) -> PcapTap {
        PcapTap { free: self.free.clone(), full: self.full.clone(), dropped: self.dropped.clone() }
    }

    /// Waits for the writer to write what it has (after the workers stopped: with their taps
    /// and this sender gone, it drains the channel and ends) and reports.
    pub(super) fn finish(self) -> PcapStats {
        let Pcap { writer, free, full, dropped } = self;
        drop((free, full));
        let written = writer.join().ok().and_then(Result::ok).unwrap_or(0);
        PcapStats { written, dropped: dropped.load(Ordering::Relaxed) }
    }
}
