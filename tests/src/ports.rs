//! Ports for tests: shared by this crate and, by path, the collector's `config_numbers` test.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// A port free right now on 127.0.0.1, not handed out before in this process. It comes from
/// below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`), which is where the
/// kernel picks the local port of every outgoing connection: one of those, made by any test's
/// client or collector, could otherwise take the port between this probe and the bind.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;
    let high = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768u32)
        .clamp(LOW + 1_000, 65_535);
    let span = high - LOW;
    // Test processes started side by side begin at different places.
    let offset = std::process::id().wrapping_mul(7_919) % span;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < span, "every port below the ephemeral range was handed out");
        let port = u16::try_from(LOW + (offset + n) % span).expect("below 65536");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
