//! `receive_batch` against `receive`: the same frames, in batches or one by one, give the same
//! outcome, counters included.

use super::*;
use crate::sim::Delivery;

#[test]
fn batches_give_the_same_outcome_and_counters_as_frame_by_frame() {
    let payload: Vec<u8> = (0..20_000u32).map(|i| (i % 249) as u8).collect();
    let mut outcomes = Vec::new();
    for delivery in [Delivery::Frames, Delivery::Batch] {
        let mut b = iface(MAC_B, ADDR_B);
        b.listen(PORT).unwrap();
        let client = Client::new(40, payload.clone(), false);
        let mut net = network(iface(MAC_A, ADDR_A), client, b, Echo::default()).with_delivery(delivery);
        net.run_for(Duration::from_secs(30));
        let largest = net.largest_arrival();
        let (Node { iface: a, app: client }, Node { iface: b, app: server }) = net.into_nodes();
        assert_eq!(client.done.len(), 40);
        assert!(client.done.iter().all(|(got, r)| got == &payload && *r == CloseReason::Normal));
        // Batches longer than one pass (RX_BATCH_MAX) occurred, so chunking was exercised.
        assert!(largest > RX_BATCH_MAX, "largest batch {largest}");
        outcomes.push((*a.counters(), *b.counters(), server.accepted));
    }
    assert_eq!(outcomes[0], outcomes[1]);
}

#[test]
fn a_segment_after_a_syn_in_the_same_batch_finds_the_new_connection() {
    let mut b = iface(MAC_B, ADDR_B);
    b.listen(PORT).unwrap();
    let frame = |repr: &TcpRepr| {
        let mut f = tcp_frame(repr, b"", ADDR_A, ADDR_B);
        f[..6].copy_from_slice(&MAC_B.0);
        f
    };
    // A SYN, its duplicate, a stray ACK for another port, and garbage, in one batch.
    let syn = syn(4000, PORT);
    let stray = TcpRepr { src_port: 4001, dst_port: PORT, seq: 5, ack: 9, flags: TcpFlags::ACK, ..TcpRepr::default() };
    let frames = [frame(&syn), frame(&syn), frame(&stray), vec![0u8; 10]];
    let mut batch = VecFrames::new(frames.iter().map(|f| f.as_slice()), 2048);
    b.receive_batch(Instant::from_millis(5), &mut batch);
    // The duplicate met the connection the first SYN made (looked up again after the miss),
    // instead of making a second one.
    assert_eq!(b.connection_count(), 1);
    assert_eq!(b.slots_created(), 1);
    let replies: Vec<TcpRepr> = batch.replies().map(|r| parse_tcp(r).1).collect();
    assert_eq!(replies.len(), 1, "only the stray ACK is answered in place");
    assert_eq!((replies[0].flags, replies[0].seq), (TcpFlags::RST, 9));
    assert_eq!(b.counters().rx_frames, 4);
    assert_eq!(b.counters().drop_truncated, 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// No batch of bytes makes `receive_batch` panic, and every frame is counted once.
    #[test]
    fn arbitrary_batches_never_panic(frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 0..80)) {
        let mut a = iface(MAC_A, ADDR_A);
        a.listen(PORT).unwrap();
        let mut batch = VecFrames::new(frames.iter().map(|f| f.as_slice()), 256);
        a.receive_batch(Instant::from_millis(1), &mut batch);
        prop_assert_eq!(a.counters().rx_frames, frames.len() as u64);
    }
}
