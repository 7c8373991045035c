//! The one libc call the loader makes: resolving an interface name.
#![allow(unsafe_code)]

use std::ffi::CString;

/// Longest interface name Linux accepts (`IFNAMSIZ` minus the NUL).
const IFNAME_LEN_MAX: usize = libc::IFNAMSIZ - 1;

/// The index of the interface named `ifname` in the calling thread's network
/// namespace, or `None` if there is none. Unlike `/sys/class/net`, this asks
/// the kernel, so it is right even after `setns` into another namespace.
pub(crate) fn if_nametoindex(ifname: &str) -> Option<u32> {
    if ifname.is_empty() || ifname.len() > IFNAME_LEN_MAX {
        return None;
    }
    let name = CString::new(ifname).ok()?;
    // Safety: `name` is a valid NUL-terminated string that outlives the call,
    // and if_nametoindex only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_resolves_and_nonsense_does_not() {
        assert!(if_nametoindex("lo").is_some());
        assert_eq!(if_nametoindex(""), None);
        assert_eq!(if_nametoindex("no\0such"), None);
        assert_eq!(if_nametoindex("a-name-much-too-long-for-linux"), None);
    }
}
