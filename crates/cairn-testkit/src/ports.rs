//! Free loopback ports, found by asking the OS.
//!
//! A port found free can be taken by another process before the server binds it; the
//! window is short and the tests that need fixed ports (`--bootstrap-expect`, the demo)
//! accept that risk. Everything else starts nodes on port 0 and reads the bound addresses
//! back from `node.json`.

use std::net::{Ipv4Addr, TcpListener};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

/// A TCP port on 127.0.0.1 that was free a moment ago: bound with port 0, read, released.
///
/// Returns an error when 127.0.0.1 cannot be bound at all.
pub fn free_port() -> Result<u16> {
    let ports = free_ports(1)?;
    ports.first().copied().context("the OS gave no port")
}

/// `count` distinct TCP ports on 127.0.0.1 that were free a moment ago. All are bound at
/// the same time before being released, so they differ from each other.
///
/// Returns an error when 127.0.0.1 cannot be bound.
pub fn free_ports(count: usize) -> Result<Vec<u16>> {
    Ok(cairn_launch::free_ports(count)?)
}

/// The first port `p` of a range `p..p + count` of consecutive TCP ports on 127.0.0.1
/// that were all free a moment ago (each could be bound).
///
/// Probes ports 20000-31999, below Linux's ephemeral range (32768-60999), so that ports
/// the OS hands out for port 0 to other tests rarely land in the range. Gives up with an
/// error after 500 candidate ranges.
pub fn free_port_range(count: u16) -> Result<u16> {
    const LOW: u32 = 20_000;
    const HIGH: u32 = 32_000;
    const ATTEMPTS: u32 = 500;
    let count32 = u32::from(count);
    if count == 0 || count32 >= HIGH - LOW {
        bail!("cannot look for a range of {count} ports");
    }
    let span = HIGH - LOW - count32;
    // Start from a process- and time-derived place so that test binaries running at the
    // same time probe different ranges.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let seed = std::process::id().wrapping_mul(7919) ^ nanos;
    for attempt in 0..ATTEMPTS {
        let offset = seed.wrapping_add(attempt.wrapping_mul(count32 + 13)) % span;
        let base = u16::try_from(LOW + offset).context("port out of range")?;
        let all_free =
            (0..count).all(|k| TcpListener::bind((Ipv4Addr::LOCALHOST, base + k)).is_ok());
        if all_free {
            return Ok(base);
        }
    }
    bail!("found no {count} consecutive free ports in {LOW}..{HIGH} after {ATTEMPTS} tries")
}
