//! A minimal rtnetlink `RTM_GETLINK` query: index, MAC, MTU and queue counts of an interface
//! in the calling thread's network namespace. Setup-time only; allocates.

use std::io;
use std::time::Duration;

use rustix::net::{recv, send, socket_with, sockopt, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

/// What the kernel reports about one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// The interface index.
    pub index: u32,
    /// The hardware address, when it is a 6-byte MAC.
    pub mac: Option<[u8; 6]>,
    /// The MTU.
    pub mtu: Option<u32>,
    /// Receive queues (`IFLA_NUM_RX_QUEUES`).
    pub rx_queues: Option<u32>,
    /// Transmit queues (`IFLA_NUM_TX_QUEUES`).
    pub tx_queues: Option<u32>,
}

const NLMSG_HEADER_LEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const NLM_F_REQUEST: u16 = 1;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_EXT_MASK: u16 = 29;
const IFLA_NUM_TX_QUEUES: u16 = 31;
const IFLA_NUM_RX_QUEUES: u16 = 32;
const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Looks `ifname` up. A missing interface is `ENODEV` (`io::ErrorKind` aside, test with
/// [`is_no_such_device`]).
pub fn interface_info(ifname: &str) -> io::Result<InterfaceInfo> {
    if ifname.is_empty() || ifname.len() > 15 || ifname.contains('\0') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{ifname:?} is not an interface name")));
    }
    let socket = socket_with(AddressFamily::NETLINK, SocketType::RAW, SocketFlags::CLOEXEC, None)?;
    // The kernel always answers a request, but a bound on the wait costs nothing.
    sockopt::set_socket_timeout(&socket, sockopt::Timeout::Recv, Some(Duration::from_secs(2)))?;
    let request = build_request(ifname);
    send(&socket, &request, SendFlags::empty())?;
    let mut buffer = vec![0u8; 32 * 1024];
    let (_, len) = recv(&socket, &mut buffer[..], RecvFlags::empty())?;
    parse_response(&buffer[..len.min(buffer.len())])
}

/// True for the error [`interface_info`] returns when the interface does not exist.
pub fn is_no_such_device(error: &io::Error) -> bool {
    error.raw_os_error() == Some(rustix::io::Errno::NODEV.raw_os_error())
}

fn push_attr(message: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    message.extend_from_slice(&(len as u16).to_ne_bytes());
    message.extend_from_slice(&kind.to_ne_bytes());
    message.extend_from_slice(payload);
    message.resize(message.len().next_multiple_of(4), 0);
}

fn build_request(ifname: &str) -> Vec<u8> {
    let mut message = vec![0u8; NLMSG_HEADER_LEN + IFINFOMSG_LEN];
    message[4..6].copy_from_slice(&RTM_GETLINK.to_ne_bytes());
    message[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    message[8..12].copy_from_slice(&1u32.to_ne_bytes());
    let mut name = ifname.as_bytes().to_vec();
    name.push(0);
    push_attr(&mut message, IFLA_IFNAME, &name);
    push_attr(&mut message, IFLA_EXT_MASK, &RTEXT_FILTER_SKIP_STATS.to_ne_bytes());
    let len = message.len() as u32;
    message[0..4].copy_from_slice(&len.to_ne_bytes());
    message
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn malformed() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "malformed rtnetlink answer")
}

fn parse_response(mut bytes: &[u8]) -> io::Result<InterfaceInfo> {
    while bytes.len() >= NLMSG_HEADER_LEN {
        let len = read_u32(bytes, 0).ok_or_else(malformed)? as usize;
        let kind = read_u16(bytes, 4).ok_or_else(malformed)?;
        if len < NLMSG_HEADER_LEN || len > bytes.len() {
            return Err(malformed());
        }
        let message = &bytes[..len];
        match kind {
            NLMSG_ERROR => {
                let code = read_u32(message, NLMSG_HEADER_LEN).ok_or_else(malformed)? as i32;
                if code != 0 {
                    return Err(io::Error::from_raw_os_error(-code));
                }
            }
            RTM_NEWLINK => return parse_link(message),
            NLMSG_DONE => break,
            _ => {}
        }
        bytes = &bytes[len.next_multiple_of(4).min(bytes.len())..];
    }
    Err(malformed())
}

fn parse_link(message: &[u8]) -> io::Result<InterfaceInfo> {
    let index = read_u32(message, NLMSG_HEADER_LEN + 4).ok_or_else(malformed)?;
    let mut info = InterfaceInfo { index, mac: None, mtu: None, rx_queues: None, tx_queues: None };
    let mut at = NLMSG_HEADER_LEN + IFINFOMSG_LEN;
    while at + 4 <= message.len() {
        let len = read_u16(message, at).ok_or_else(malformed)? as usize;
        let kind = read_u16(message, at + 2).ok_or_else(malformed)? & NLA_TYPE_MASK;
        if len < 4 || at + len > message.len() {
            return Err(malformed());
        }
        let payload = &message[at + 4..at + len];
        match kind {
            IFLA_ADDRESS => info.mac = payload.try_into().ok(),
            IFLA_MTU => info.mtu = read_u32(payload, 0),
            IFLA_NUM_RX_QUEUES => info.rx_queues = read_u32(payload, 0),
            IFLA_NUM_TX_QUEUES => info.tx_queues = read_u32(payload, 0),
            _ => {}
        }
        at += len.next_multiple_of(4);
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found() {
        let info = interface_info("lo").unwrap();
        assert_eq!(info.index, 1);
        assert_eq!(info.mac, Some([0; 6]));
        assert!(info.rx_queues.unwrap_or(1) >= 1);
    }

    #[test]
    fn missing_interface_is_enodev() {
        let error = interface_info("sxa-missing0").unwrap_err();
        assert!(is_no_such_device(&error), "{error:?}");
    }

    #[test]
    fn garbage_is_rejected_without_panicking() {
        assert!(parse_response(&[]).is_err());
        assert!(parse_response(&[0xff; 40]).is_err());
        let mut truncated = build_request("eth0");
        truncated[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
        truncated[20..22].copy_from_slice(&0xffffu16.to_ne_bytes());
        let _ = parse_response(&truncated);
    }
}
