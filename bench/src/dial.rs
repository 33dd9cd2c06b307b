//! Opening TCP connections without blocking, optionally from one of many local addresses.
//!
//! One host holding a million connections to one gateway address runs out of ephemeral ports
//! (about 28k per source address with the default range). Binding each socket to one of many
//! loopback or interface addresses multiplies that; with `IP_BIND_ADDRESS_NO_PORT` the kernel
//! picks the port at `connect`, knowing the destination, so a source port is only unique per
//! 4-tuple rather than per source address.

use std::io;
use std::net::{IpAddr, SocketAddr};

use mio::net::TcpStream;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Starts a connect to `target`, from `source` (any port) when given. The stream is connected
/// once it turns writable ([`connected`] says how it went).
pub fn start(target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(ip) = source {
        bind_address_no_port(&socket);
        socket.bind(&SockAddr::from(SocketAddr::new(ip, 0)))?;
    }
    match socket.connect(&SockAddr::from(target)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// Best effort: kernels before 4.2 lack the option, and binding still works without it.
fn bind_address_no_port(socket: &Socket) {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::socket::{setsockopt, sockopt::IpBindAddressNoPort};
        if let Err(e) = setsockopt(socket, IpBindAddressNoPort, &true) {
            log::debug!("IP_BIND_ADDRESS_NO_PORT unavailable: {e}");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = socket;
}

/// How a connect in progress stands, asked on a writable (or error) event.
#[derive(Debug)]
pub enum Connect {
    Done,
    /// A spurious wake-up: still connecting.
    Pending,
    Failed(io::Error),
}

pub fn connected(stream: &TcpStream) -> Connect {
    match stream.take_error() {
        Ok(Some(e)) | Err(e) => return Connect::Failed(e),
        Ok(None) => {}
    }
    match stream.peer_addr() {
        Ok(_) => Connect::Done,
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Connect::Pending,
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Connect::Pending,
        Err(e) => Connect::Failed(e),
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::Duration;

    use mio::{Events, Interest, Poll, Token};

    use super::*;

    fn wait_connected(stream: &mut TcpStream) -> Connect {
        let mut poll = Poll::new().unwrap();
        poll.registry()
            .register(stream, Token(0), Interest::WRITABLE)
            .unwrap();
        let mut events = Events::with_capacity(4);
        for _ in 0..100 {
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            match connected(stream) {
                Connect::Pending => continue,
                done => return done,
            }
        }
        panic!("no connect outcome within 10 s");
    }

    #[test]
    fn connects_from_a_chosen_source_address() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let source: IpAddr = "127.0.0.7".parse().unwrap();
        let mut stream = start(target, Some(source)).unwrap();
        assert!(matches!(wait_connected(&mut stream), Connect::Done));
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), source);
    }

    #[test]
    fn a_refused_connect_is_reported() {
        let target = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        }; // closed again: nothing listens there
        match start(target, None) {
            Err(_) => {}
            Ok(mut stream) => assert!(matches!(wait_connected(&mut stream), Connect::Failed(_))),
        }
    }
}
