//! Free loopback ports for servers a test starts as child processes, which
//! cannot be handed an already bound listener.

use std::net::TcpListener;

/// A loopback port nothing listens on right now. The port is released
/// before it is returned, so another process could in principle take it
/// first; on a test machine that race is rare enough to accept.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("a bound listener has an address").port()
}
