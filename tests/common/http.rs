//! A small HTTP/1.0 server on loopback for load tests and examples: one
//! thread per connection, `200 ok` to every request, and a client to call it.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

#[path = "loopback.rs"]
mod loopback;

/// Starts the server on a free loopback port, in background threads that
/// live as long as the process; returns the port.
pub fn serve() -> u16 {
    let listener = loopback::listen();
    let port = listener.local_addr().unwrap().port();
    std::thread::Builder::new()
        .name("http-accept".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || answer(stream));
            }
        })
        .unwrap();
    port
}

/// Answers every request on one connection until the client closes it.
fn answer(stream: TcpStream) {
    let mut reader = BufReader::new(&stream);
    loop {
        let mut line = String::new();
        // The request line, then headers up to an empty line.
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        while line != "\r\n" && !line.is_empty() {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
        }
        let reply = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok";
        if (&stream).write_all(reply).is_err() {
            return;
        }
    }
}

/// Sends one `GET /` on `stream` and returns the status code.
pub fn get(stream: &mut TcpStream) -> u16 {
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .expect("sending the request");
    let mut head = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        let n = stream.read(&mut head[got..]).expect("reading the answer");
        assert!(n > 0, "the server closed the connection");
        got += n;
    }
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
