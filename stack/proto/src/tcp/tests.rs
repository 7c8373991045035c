//! Tier-1 tests of the state machine: one connection, hand-made segments in, parsed segments
//! out, one block per RFC 9293 state.

use core::time::Duration;
use std::net::Ipv4Addr;

use super::*;
use crate::time::Instant;
use crate::wire::{ChecksumMode, TcpFlags, TcpOptions, TcpPacket, TcpRepr, Timestamp};

const LOCAL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const LPORT: u16 = 80;
const RPORT: u16 = 50_000;
const PEER_ISS: u32 = 1_000;

struct Harness {
    conn: Connection,
    now: Instant,
    buf: Vec<u8>,
}

impl Harness {
    fn new(config: TcpConfig) -> Harness {
        Harness { conn: Connection::with_rings(config), now: Instant::from_millis(10_000), buf: vec![0u8; 2048] }
    }

    /// Feeds a segment from the peer.
    fn recv(&mut self, flags: TcpFlags, seq: u32, ack: u32, payload: &[u8]) -> Outcome {
        self.recv_with(TcpRepr { seq, ack, flags, window: 65535, ..self.peer_repr() }, payload)
    }

    fn recv_with(&mut self, repr: TcpRepr, payload: &[u8]) -> Outcome {
        let seg = Segment { src_addr: REMOTE, dst_addr: LOCAL, repr, payload };
        self.conn.handle_segment(self.now, &seg)
    }

    fn peer_repr(&self) -> TcpRepr {
        TcpRepr { src_port: RPORT, dst_port: LPORT, ..TcpRepr::default() }
    }

    /// Takes the next segment the connection sends, parsed back.
    fn sent(&mut self) -> Option<(TcpRepr, Vec<u8>)> {
        let n = self.conn.poll_transmit(self.now, &mut self.buf)?;
        let view = TcpPacket::new_checked(&self.buf[..n]).expect("well-formed");
        let repr = TcpRepr::parse(&view, LOCAL, REMOTE, ChecksumMode::Verify).expect("valid checksum");
        Some((repr, self.buf[repr.header_len()..n].to_vec()))
    }

    fn sent_all(&mut self) -> Vec<(TcpRepr, Vec<u8>)> {
        std::iter::from_fn(|| self.sent()).collect()
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.conn.handle_timeout(self.now);
    }
}

fn plain() -> TcpConfig {
    // No options: sequence arithmetic in the tests stays readable.
    TcpConfig { timestamps: false, sack: false, window_scaling: false, delayed_ack: None, ..TcpConfig::default() }
}

/// LISTEN on port 80.
fn listen(config: TcpConfig) -> Harness {
    let mut h = Harness::new(config);
    h.conn.listen(Endpoint::new(LOCAL, LPORT), IsnGenerator::with_key([1, 2])).unwrap();
    h
}

