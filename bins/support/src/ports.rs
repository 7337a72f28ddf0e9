//! Free TCP ports for a server that the caller starts and that binds a moment later (a
//! child process, QEMU's port forwarding, a member started later in a test).
//!
//! Binding port 0 and closing it hands out a port of the kernel's ephemeral range, which the
//! kernel may give to an outgoing connection before the server binds it ("Address already in
//! use"). These ports come from below that range instead, where only explicit binds go;
//! each process starts at its own offset and hands out each port once.

use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};

/// The first port handed out: above the well-known and most registered services' ports.
const FIRST: u16 = 10_000;

/// Where the kernel's ephemeral range starts when it cannot be read (Linux's default).
const EPHEMERAL_DEFAULT: u16 = 32_768;

/// A TCP port on 127.0.0.1 that nothing is bound to now and that this process has not
/// handed out before.
pub fn free_loopback_port() -> io::Result<u16> {
    static HANDED_OUT: AtomicU32 = AtomicU32::new(0);
    let span = u32::from(ephemeral_start().saturating_sub(FIRST));
    if span == 0 {
        // No room below the ephemeral range: let the kernel choose.
        return Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port());
    }
    let offset = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let next = HANDED_OUT.fetch_add(1, Ordering::Relaxed);
        let candidate = FIRST + port_offset(offset.wrapping_add(next) % span);
        if TcpListener::bind((Ipv4Addr::LOCALHOST, candidate)).is_ok() {
            return Ok(candidate);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("every port from {FIRST} up to the ephemeral range is in use"),
    ))
}

/// `offset`, which is below a span of `u16` ports.
fn port_offset(offset: u32) -> u16 {
    u16::try_from(offset).unwrap_or(0)
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(EPHEMERAL_DEFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_below_the_ephemeral_range_and_never_handed_out_twice() {
        let ports: Vec<u16> = (0..50).map(|_| free_loopback_port().unwrap()).collect();
        for port in &ports {
            assert!(*port >= FIRST && *port < ephemeral_start(), "{port}");
            TcpListener::bind((Ipv4Addr::LOCALHOST, *port)).unwrap();
        }
        let mut distinct = ports.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), ports.len());
    }

    #[test]
    fn ports_something_else_holds_are_skipped() {
        let before = free_loopback_port().unwrap();
        // The ports that would come next, unless another test took them first.
        let held: Vec<TcpListener> = (1..=5)
            .filter_map(|step| TcpListener::bind((Ipv4Addr::LOCALHOST, before + step)).ok())
            .collect();
        let held_ports: Vec<u16> = held
            .iter()
            .map(|listener| listener.local_addr().unwrap().port())
            .collect();

        let next = free_loopback_port().unwrap();

        assert!(!held_ports.contains(&next), "{next} is held");
        TcpListener::bind((Ipv4Addr::LOCALHOST, next)).unwrap();
    }
}
