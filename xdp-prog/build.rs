//! Compiles `src/bpf/steer.bpf.c` with clang and generates its libbpf-rs
//! skeleton into `OUT_DIR/steer.skel.rs`.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SOURCE: &str = "src/bpf/steer.bpf.c";

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let built = SkeletonBuilder::new()
        .source(SOURCE)
        // Debian keeps `asm/` under the multiarch directory, which clang's BPF
        // target does not search by itself (linux/bpf.h includes asm/types.h).
        .clang_args(["-I/usr/include/x86_64-linux-gnu", "-Wall", "-Werror"])
        .build_and_generate(out_dir.join("steer.skel.rs"));
    if let Err(err) = built {
        // A panic would add a backtrace of the build script; clang's message
        // is what matters.
        eprintln!("building the XDP program {SOURCE} failed: {err:#}");
        std::process::exit(1);
    }
    println!("cargo:rerun-if-changed={SOURCE}");
}
