//! The kernel's memory for sockets, as the `concurrency` case counts it: the slab caches
//! (`SReclaimable` + `SUnreclaim` of `/proc/meminfo`: socket, inode, file, dentry and epoll
//! objects) plus the pages TCP has charged for buffers (`mem` of the `TCP:` line of
//! `/proc/net/sockstat`, a machine-wide count whatever the namespace). Both are machine-wide:
//! a case reads them before and after, and compares deltas.

use anyhow::{Context, Result};

/// One reading, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelMemory {
    /// `SReclaimable` + `SUnreclaim`.
    pub slab_bytes: u64,
    /// TCP's buffer pages times the page size.
    pub tcp_buffer_bytes: u64,
}

impl KernelMemory {
    /// Reads both now.
    pub fn read() -> Result<KernelMemory> {
        let meminfo = std::fs::read_to_string("/proc/meminfo").context("read /proc/meminfo")?;
        let sockstat = std::fs::read_to_string("/proc/net/sockstat").context("read /proc/net/sockstat")?;
        let slab_bytes = slab_bytes(&meminfo).context("no SReclaimable/SUnreclaim in /proc/meminfo")?;
        let pages = tcp_mem_pages(&sockstat).context("no TCP mem in /proc/net/sockstat")?;
        Ok(KernelMemory { slab_bytes, tcp_buffer_bytes: pages * rustix::param::page_size() as u64 })
    }

    /// Both together.
    pub fn total(&self) -> u64 {
        self.slab_bytes + self.tcp_buffer_bytes
    }
}

/// `SReclaimable` + `SUnreclaim` of `/proc/meminfo`, in bytes.
pub fn slab_bytes(meminfo: &str) -> Option<u64> {
    let kib = |name: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.split(':').next() == Some(name))?;
        let mut words = line.split(':').nth(1)?.split_whitespace();
        let value: u64 = words.next()?.parse().ok()?;
        (words.next() == Some("kB")).then_some(value * 1024)
    };
    Some(kib("SReclaimable")? + kib("SUnreclaim")?)
}

/// The pages after `mem` on the `TCP:` line of `/proc/net/sockstat`.
pub fn tcp_mem_pages(sockstat: &str) -> Option<u64> {
    let line = sockstat.lines().find(|l| l.starts_with("TCP:"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "mem")?;
    words.get(at + 1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_and_tcp_pages_are_read_from_proc() {
        let meminfo = "MemTotal:       24683876 kB\nSlab:             455860 kB\nSReclaimable:     300000 kB\n\
                       SUnreclaim:       155860 kB\nKReclaimable:     300000 kB\n";
        assert_eq!(slab_bytes(meminfo), Some(455_860 * 1024));
        assert_eq!(slab_bytes("Slab: 1 kB\n"), None);
        let sockstat = "sockets: used 230\nTCP: inuse 5 orphan 0 tw 2 alloc 9 mem 61\nUDP: inuse 0 mem 3\n";
        assert_eq!(tcp_mem_pages(sockstat), Some(61));
        assert_eq!(tcp_mem_pages("UDP: inuse 0 mem 3\n"), None);
    }
}
