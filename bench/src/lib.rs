//! synack's benchmarks: `benches/core.rs` measures the sans-IO TCP core with criterion; the
//! system benchmark over veth arrives with the AF_XDP data path.
