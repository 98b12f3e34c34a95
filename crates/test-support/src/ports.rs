use std::net::{SocketAddr, TcpListener};

/// A loopback port that was free a moment ago (bound to port 0, then released). Another process
/// may take it in between; callers that can bind directly should prefer doing so.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral loopback port")
}

/// A loopback address on which nothing listens: connecting to it is refused at once.
pub fn dead_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}
