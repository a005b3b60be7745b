//! A listener on a free loopback port whose accept queue holds a thousand
//! clients connecting at once. With std's default of 128 they overflow it on
//! a loaded machine: the kernel drops their handshakes' last step, the
//! clients believe they are connected, and their requests go nowhere.

use std::net::{SocketAddr, TcpListener};

/// The accept queue's length (the kernel caps it at `net.core.somaxconn`).
pub const BACKLOG: i32 = 4096;

/// A listener on `127.0.0.1`, on a port the system picks.
pub fn listen() -> TcpListener {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("creating a socket");
    let address: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket
        .bind(&address.into())
        .expect("binding a loopback port");
    socket.listen(BACKLOG).expect("listening");
    socket.into()
}
