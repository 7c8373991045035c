//! Two connections joined back to back in memory, with no link in between: what the core
//! benchmark and the allocation test drive, so they measure the TCP core and the wire codec.

use std::net::Ipv4Addr;

use crate::tcp::{Connection, Endpoint, FourTuple, IsnGenerator, Outcome, Segment, State, TcpConfig};
use crate::time::Instant;
use crate::wire::{ChecksumMode, TcpPacket, TcpRepr};

/// A client and a server connection and a clock. Every segment is emitted into a buffer,
/// parsed back with checksum verification and handed to the other side, as on a real link.
#[derive(Debug)]
pub struct Pair {
    /// The active side.
    pub client: Connection,
    /// The passive side.
    pub server: Connection,
    /// Virtual time.
    pub now: Instant,
    /// Segments carried so far.
    pub segments: u64,
    /// Segments the receiving side did not accept (must stay zero on a clean pair).
    pub rejected: u64,
    isn: IsnGenerator,
    buf: Box<[u8]>,
    next_port: u16,
}

/// The client's address.
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The server's address.
pub const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The server's port.
pub const SERVER_PORT: u16 = 80;

impl Pair {
    /// Two CLOSED connections with `config`; all allocation happens here.
    pub fn new(config: TcpConfig) -> Pair {
        Pair {
            client: Connection::with_rings(config),
            server: Connection::with_rings(config),
            now: Instant::from_millis(1_000),
            segments: 0,
            rejected: 0,
            isn: IsnGenerator::with_key([7, 11]),
            buf: vec![0u8; 64 + usize::from(config.mss).max(1460)].into_boxed_slice(),
            next_port: 10_000,
        }
    }

    fn carry(
        from: &mut Connection,
        to: &mut Connection,
        now: Instant,
        buf: &mut [u8],
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) -> (u64, u64) {
        let (mut moved, mut rejected) = (0, 0);
        while let Some(n) = from.poll_transmit(now, buf) {
            moved += 1;
            let bytes = &buf[..n];
            let Ok(view) = TcpPacket::new_checked(bytes) else {
                rejected += 1;
                continue;
            };
            let Ok(repr) = TcpRepr::parse(&view, src, dst, ChecksumMode::Verify) else {
                rejected += 1;
                continue;
            };
            let seg = Segment { src_addr: src, dst_addr: dst, repr, payload: view.payload() };
            if matches!(to.handle_segment(now, &seg), Outcome::NoConnection) {
                rejected += 1;
            }
        }
        (moved, rejected)
    }

    /// Carries segments both ways until neither side has anything to send.
    ///
    /// Each turn drains one side until `poll_transmit` says `None`. A drained side can have
    /// something to send again only after it received a segment (time stands still here), so
    /// after the first turn of each a side is polled again only if the other just sent it
    /// something: asking a side that had no input since its last `None` is work a real
    /// event loop would not do, and not part of what the benchmark measures.
    pub fn exchange(&mut self) {
        let mut from_client = true;
        let mut turns = 0u32;
        loop {
            let moved = self.turn(from_client);
            turns += 1;
            // Both sides get a first turn (the application may have queued data on either);
            // after that, a turn that sent nothing leaves the other side without input.
            if moved == 0 && turns >= 2 {
                return;
            }
            from_client = !from_client;
        }
    }

    /// One side transmits everything it has due to the other (the other does not answer yet);
    /// returns how many segments went.
    fn turn(&mut self, from_client: bool) -> u64 {
        let (moved, rejected) = if from_client {
            Pair::carry(&mut self.client, &mut self.server, self.now, &mut self.buf, CLIENT_ADDR, SERVER_ADDR)
        } else {
            Pair::carry(&mut self.server, &mut self.client, self.now, &mut self.buf, SERVER_ADDR, CLIENT_ADDR)
        };
        self.segments += moved;
        self.rejected += rejected;
        moved
    }

    /// Opens a connection (the client from a fresh port) and completes the handshake.
    pub fn open(&mut self) -> FourTuple {
        self.next_port = if self.next_port >= 60_000 { 10_000 } else { self.next_port + 1 };
        let local = Endpoint::new(CLIENT_ADDR, self.next_port);
        let remote = Endpoint::new(SERVER_ADDR, SERVER_PORT);
        self.server.listen(remote, self.isn).expect("server is closed");
        self.client.connect(self.now, local, remote, self.isn).expect("client is closed");
        self.exchange();
        FourTuple { local, remote }
    }

    /// One whole connection lifetime, as an HTTP/1.1 `Connection: close` exchange: handshake,
    /// request, response, server closes first, client closes, and the server's TIME_WAIT runs
    /// out. Both connections end CLOSED and reusable. `scratch` receives the data.
    ///
    /// Each side runs as [`Interface`](crate::iface::Interface) runs a connection: the
    /// segments of a batch go in, the application acts on the events they raised, and only
    /// then does the side transmit. So the client's request rides on the ACK of the SYN-ACK
    /// (it is sent from the `Connected` callback), the response and the server's FIN ride on
    /// the ACK of the request, and the client's FIN on the ACK of the server's FIN: six
    /// segments, as an event-driven client and server put them on the wire.
    pub fn lifecycle(&mut self, request: &[u8], response: &[u8], scratch: &mut [u8]) {
        self.next_port = if self.next_port >= 60_000 { 10_000 } else { self.next_port + 1 };
        let local = Endpoint::new(CLIENT_ADDR, self.next_port);
        let remote = Endpoint::new(SERVER_ADDR, SERVER_PORT);
        self.server.listen(remote, self.isn).expect("server is closed");
        self.client.connect(self.now, local, remote, self.isn).expect("client is closed");
        self.turn(true); // SYN
        self.turn(false); // SYN-ACK
                          // Client: connected; the request goes out with the handshake's ACK.
        while self.client.poll_event().is_some() {}
        let _ = self.client.send(request);
        self.turn(true); // ACK + request
                         // Server: accepted and readable; it answers and closes.
        while self.server.poll_event().is_some() {}
        let _ = self.server.recv(scratch);
        let _ = self.server.send(response);
        self.server.close();
        self.turn(false); // ACK + response + FIN
                          // Client: readable and closed by the peer; it reads and closes.
        while self.client.poll_event().is_some() {}
        let _ = self.client.recv(scratch);
        self.client.close();
        self.turn(true); // ACK + FIN
        self.turn(false); // ACK: TIME_WAIT on the server, CLOSED on the client
                          // Anything left (nothing, on a clean pair) is carried to quiescence.
        self.exchange();
        // Jump to the end of TIME_WAIT on the server.
        self.now += self.server.config().time_wait;
        self.server.handle_timeout(self.now);
        while self.client.poll_event().is_some() {}
        while self.server.poll_event().is_some() {}
        debug_assert_eq!(self.server.state(), State::Closed);
        debug_assert_eq!(self.client.state(), State::Closed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lifecycle_is_six_segments_and_ends_closed_on_both_sides() {
        let mut pair = Pair::new(TcpConfig::default());
        let mut scratch = [0u8; 256];
        for _ in 0..3 {
            let before = pair.segments;
            pair.lifecycle(b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n", &mut scratch);
            // SYN, SYN-ACK, ACK+request, ACK+response+FIN, ACK+FIN, ACK.
            assert_eq!(pair.segments - before, 6);
            assert_eq!(pair.rejected, 0);
            assert_eq!(pair.client.state(), State::Closed);
            assert_eq!(pair.server.state(), State::Closed);
        }
    }
}