/// SYN-RECEIVED after the peer's SYN; returns our ISS.
fn syn_received(config: TcpConfig) -> (Harness, u32) {
    let mut h = listen(config);
    assert_eq!(h.recv(TcpFlags::SYN, PEER_ISS, 0, b""), Outcome::Accepted);
    let (synack, _) = h.sent().expect("SYN-ACK");
    assert_eq!(synack.flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(synack.ack, PEER_ISS + 1);
    (h, synack.seq)
}

/// ESTABLISHED (passive side); returns our ISS.
fn established(config: TcpConfig) -> (Harness, u32) {
    let (mut h, iss) = syn_received(config);
    assert_eq!(h.recv(TcpFlags::ACK, PEER_ISS + 1, iss + 1, b""), Outcome::Accepted);
    assert_eq!(h.conn.state(), State::Established);
    (h, iss)
}

/// SYN-SENT (active side); returns our ISS.
fn syn_sent(config: TcpConfig) -> (Harness, u32) {
    let mut h = Harness::new(config);
    let now = h.now;
    h.conn
        .connect(now, Endpoint::new(LOCAL, LPORT), Endpoint::new(REMOTE, RPORT), IsnGenerator::with_key([3, 4]))
        .unwrap();
    let (syn, _) = h.sent().expect("SYN");
    assert_eq!(syn.flags, TcpFlags::SYN);
    assert_eq!(syn.options.mss, Some(h.conn.config().mss));
    (h, syn.seq)
}

mod listen_state {
    use super::*;

    #[test]
    fn ack_in_listen_is_answered_by_the_caller_with_rst() {
        let mut h = listen(plain());
        assert_eq!(h.recv(TcpFlags::ACK, 5, 77, b""), Outcome::NoConnection);
        assert_eq!(h.conn.state(), State::Listen);
    }

    #[test]
    fn rst_and_non_syn_are_dropped() {
        let mut h = listen(plain());
        assert_eq!(h.recv(TcpFlags::RST, 5, 0, b""), Outcome::Dropped(DropReason::RstIgnored));
        assert_eq!(h.recv(TcpFlags::FIN, 5, 0, b""), Outcome::Dropped(DropReason::Unexpected));
        assert!(h.sent().is_none());
    }

    #[test]
    fn syn_options_are_negotiated() {
        let mut h = listen(TcpConfig::default());
        let mut syn = TcpRepr { seq: PEER_ISS, flags: TcpFlags::SYN, window: 29200, ..h.peer_repr() };
        syn.options = TcpOptions {
            mss: Some(1200),
            window_scale: Some(20),
            sack_permitted: true,
            timestamp: Some(Timestamp { tsval: 555, tsecr: 0 }),
            ..TcpOptions::default()
        };
        assert_eq!(h.recv_with(syn, b""), Outcome::Accepted);
        let (synack, _) = h.sent().unwrap();
        assert_eq!(synack.options.mss, Some(1460));
        assert!(synack.options.sack_permitted);
        assert_eq!(synack.options.timestamp.unwrap().tsecr, 555);
        assert_eq!(synack.options.window_scale, Some(TcpConfig::default().recv_window_shift()));
        assert_eq!(h.conn.send_mss(), 1200 - 12);
        assert_eq!(h.conn.negotiated(), (true, true, true));
    }

    #[test]
    fn syn_without_options_gets_none_back() {
        let mut h = listen(TcpConfig::default());
        assert_eq!(h.recv(TcpFlags::SYN, PEER_ISS, 0, b""), Outcome::Accepted);
        let (synack, _) = h.sent().unwrap();
        assert_eq!(synack.options.window_scale, None);
        assert!(!synack.options.sack_permitted);
        assert_eq!(synack.options.timestamp, None);
        assert_eq!(h.conn.send_mss(), 536, "RFC 9293 default MSS");
    }
}

mod syn_sent_state {
    use super::*;

    #[test]
    fn syn_ack_establishes_and_acks() {
        let (mut h, iss) = syn_sent(plain());
        assert_eq!(h.recv(TcpFlags::SYN | TcpFlags::ACK, PEER_ISS, iss + 1, b""), Outcome::Accepted);
        assert_eq!(h.conn.state(), State::Established);
        assert_eq!(h.conn.poll_event(), Some(Event::Connected));
        let (ack, _) = h.sent().unwrap();
        assert_eq!((ack.flags, ack.seq, ack.ack), (TcpFlags::ACK, iss + 1, PEER_ISS + 1));
    }

    #[test]
    fn bad_ack_gets_rst_and_rst_with_good_ack_refuses() {
        let (mut h, iss) = syn_sent(plain());
        assert_eq!(h.recv(TcpFlags::ACK, 9, iss + 5, b""), Outcome::Dropped(DropReason::UnacceptableAck));
        let (rst, _) = h.sent().unwrap();
        assert_eq!((rst.flags, rst.seq), (TcpFlags::RST, iss + 5));
        assert_eq!(h.conn.state(), State::SynSent);
        assert_eq!(h.recv(TcpFlags::RST, 0, 0, b""), Outcome::Dropped(DropReason::RstIgnored));
        assert_eq!(h.recv(TcpFlags::RST | TcpFlags::ACK, 0, iss + 1, b""), Outcome::Accepted);
        assert_eq!(h.conn.close_reason(), Some(CloseReason::Refused));
        assert_eq!(h.conn.poll_event(), Some(Event::Closed(CloseReason::Refused)));
    }

    #[test]
    fn syn_is_retransmitted_with_backoff() {
        let (mut h, iss) = syn_sent(plain());
        assert_eq!(h.conn.poll_timeout(), Some(h.now + Duration::from_secs(1)));
        h.advance(Duration::from_secs(1));
        let (syn, _) = h.sent().unwrap();
        assert_eq!((syn.flags, syn.seq), (TcpFlags::SYN, iss));
        assert_eq!(h.conn.poll_timeout(), Some(h.now + Duration::from_secs(2)));
    }

    #[test]
    fn simultaneous_open_goes_to_syn_received() {
        let (mut h, iss) = syn_sent(plain());
        assert_eq!(h.recv(TcpFlags::SYN, PEER_ISS, 0, b""), Outcome::Accepted);
        assert_eq!(h.conn.state(), State::SynReceived);
        let (synack, _) = h.sent().unwrap();
        assert_eq!((synack.flags, synack.seq, synack.ack), (TcpFlags::SYN | TcpFlags::ACK, iss, PEER_ISS + 1));
        // The peer's SYN-ACK completes it.
        assert_eq!(h.recv(TcpFlags::SYN | TcpFlags::ACK, PEER_ISS, iss + 1, b""), Outcome::Accepted);
        assert_eq!(h.conn.state(), State::Established);
        // An RST now is a reset, but in SYN-RECEIVED of an active open it would be a refusal.
    }
}

mod syn_received_state {
    use super::*;

    #[test]
    fn duplicate_syn_resends_syn_ack() {
        let (mut h, iss) = syn_received(plain());
        assert_eq!(h.recv(TcpFlags::SYN, PEER_ISS, 0, b""), Outcome::Accepted);
        let (synack, _) = h.sent().unwrap();
        assert_eq!((synack.flags, synack.seq), (TcpFlags::SYN | TcpFlags::ACK, iss));
    }

    #[test]
    fn bad_ack_gets_rst() {
        let (mut h, iss) = syn_received(plain());
        assert_eq!(h.recv(TcpFlags::ACK, PEER_ISS + 1, iss + 100, b""), Outcome::Dropped(DropReason::UnacceptableAck));
        let (rst, _) = h.sent().unwrap();
        assert_eq!((rst.flags, rst.seq), (TcpFlags::RST, iss + 100));
        assert_eq!(h.conn.state(), State::SynReceived);
    }

    #[test]
    fn ack_with_data_establishes_and_delivers() {
        let (mut h, iss) = syn_received(plain());
        assert_eq!(h.recv(TcpFlags::ACK | TcpFlags::PSH, PEER_ISS + 1, iss + 1, b"GET /"), Outcome::Accepted);
        assert_eq!(h.conn.state(), State::Established);
        let mut buf = [0u8; 16];
        assert_eq!(h.conn.recv(&mut buf), Ok(5));
        assert_eq!(&buf[..5], b"GET /");
    }

    #[test]
    fn syn_ack_retries_run_out() {
        let (mut h, _) = syn_received(TcpConfig { synack_retries: 2, ..plain() });
        for _ in 0..3 {
            let t = h.conn.poll_timeout().unwrap();
            h.advance(t.saturating_duration_since(h.now));
            h.sent_all();
        }
        assert_eq!(h.conn.state(), State::Closed);
        assert_eq!(h.conn.close_reason(), Some(CloseReason::TimedOut));
    }

    #[test]
    fn pure_ack_at_the_right_edge_of_the_window_establishes() {
        // The peer filled our window with data that was lost, then its ACK of our SYN-ACK
        // carries its SND.MAX: exactly RCV.NXT + RCV.WND. Accepted, as Linux and BSD do; a
        // strict reading would drop it and answer, and the peer's answer again, for ever.
        let (mut h, iss) = syn_received(TcpConfig { recv_buffer_len: 1024, ..plain() });
        assert_eq!(h.recv(TcpFlags::ACK, PEER_ISS + 1 + 1024, iss + 1, b""), Outcome::Accepted);
        assert_eq!(h.conn.state(), State::Established);
        // One beyond the edge is still out of the window.
        assert_eq!(h.recv(TcpFlags::ACK, PEER_ISS + 1 + 1025, iss + 1, b""), Outcome::Dropped(DropReason::OutOfWindow));
    }

    #[test]
    fn shutdown_before_the_ack_sends_fin_after_it() {
        let (mut h, iss) = syn_received(plain());
        h.conn.shutdown();
        assert_eq!(h.recv(TcpFlags::ACK, PEER_ISS + 1, iss + 1, b""), Outcome::Accepted);
        assert_eq!(h.conn.state(), State::FinWait1);
        let (fin, _) = h.sent().unwrap();
        assert!(fin.flags.contains(TcpFlags::FIN));
    }
}

mod established_state {
    use super::*;

    #[test]
    fn data_is_segmented_to_mss_and_acked() {
        let (mut h, iss) = established(TcpConfig { mss: 100, ..plain() });
        // The peer's SYN carried no MSS: 536 assumed, then capped by our 100.
        assert_eq!(h.conn.send(&[1u8; 250]), Ok(250));
        let segs = h.sent_all();
        let lens: Vec<usize> = segs.iter().map(|(_, p)| p.len()).collect();
        assert_eq!(lens, vec![100, 100, 50]);
        assert_eq!(segs[0].0.seq, iss + 1);
        assert!(segs[2].0.flags.contains(TcpFlags::PSH));
        assert_eq!(h.recv(TcpFlags::ACK, PEER_ISS + 1, iss + 251, b""), Outcome::Accepted);
        assert_eq!(h.conn.send_queue_len(), 0);
        assert_eq!(h.conn.poll_timeout(), None, "nothing outstanding: no timer");
    }

    #[test]
    fn out_of_window_segment_is_acked_and_dropped() {
        let (mut h, iss) = established(plain());
        let far = PEER_ISS + 1 + 10_000_000;
        assert_eq!(h.recv(TcpFlags::ACK, far, iss + 1, b"x"), Outcome::Dropped(DropReason::OutOfWindow));
        let (ack, _) = h.sent().unwrap();
        assert_eq!(ack.ack, PEER_ISS + 1);
    }

    #[test]
    fn overlapping_retransmission_is_trimmed() {
        let (mut h, iss) = established(plain());
        assert_eq!(h.recv(TcpFlags::ACK, PEER_ISS + 1, iss + 1, b"hello"), Outcome::Accepted);
        assert_eq!(h.recv(TcpFlags::ACK, PEER_ISS + 1, iss + 1, b"hello world"), Outcome::Accepted);
        let mut buf = [0u8; 32];
        assert_eq!(h.conn.recv(&mut buf), Ok(11));
        assert_eq!(&buf[..11], b"hello world");
    }

    #[test]
    fn out_of_order_data_gets_immediate_dup_ack_with_sack() {
        let cfg = TcpConfig { timestamps: false, ..TcpConfig::default() };
        let mut h = listen(cfg);
        let mut syn = TcpRepr { seq: PEER_ISS, flags: TcpFlags::SYN, window: 65535, ..h.peer_repr() };
        syn.options.sack_permitted = true;
        assert_eq!(h.recv_with(syn, b""), Outcome::Accepted);
        let (synack, _) = h.sent().unwrap();
        let iss = synack.seq;
        assert_eq!(h.recv(TcpFlags::ACK, PEER_ISS + 1, iss + 1, b""), Outcome::Accepted);
        assert_eq!(h.recv(TcpFlags::ACK, PEER_ISS + 11, iss + 1, b"0123456789"), Outcome::Accepted);
        let (ack, _) = h.sent().expect("immediate duplicate ACK");
        assert_eq!(ack.ack, PEER_ISS + 1);
        let sack = ack.options.sack_blocks;
        assert_eq!(sack.as_slice().len(), 1);
        assert_eq!((sack.as_slice()[0].left, sack.as_slice()[0].right), (PEER_ISS + 11, PEER_ISS + 21));
        // The hole fills: ACK covers both, no SACK left.
        assert_eq!(h.recv(TcpFlags::ACK, PEER_ISS + 1, iss + 1, b"abcdefghij"), Outcome::Accepted);
        let (ack, _) = h.sent().unwrap();
        assert_eq!(ack.ack, PEER_ISS + 21);
        assert!(ack.options.sack_blocks.is_empty());
    }

    #[test]
    fn three_duplicate_acks_trigger_fast_retransmit() {
        let (mut h, iss) = established(TcpConfig { mss: 100, ..plain() });
        h.conn.send(&[9u8; 1000]).unwrap();
        assert_eq!(h.sent_all().len(), 10);
        // One new ACK, then three duplicates of it.
        for _ in 0..4 {
            assert_eq!(h.recv(TcpFlags::ACK, PEER_ISS + 1, iss + 101, b""), Outcome::Accepted);
        }
        let (rtx, p) = h.sent().expect("fast retransmit");
        assert_eq!((rtx.seq, p.len()), (iss + 101, 100));
    }

    #[test]
    fn rto_retransmits_from_snd_una_and_backs_off() {
        let (mut h, iss) = established(TcpConfig { mss: 100, ..plain() });
        h.conn.send(&[9u8; 300]).unwrap();
        h.sent_all();
        let rto = h.conn.rto();
        h.advance(rto);
        let (rtx, _) = h.sent().expect("retransmission");
        assert_eq!(rtx.seq, iss + 1);
        assert_eq!(h.conn.rto(), rto * 2);
        assert_eq!(h.conn.windows().1, 100, "cwnd collapsed to one segment");
    }

    #[test]
    fn pure_ack_and_rst_carry_snd_max_after_rto_rewinds_snd_nxt() {
        let (mut h, iss) = established(TcpConfig { mss: 100, ..plain() });
        h.conn.send(&[9u8; 300]).unwrap();
        assert_eq!(h.sent_all().len(), 3);
        let rto = h.conn.rto();
        h.advance(rto);
        let (rtx, _) = h.sent().expect("retransmission");
        assert_eq!(rtx.seq, iss + 1);
        assert!(h.sent().is_none(), "cwnd of one segment");
        assert_eq!(h.conn.sequence().1, SeqNumber(iss + 101), "SND.NXT went back");
        // The peer's data arrives, its ACK of ours lost: our ACK must not claim SEQ = SND.NXT,
        // which the peer, holding all 300 bytes, would drop as left of its window.
        assert_eq!(h.recv(TcpFlags::ACK, PEER_ISS + 1, iss + 1, b"x"), Outcome::Accepted);
        let (ack, payload) = h.sent().expect("ACK");
        assert!(payload.is_empty());
        assert_eq!((ack.flags, ack.seq, ack.ack), (TcpFlags::ACK, iss + 301, PEER_ISS + 2));
        // Likewise an abort's RST must land on the peer's RCV.NXT (RFC 5961 3.2).
        h.conn.abort();
        let (rst, _) = h.sent().expect("RST");
        assert_eq!((rst.flags, rst.seq), (TcpFlags::RST, iss + 301));
    }

    #[test]
    fn answers_to_unacceptable_pure_acks_are_rate_limited() {
        let (mut h, iss) = established(plain());
        let old = PEER_ISS + 1 - 100;
        assert_eq!(h.recv(TcpFlags::ACK, old, iss + 1, b""), Outcome::Dropped(DropReason::OutOfWindow));
        let (ack, _) = h.sent().expect("the first is answered");
        assert_eq!((ack.seq, ack.ack), (iss + 1, PEER_ISS + 1));
        // A second within 500 ms is not: that is how ACK loops are broken.
        h.now += Duration::from_millis(499);
        assert_eq!(h.recv(TcpFlags::ACK, old, iss + 1, b""), Outcome::Dropped(DropReason::OutOfWindow));
        assert!(h.sent().is_none());
        // A segment that occupies sequence space is always answered.
        assert_eq!(h.recv(TcpFlags::ACK, old, iss + 1, b"data"), Outcome::Dropped(DropReason::OutOfWindow));
        assert!(h.sent().is_some());
        h.now += Duration::from_millis(1);
        assert_eq!(h.recv(TcpFlags::ACK, old, iss + 1, b""), Outcome::Dropped(DropReason::OutOfWindow));
        assert!(h.sent().is_some(), "answered again after 500 ms");
    }

    #[test]
    fn data_retries_run_out() {
        let (mut h, _) = established(TcpConfig { data_retries: 3, ..plain() });
        h.conn.send(b"lost").unwrap();
        h.sent_all();
        for _ in 0..4 {
            let t = h.conn.poll_timeout().unwrap();
            h.advance(t.saturating_duration_since(h.now));
            h.sent_all();
        }
        assert_eq!(h.conn.close_reason(), Some(CloseReason::TimedOut));
    }

    #[test]
    fn send_buffer_backpressure_and_writable_event() {
        let (mut h, iss) = established(TcpConfig { send_buffer_len: 1024, ..plain() });
        assert_eq!(h.conn.send(&[0u8; 2000]), Ok(1024));
        assert_eq!(h.conn.send(b"more"), Err(SendError::BufferFull));
        h.sent_all();
        assert_eq!(h.recv(TcpFlags::ACK, PEER_ISS + 1, iss + 1 + 536, b""), Outcome::Accepted);
        assert!(std::iter::from_fn(|| h.conn.poll_event()).any(|e| e == Event::Writable));
        assert_eq!(h.conn.send(b"more"), Ok(4));
    }

    #[test]
    fn window_update_after_reading_a_full_buffer() {
        let (mut h, iss) = established(TcpConfig { recv_buffer_len: 1024, ..plain() });
        assert_eq!(h.recv(TcpFlags::ACK, PEER_ISS + 1, iss + 1, &[0u8; 1024]), Outcome::Accepted);
        let (ack, _) = h.sent().unwrap();
        assert_eq!(ack.window, 0);
        let mut buf = [0u8; 1024];
        assert_eq!(h.conn.recv(&mut buf), Ok(1024));
        let (update, _) = h.sent().expect("window update");
        assert_eq!(update.window, 1024);
    }

    #[test]
    fn a_window_probe_at_rcv_nxt_minus_one_acknowledges_our_data() {
        // Our window is closed and our data is out; the peer's zero-window probe (Linux sends
        // SEG.SEQ = RCV.NXT - 1, no data) carries the ACK of that data.
        let (mut h, iss) = established(TcpConfig { recv_buffer_len: 1024, ..plain() });
        assert_eq!(h.recv(TcpFlags::ACK, PEER_ISS + 1, iss + 1, &[0u8; 1024]), Outcome::Accepted);
        h.conn.send(b"echo").unwrap();
        let (seg, _) = h.sent().unwrap();
        assert_eq!((seg.window, h.conn.send_queue_len()), (0, 4));
        let rcv_nxt = PEER_ISS + 1 + 1024;
        for answer in 0..2 {
            assert_eq!(h.recv(TcpFlags::ACK, rcv_nxt - 1, iss + 5, b""), Outcome::Accepted);
            assert_eq!(h.conn.send_queue_len(), 0, "the probe's ACK was not taken");
            let (ack, _) = h.sent().expect("every probe is answered with our window");
            assert_eq!((ack.seq, ack.ack, ack.window), (iss + 5, rcv_nxt, 0), "answer {answer}");
            h.now += Duration::from_millis(200);
        }
        assert_eq!(h.conn.poll_timeout(), None, "nothing left to retransmit");
    }

    #[test]
    fn a_burst_of_probes_at_rcv_nxt_minus_one_gets_one_answer() {
        // A peer behind our RCV.NXT (it never sent what a forged segment made us take) answers
        // each of our ACKs with one at RCV.NXT - 1: answering every one is an endless ACK war.
        let (mut h, iss) = established(plain());
        assert_eq!(h.recv(TcpFlags::ACK, PEER_ISS + 1, iss + 1, b"forged"), Outcome::Accepted);
        while h.sent().is_some() {}
        let rcv_nxt = PEER_ISS + 1 + 6;
        let mut answers = 0;
        for _ in 0..10 {
            assert_eq!(h.recv(TcpFlags::ACK, rcv_nxt - 1, iss + 1, b""), Outcome::Accepted);
            while h.sent().is_some() {
                answers += 1;
            }
        }
        assert_eq!(answers, 1, "ten probes in one instant, one answer");
        h.now += Duration::from_millis(200);
        assert_eq!(h.recv(TcpFlags::ACK, rcv_nxt - 1, iss + 1, b""), Outcome::Accepted);
        assert!(h.sent().is_some(), "a probe an RTO later is answered again");
    }

    #[test]
    fn rst_must_match_rcv_nxt_exactly() {
        let (mut h, _) = established(plain());
        assert_eq!(h.recv(TcpFlags::RST, PEER_ISS + 2, 0, b""), Outcome::Dropped(DropReason::Challenged));
        assert!(h.sent().is_some(), "challenge ACK");
        assert_eq!(h.recv(TcpFlags::RST, PEER_ISS + 1, 0, b""), Outcome::Accepted);
        assert_eq!(h.conn.close_reason(), Some(CloseReason::Reset));
        assert_eq!(h.conn.recv(&mut [0u8; 4]), Err(RecvError::InvalidState));
    }

    #[test]
    fn close_with_unread_data_aborts() {
        let (mut h, iss) = established(plain());
        assert_eq!(h.recv(TcpFlags::ACK, PEER_ISS + 1, iss + 1, b"unread"), Outcome::Accepted);
        h.sent_all();
        h.conn.close();
        let (rst, _) = h.sent().unwrap();
        assert!(rst.flags.contains(TcpFlags::RST));
        assert_eq!(h.conn.close_reason(), Some(CloseReason::Aborted));
    }
}

mod closing_states {
    use super::*;

    #[test]
    fn fin_wait_1_to_fin_wait_2_to_time_wait() {
        let (mut h, iss) = established(plain());
        h.conn.shutdown();
        let (fin, _) = h.sent().unwrap();
        assert_eq!((fin.flags, fin.seq), (TcpFlags::FIN | TcpFlags::ACK, iss + 1));
        assert_eq!(h.conn.state(), State::FinWait1);
        assert_eq!(h.recv(TcpFlags::ACK, PEER_ISS + 1, iss + 2, b""), Outcome::Accepted);
        assert_eq!(h.conn.state(), State::FinWait2);
        assert_eq!(h.recv(TcpFlags::FIN | TcpFlags::ACK, PEER_ISS + 1, iss + 2, b""), Outcome::Accepted);
        assert_eq!(h.conn.state(), State::TimeWait);
        let (ack, _) = h.sent().unwrap();
        assert_eq!(ack.ack, PEER_ISS + 2);
        assert_eq!(h.conn.poll_timeout(), Some(h.now + Duration::from_secs(60)));
        h.advance(Duration::from_secs(60));
        assert_eq!(h.conn.state(), State::Closed);
    }

    #[test]
    fn fin_wait_2_sends_nothing_once_data_and_fin_are_acked() {
        // A FIN acknowledged together with the data before it must not go out again: the
        // connection once re-sent it at SND.NXT, one past the first, in FIN-WAIT-2.
        let (mut h, iss) = established(plain());
        assert_eq!(h.conn.send(b"response"), Ok(8));
        h.conn.shutdown();
        let (seg, data) = h.sent().unwrap();
        assert_eq!(
            (seg.flags, seg.seq, data.as_slice()),
            (TcpFlags::FIN | TcpFlags::PSH | TcpFlags::ACK, iss + 1, &b"response"[..])
        );
        assert!(h.sent().is_none());
        assert_eq!(h.recv(TcpFlags::ACK, PEER_ISS + 1, iss + 10, b""), Outcome::Accepted);
        assert_eq!(h.conn.state(), State::FinWait2);
        assert!(h.sent_all().is_empty(), "nothing is left to send in FIN-WAIT-2");
        assert_eq!(h.recv(TcpFlags::FIN | TcpFlags::ACK, PEER_ISS + 1, iss + 10, b""), Outcome::Accepted);
        let (ack, _) = h.sent().unwrap();
        assert_eq!((ack.flags, ack.seq, ack.ack), (TcpFlags::ACK, iss + 10, PEER_ISS + 2));
    }

    #[test]
    fn close_wait_to_last_ack_to_closed() {
        let (mut h, iss) = established(plain());
        assert_eq!(h.recv(TcpFlags::FIN | TcpFlags::ACK, PEER_ISS + 1, iss + 1, b""), Outcome::Accepted);
        assert_eq!(h.conn.state(), State::CloseWait);
        h.sent_all();
        h.conn.close();
        assert_eq!(h.conn.state(), State::LastAck);
        let (fin, _) = h.sent().unwrap();
        assert!(fin.flags.contains(TcpFlags::FIN));
        assert_eq!(h.recv(TcpFlags::ACK, PEER_ISS + 2, iss + 2, b""), Outcome::Accepted);
        assert_eq!(h.conn.state(), State::Closed);
        assert_eq!(h.conn.close_reason(), Some(CloseReason::Normal));
    }

    #[test]
    fn fin_is_retransmitted_in_last_ack() {
        let (mut h, iss) = established(plain());
        assert_eq!(h.recv(TcpFlags::FIN | TcpFlags::ACK, PEER_ISS + 1, iss + 1, b""), Outcome::Accepted);
        h.sent_all();
        h.conn.close();
        h.sent_all();
        let rto = h.conn.rto();
        h.advance(rto);
        let (fin, _) = h.sent().expect("FIN retransmitted");
        assert_eq!((fin.seq, fin.flags), (iss + 1, TcpFlags::FIN | TcpFlags::ACK));
    }

    #[test]
    fn simultaneous_close_through_closing() {
        let (mut h, iss) = established(plain());
        h.conn.shutdown();
        h.sent_all();
        assert_eq!(h.recv(TcpFlags::FIN | TcpFlags::ACK, PEER_ISS + 1, iss + 1, b""), Outcome::Accepted);
        assert_eq!(h.conn.state(), State::Closing);
        assert_eq!(h.recv(TcpFlags::ACK, PEER_ISS + 2, iss + 2, b""), Outcome::Accepted);
        assert_eq!(h.conn.state(), State::TimeWait);
    }

    #[test]
    fn orphaned_fin_wait_2_times_out_with_rst() {
        let (mut h, iss) = established(TcpConfig { fin_wait_2_timeout: Duration::from_secs(5), ..plain() });
        h.conn.close();
        h.sent_all();
        assert_eq!(h.recv(TcpFlags::ACK, PEER_ISS + 1, iss + 2, b""), Outcome::Accepted);
        assert_eq!(h.conn.state(), State::FinWait2);
        h.advance(Duration::from_secs(5));
        assert_eq!(h.conn.state(), State::Closed);
        let (rst, _) = h.sent().unwrap();
        assert!(rst.flags.contains(TcpFlags::RST));
    }

    #[test]
    fn close_after_half_close_in_fin_wait_2_arms_the_orphan_timeout() {
        // shutdown(), FIN acknowledged, and only then close(): the orphan timeout must still
        // run, or a peer that never sends its FIN holds the connection for ever.
        let (mut h, iss) = established(TcpConfig { fin_wait_2_timeout: Duration::from_secs(5), ..plain() });
        h.conn.shutdown();
        h.sent_all();
        assert_eq!(h.recv(TcpFlags::ACK, PEER_ISS + 1, iss + 2, b""), Outcome::Accepted);
        assert_eq!(h.conn.state(), State::FinWait2);
        assert_eq!(h.conn.poll_timeout(), None, "not orphaned yet: no timeout");
        h.conn.close();
        assert!(h.sent().is_none());
        assert_eq!(h.conn.poll_timeout(), Some(h.now + Duration::from_secs(5)));
        h.advance(Duration::from_secs(5));
        assert_eq!(h.conn.state(), State::Closed);
        let (rst, _) = h.sent().unwrap();
        assert!(rst.flags.contains(TcpFlags::RST));
    }

    #[test]
    fn time_wait_acks_a_retransmitted_fin_and_restarts() {
        let (mut h, iss) = established(plain());
        h.conn.shutdown();
        h.sent_all();
        assert_eq!(h.recv(TcpFlags::FIN | TcpFlags::ACK, PEER_ISS + 1, iss + 2, b""), Outcome::Accepted);
        h.sent_all();
        assert_eq!(h.conn.state(), State::TimeWait);
        h.advance(Duration::from_secs(30));
        assert_eq!(h.recv(TcpFlags::FIN | TcpFlags::ACK, PEER_ISS + 1, iss + 2, b""), Outcome::Accepted);
        let (ack, _) = h.sent().expect("ACK again");
        assert_eq!(ack.ack, PEER_ISS + 2);
        assert_eq!(h.conn.poll_timeout(), Some(h.now + Duration::from_secs(60)));
    }
}

mod dead_peers {
    use super::*;

    /// ESTABLISHED with a peer that closed its window, and data queued behind it.
    fn zero_window(config: TcpConfig) -> (Harness, u32) {
        let (mut h, iss) = established(config);
        let closed = TcpRepr { seq: PEER_ISS + 1, ack: iss + 1, flags: TcpFlags::ACK, window: 0, ..h.peer_repr() };
        assert_eq!(h.recv_with(closed, b""), Outcome::Accepted);
        h.conn.send(b"waiting for the window").unwrap();
        assert!(h.sent_all().iter().all(|(_, p)| p.is_empty()), "nothing sent into a zero window");
        (h, iss)
    }

    /// Runs the connection's timers `n` times; `answer` is called after each, with what it sent.
    fn run_timers(h: &mut Harness, n: usize, mut answer: impl FnMut(&mut Harness, &[(TcpRepr, Vec<u8>)])) {
        for _ in 0..n {
            let Some(t) = h.conn.poll_timeout() else { return };
            h.advance(t.saturating_duration_since(h.now));
            let sent = h.sent_all();
            answer(h, &sent);
        }
    }

    #[test]
    fn a_zero_window_peer_that_vanishes_is_given_up() {
        let (mut h, _) = zero_window(TcpConfig { data_retries: 3, ..plain() });
        let mut probes = 0;
        run_timers(&mut h, 20, |_, sent| probes += sent.iter().filter(|(_, p)| p.len() == 1).count());
        assert_eq!(h.conn.close_reason(), Some(CloseReason::TimedOut), "after {probes} unanswered probes");
        assert_eq!(probes, 3, "data_retries probes, then it gives up");
    }

    #[test]
    fn a_live_zero_window_peer_is_bounded_by_the_user_timeout_only() {
        // Every probe is answered with the window still closed: the peer is alive.
        let answer = |h: &mut Harness, sent: &[(TcpRepr, Vec<u8>)]| {
            if let Some((probe, _)) = sent.iter().find(|(_, p)| p.len() == 1) {
                let ack =
                    TcpRepr { seq: PEER_ISS + 1, ack: probe.seq, flags: TcpFlags::ACK, window: 0, ..h.peer_repr() };
                let _ = h.recv_with(ack, b"");
            }
        };
        let (mut h, _) = zero_window(TcpConfig { data_retries: 3, ..plain() });
        run_timers(&mut h, 12, answer);
        assert_eq!(h.conn.state(), State::Established, "answered probes do not count");

        let ut = Duration::from_secs(30);
        let (mut h, _) = zero_window(TcpConfig { data_retries: 3, user_timeout: Some(ut), ..plain() });
        let start = h.now;
        run_timers(&mut h, 40, answer);
        assert_eq!(h.conn.close_reason(), Some(CloseReason::TimedOut));
        let took = h.now.saturating_duration_since(start);
        // The stall is measured from the first probe, an RTO (200 ms here) after the window
        // closed; the last probe timer is clamped to the user timeout.
        assert!(took >= ut && took <= ut + Duration::from_secs(1), "{took:?}");
    }

    #[test]
    fn the_user_timeout_ends_retransmissions_before_the_retries_do() {
        let ut = Duration::from_secs(5);
        let (mut h, _) = established(TcpConfig { user_timeout: Some(ut), ..plain() });
        h.conn.send(b"lost").unwrap();
        h.sent_all();
        let start = h.now;
        run_timers(&mut h, 15, |_, _| {});
        assert_eq!(h.conn.close_reason(), Some(CloseReason::TimedOut));
        let took = h.now.saturating_duration_since(start);
        assert!(took >= ut && took < Duration::from_secs(20), "{took:?} (15 retries would take minutes)");
    }

    /// Runs the timers of a connection that hears nothing more until it closes (at most `n`
    /// firings); returns when each retransmission or probe went out, and when it closed.
    fn unanswered(h: &mut Harness, n: usize) -> (Vec<Instant>, Instant) {
        let mut sent_at = Vec::new();
        for _ in 0..n {
            let Some(t) = h.conn.poll_timeout() else { break };
            h.advance(t.saturating_duration_since(h.now));
            if h.sent_all().iter().any(|(r, p)| !p.is_empty() && !r.flags.contains(TcpFlags::RST)) {
                sent_at.push(h.now);
            }
        }
        (sent_at, h.now)
    }

    /// The stall is measured from the first unanswered retransmission or probe; the end must
    /// come exactly the user timeout after it, not at the next backed-off firing.
    fn assert_ends_at_the_user_timeout(h: &Harness, sent_at: &[Instant], end: Instant, ut: Duration) {
        assert_eq!(h.conn.close_reason(), Some(CloseReason::TimedOut), "sent at {sent_at:?}");
        let took = end.saturating_duration_since(sent_at[0]);
        assert_eq!(took, ut, "ended {took:?} after the stall began (sent at {sent_at:?})");
    }

    #[test]
    fn the_user_timeout_ends_zero_window_probing_on_time() {
        // Probes back off from the RTO (200 ms): 0.2, 0.6, 1.4, 3.0, 6.2 s after the window
        // closed. Unclamped, a 3 s timeout counted from the first probe ended at 6.2 s.
        let ut = Duration::from_secs(3);
        let (mut h, _) = zero_window(TcpConfig { data_retries: 15, user_timeout: Some(ut), ..plain() });
        let (sent_at, end) = unanswered(&mut h, 40);
        assert_ends_at_the_user_timeout(&h, &sent_at, end, ut);
    }

    #[test]
    fn the_user_timeout_ends_retransmissions_on_time() {
        let ut = Duration::from_secs(3);
        let (mut h, _) = established(TcpConfig { data_retries: 15, user_timeout: Some(ut), ..plain() });
        h.conn.send(b"lost").unwrap();
        h.sent_all();
        let (sent_at, end) = unanswered(&mut h, 40);
        assert_ends_at_the_user_timeout(&h, &sent_at, end, ut);
    }

    #[test]
    fn without_a_user_timeout_the_backoff_is_unchanged() {
        // The clamp only brings forward the firing that would pass the user timeout: every
        // earlier one is where the backoff puts it, and without a user timeout all of them
        // are, each interval twice the one before.
        let doubling = |at: &[Instant]| {
            at.windows(3).all(|w| {
                let (a, b) = (w[1].saturating_duration_since(w[0]), w[2].saturating_duration_since(w[1]));
                b == 2 * a || b == Duration::from_secs(60)
            })
        };
        let ut = Duration::from_secs(3);
        for probe in [true, false] {
            let start = |config: TcpConfig| {
                if probe {
                    zero_window(config).0
                } else {
                    let (mut h, _) = established(config);
                    h.conn.send(b"lost").unwrap();
                    h.sent_all();
                    h
                }
            };
            let mut h = start(TcpConfig { data_retries: 8, ..plain() });
            let (free, _) = unanswered(&mut h, 40);
            assert_eq!(h.conn.close_reason(), Some(CloseReason::TimedOut));
            assert!(free.len() >= 8 && doubling(&free), "probe {probe}: {free:?}");
            let mut h = start(TcpConfig { data_retries: 8, user_timeout: Some(ut), ..plain() });
            let (bounded, end) = unanswered(&mut h, 40);
            assert!(bounded.len() >= 3, "probe {probe}: {bounded:?}");
            assert_eq!(bounded[..], free[..bounded.len()], "probe {probe}: same firings until the user timeout");
            assert!(end < free[bounded.len()], "probe {probe}: the user timeout ended it first");
        }
    }
}
