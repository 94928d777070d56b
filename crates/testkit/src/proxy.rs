//! A loopback TCP proxy that can misbehave on command, for faults a
//! killed process cannot produce: a request that reaches the server while
//! its answer never comes back (the client cannot know whether its write
//! was applied), or a silent network partition.
//!
//! Modes: [`ProxyMode::Forward`] passes bytes both ways;
//! [`ProxyMode::SwallowResponses`] passes requests on but drops what the
//! server sends back; [`ProxyMode::Blackhole`] drops both directions while
//! keeping connections open. [`TcpProxy::reset_connections`] cuts every
//! open connection (the client sees a reset and reconnects).
//!
//! Plain threads and blocking sockets: two pump threads per connection,
//! each waking every [`POLL`] to notice a mode change, a reset or the
//! proxy's end. Dropping the proxy stops and joins every thread.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

const POLL: Duration = Duration::from_millis(20);

/// What the proxy does with the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyMode {
    Forward,
    SwallowResponses,
    Blackhole,
}

impl ProxyMode {
    fn from_u8(value: u8) -> ProxyMode {
        match value {
            1 => ProxyMode::SwallowResponses,
            2 => ProxyMode::Blackhole,
            _ => ProxyMode::Forward,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            ProxyMode::Forward => 0,
            ProxyMode::SwallowResponses => 1,
            ProxyMode::Blackhole => 2,
        }
    }
}

struct Shared {
    target: SocketAddr,
    mode: AtomicU8,
    stop: AtomicBool,
    /// Both sockets of every open connection, for resets.
    sockets: Mutex<Vec<TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// A proxy from a loopback port to `target`; see the module comment.
pub struct TcpProxy {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub fn start(target: SocketAddr) -> Result<TcpProxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding the proxy")?;
        listener
            .set_nonblocking(true)
            .context("making the proxy listener non-blocking")?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            target,
            mode: AtomicU8::new(ProxyMode::Forward.as_u8()),
            stop: AtomicBool::new(false),
            sockets: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("tortie-proxy".to_owned())
                .spawn(move || accept_loop(&listener, &shared))
                .context("starting the proxy thread")?
        };
        Ok(TcpProxy {
            port,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The proxy's loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set_mode(&self, mode: ProxyMode) {
        self.shared.mode.store(mode.as_u8(), Ordering::SeqCst);
    }

    pub fn mode(&self) -> ProxyMode {
        ProxyMode::from_u8(self.shared.mode.load(Ordering::SeqCst))
    }

    /// Cuts every open connection.
    pub fn reset_connections(&self) {
        let sockets = std::mem::take(
            &mut *self
                .shared
                .sockets
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for socket in sockets {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.reset_connections();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let threads = std::mem::take(
            &mut *self
                .shared
                .threads
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for thread in threads {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                if let Err(err) = connect(client, shared) {
                    eprintln!("tortie-testkit proxy: {err:#}");
                }
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(err) => {
                eprintln!("tortie-testkit proxy: accept failed: {err}");
                std::thread::sleep(POLL);
            }
        }
    }
}

fn connect(client: TcpStream, shared: &Arc<Shared>) -> Result<()> {
    client.set_nonblocking(false)?;
    let server = TcpStream::connect_timeout(&shared.target, Duration::from_secs(2))
        .with_context(|| format!("connecting to {}", shared.target))?;
    for socket in [&client, &server] {
        socket.set_read_timeout(Some(POLL))?;
        socket.set_nodelay(true)?;
    }
    {
        let mut sockets = shared
            .sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        sockets.push(client.try_clone()?);
        sockets.push(server.try_clone()?);
    }
    let pumps = [
        (client.try_clone()?, server.try_clone()?, false),
        (server, client, true),
    ];
    let mut threads = shared
        .threads
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    for (from, to, responses) in pumps {
        let shared = Arc::clone(shared);
        threads.push(
            std::thread::Builder::new()
                .name("tortie-proxy-pump".to_owned())
                .spawn(move || pump(from, to, responses, &shared))?,
        );
    }
    Ok(())
}

/// Copies `from` to `to` until either side closes, honouring the mode.
fn pump(mut from: TcpStream, mut to: TcpStream, responses: bool, shared: &Shared) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let read = match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                continue;
            }
            Err(_) => break,
        };
        let drop_it = match ProxyMode::from_u8(shared.mode.load(Ordering::SeqCst)) {
            ProxyMode::Forward => false,
            ProxyMode::SwallowResponses => responses,
            ProxyMode::Blackhole => true,
        };
        if !drop_it && to.write_all(&buffer[..read]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on a loopback port, for one connection.
    fn echo_server() -> Result<(SocketAddr, JoinHandle<()>)> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let address = listener.local_addr()?;
        let thread = std::thread::spawn(move || {
            if let Ok((mut socket, _)) = listener.accept() {
                let mut buffer = [0u8; 1024];
                while let Ok(read) = socket.read(&mut buffer) {
                    if read == 0 || socket.write_all(&buffer[..read]).is_err() {
                        break;
                    }
                }
            }
        });
        Ok((address, thread))
    }

    #[test]
    fn forwards_swallows_and_resets() -> Result<()> {
        let (address, server) = echo_server()?;
        let proxy = TcpProxy::start(address)?;
        let mut client = TcpStream::connect((Ipv4Addr::LOCALHOST, proxy.port()))?;
        client.set_read_timeout(Some(Duration::from_millis(300)))?;
        let mut buffer = [0u8; 5];

        client.write_all(b"hello")?;
        client.read_exact(&mut buffer)?;
        assert_eq!(&buffer, b"hello");

        proxy.set_mode(ProxyMode::SwallowResponses);
        client.write_all(b"lost!")?;
        assert!(
            client.read_exact(&mut buffer).is_err(),
            "the echo came back"
        );

        proxy.set_mode(ProxyMode::Forward);
        proxy.reset_connections();
        // The connection is gone: end of stream or a reset, not a timeout.
        match client.read(&mut buffer) {
            Ok(0) => {}
            Ok(read) => panic!("read {read} bytes after the reset"),
            Err(err) => assert!(
                !matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                "{err}"
            ),
        }
        drop(proxy);
        server
            .join()
            .map_err(|_| anyhow::anyhow!("echo thread panicked"))?;
        Ok(())
    }
}
