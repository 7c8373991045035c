//! libxdp's messages go to `tracing` at debug level (target `libxdp`), never to stderr: they
//! would land in the tables of the CLI and the benchmark. `RUST_LOG=libxdp=debug` shows them.
//! libbpf's go to target `libbpf` the same way: synack-xdp routes them when it loads synack's
//! program, and a socket routes them too, since libxdp loads its default program through
//! libbpf when no program of synack's is there (the benchmark's packet ceiling).

#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void};
use std::sync::Once;

/// Installs the callback once per process (creating a socket does it).
pub fn route_to_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Debug, print_libbpf)));
        // SAFETY: `print` has the signature libxdp calls (its va_list is a pointer, taken as
        // one: see `print`), and stays valid for the process's life.
        unsafe {
            libxdp_sys::libxdp_set_print(Some(std::mem::transmute::<
                unsafe extern "C" fn(libxdp_sys::libxdp_print_level, *const c_char, *mut c_void) -> c_int,
                unsafe extern "C" fn(
                    libxdp_sys::libxdp_print_level,
                    *const c_char,
                    *mut libxdp_sys::__va_list_tag,
                ) -> c_int,
            >(print)));
        }
    });
}

fn print_libbpf(level: libbpf_rs::PrintLevel, message: String) {
    tracing::debug!(target: "libbpf", ?level, "{}", message.trim_end());
}

/// libxdp's print function. The va_list is passed as a pointer on the platforms synack runs
/// on (x86-64, aarch64), as libbpf-rs takes libbpf's.
unsafe extern "C" fn print(level: libxdp_sys::libxdp_print_level, format: *const c_char, args: *mut c_void) -> c_int {
    if format.is_null() {
        return 0;
    }
    // SAFETY: libxdp passes a valid format string and the va_list of its arguments.
    let message = match unsafe { vsprintf::vsprintf(format, args) } {
        Ok(message) => message,
        Err(e) => format!("(unreadable libxdp message: {e})"),
    };
    tracing::debug!(target: "libxdp", level, "{}", message.trim_end());
    0
}
