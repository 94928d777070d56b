//! Free loopback ports for etcd members.
//!
//! Hard case: a port found free can be taken before etcd binds it. Asking
//! the kernel for port 0 hands out ports from the ephemeral range, which
//! is exactly where every outgoing connection (etcd's own peer and client
//! connections included) picks its local port, so the window is real.
//! Ports are therefore drawn at random from 20000-32767, below the default
//! ephemeral range (32768-60999); a draw is kept only if it can be bound
//! right now and no cluster of this process holds it. A start that still
//! loses the race fails with "address already in use" and is retried with
//! new ports by the caller.

use std::collections::HashSet;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, PoisonError};

use anyhow::{Result, bail};

const LOW: u16 = 20_000;
const HIGH: u16 = 32_767;

/// Ports handed out to live clusters of this process.
static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// `count` distinct free ports, reserved until [`release`]d.
pub(crate) fn reserve(count: usize) -> Result<Vec<u16>> {
    let mut taken = TAKEN.lock().unwrap_or_else(PoisonError::into_inner);
    let taken = taken.get_or_insert_with(HashSet::new);
    let random = RandomState::new();
    let mut ports = Vec::with_capacity(count);
    let span = u64::from(HIGH - LOW) + 1;
    for draw in 0u64..20_000 {
        if ports.len() == count {
            break;
        }
        let mut hasher = random.build_hasher();
        hasher.write_u64(draw);
        let offset = u16::try_from(hasher.finish() % span).unwrap_or(0);
        let port = LOW + offset;
        if taken.contains(&port) || ports.contains(&port) {
            continue;
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            ports.push(port);
        }
    }
    if ports.len() < count {
        bail!(
            "found only {} free loopback ports in {LOW}-{HIGH}, needed {count}",
            ports.len()
        );
    }
    taken.extend(ports.iter().copied());
    Ok(ports)
}

/// Returns ports to the pool.
pub(crate) fn release(ports: &[u16]) {
    let mut taken = TAKEN.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(taken) = taken.as_mut() {
        for port in ports {
            taken.remove(port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ports_are_distinct_and_outside_the_ephemeral_range() -> Result<()> {
        let first = reserve(9)?;
        let second = reserve(9)?;
        let all: HashSet<u16> = first.iter().chain(&second).copied().collect();
        assert_eq!(all.len(), 18);
        assert!(all.iter().all(|port| (LOW..=HIGH).contains(port)));
        release(&first);
        release(&second);
        Ok(())
    }
}
