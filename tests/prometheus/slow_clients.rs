//! Slow clients (slowloris) cannot starve Prometheus: a scrape is answered at once while 50
//! connections trickle their request heads a byte every 2 s, and each of those is closed
//! once the deadline on the whole head passes (a timeout per read never fires for them).
//! Connections beyond the endpoint's bound are refused at once, not queued.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use omni_metrics::stats::RequestStatus;

use crate::support::{Harness, histogram, parse};

/// Slow clients holding connections while Prometheus scrapes.
const SLOW_CLIENTS: usize = 50;
/// A slow client sends its head a byte this often: well within a timeout per read.
const BYTE_EVERY: Duration = Duration::from_secs(2);
/// What a slow client sends, a byte at a time (it never gets to the end).
const SLOW_HEAD: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: slow\r\nAccept: */*\r\n\r\n";
/// The target for a scrape under slow clients.
const SCRAPE_TARGET: Duration = Duration::from_secs(1);
/// The endpoint's deadline on a request head is 5 s; a slow client must be closed by this
/// long after it connected (generous for a busy 2-core machine).
const CLOSED_BY: Duration = Duration::from_secs(12);

/// A slow client: its connection, when it connected, the bytes sent, when it saw the
/// connection closed.
struct Slow {
    stream: TcpStream,
    connected: Instant,
    sent: usize,
    closed: Option<Instant>,
}

impl Slow {
    fn connect(addr: SocketAddr) -> Self {
        let mut stream =
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("a connection");
        stream.write_all(&SLOW_HEAD[..1]).expect("the first byte");
        stream.set_nonblocking(true).expect("non-blocking");
        Self {
            stream,
            connected: Instant::now(),
            sent: 1,
            closed: None,
        }
    }

    /// Sends the next byte when due, and notes the connection's close (end of stream or
    /// an error: the server hung up) when it sees it.
    fn step(&mut self, now: Instant) {
        if self.closed.is_some() {
            return;
        }
        let mut buf = [0u8; 512];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return self.closed = Some(now),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return self.closed = Some(now),
            }
        }
        let due = self.connected + BYTE_EVERY * self.sent as u32;
        if now >= due && self.sent < SLOW_HEAD.len() {
            match self.stream.write(&SLOW_HEAD[self.sent..=self.sent]) {
                Ok(_) => self.sent += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => self.closed = Some(now),
            }
        }
    }
}

/// Drives the slow clients until every one is closed, or `CLOSED_BY` after the last
/// connected; returns them.
fn drive(mut slow: Vec<Slow>) -> Vec<Slow> {
    let give_up = slow
        .iter()
        .map(|s| s.connected)
        .max()
        .expect("some clients")
        + CLOSED_BY;
    while Instant::now() < give_up && slow.iter().any(|s| s.closed.is_none()) {
        let now = Instant::now();
        for client in &mut slow {
            client.step(now);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    slow
}

/// `GET /metrics` with its own deadline: the status line and body, or what went wrong.
fn scrape_within(addr: SocketAddr, deadline: Duration) -> Result<(String, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, deadline).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(deadline))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(
            b"GET /metrics HTTP/1.1\r\nHost: prometheus\r\nConnection: close\r\n\
              Accept: application/openmetrics-text\r\n\r\n",
        )
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("no whole answer within {deadline:?}: {e}"))?;
    let raw = String::from_utf8(raw).map_err(|e| e.to_string())?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no response head in {raw:?}"))?;
    let status = head.lines().next().unwrap_or_default().to_owned();
    Ok((status, body.to_owned()))
}

#[test]
fn a_scrape_is_answered_while_50_slow_clients_hold_connections() {
    let h = Harness::new();
    h.play_many(5);
    let addr = h.addr();
    let slow: Vec<Slow> = (0..SLOW_CLIENTS).map(|_| Slow::connect(addr)).collect();
    std::thread::scope(|s| {
        let driver = s.spawn(move || drive(slow));
        // Let the endpoint take every slow connection in.
        std::thread::sleep(Duration::from_millis(300));
        let started = Instant::now();
        let scraped = scrape_within(addr, Duration::from_secs(5));
        let took = started.elapsed();
        let answered = Instant::now();
        eprintln!("scrape under {SLOW_CLIENTS} slow clients: {took:?}");
        let (status, body) = scraped.unwrap_or_else(|e| {
            panic!("no scrape while {SLOW_CLIENTS} slow clients hold connections: {e}")
        });
        assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
        let parsed = parse(&body);
        let ok = h
            .requests()
            .iter()
            .filter(|r| r.status == RequestStatus::Ok)
            .count();
        assert_eq!(
            histogram(&parsed, "vllm_omni:e2e_request_latency_s", &[]).count,
            Some(ok as u64)
        );
        assert!(
            took < SCRAPE_TARGET,
            "the scrape took {took:?} under {SLOW_CLIENTS} slow clients (target {SCRAPE_TARGET:?})"
        );

        let slow = driver.join().expect("the slow clients' driver");
        for (i, client) in slow.iter().enumerate() {
            let closed = client.closed.unwrap_or_else(|| {
                panic!(
                    "slow client {i} still connected {:?} after it connected ({} bytes sent \
                     a byte every {BYTE_EVERY:?}): no deadline on the request head",
                    client.connected.elapsed(),
                    client.sent
                )
            });
            // They held their connections through the scrape, and never finished a head.
            assert!(
                closed >= answered,
                "slow client {i} closed before the scrape"
            );
            assert!(client.sent < SLOW_HEAD.len());
            let held = closed - client.connected;
            assert!(held <= CLOSED_BY, "slow client {i} held {held:?}");
        }
        let longest = slow
            .iter()
            .filter_map(|c| Some(c.closed? - c.connected))
            .max();
        eprintln!("slow clients closed after at most {longest:?}");
    });
}

/// Whether `stream` answers 503 or is closed within `within`: refused, not queued.
fn refused_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).expect("a timeout");
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 503 "),
        Err(e) => !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn connections_beyond_the_bound_are_refused_at_once_then_served_again() {
    let h = Harness::new();
    h.play_many(2);
    let addr = h.addr();
    // Idle connections (nothing sent), far more than the endpoint serves at once.
    let mut idle: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connected"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let mut scrape = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connected");
    scrape
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: prometheus\r\n\r\n")
        .expect("sent");
    assert!(
        refused_within(&mut scrape, Duration::from_secs(3)),
        "a connection beyond the bound was neither answered 503 nor closed"
    );
    eprintln!("refused beyond the bound in {:?}", started.elapsed());
    let refused = idle
        .iter_mut()
        .map(|s| refused_within(s, Duration::from_millis(20)))
        .filter(|refused| *refused)
        .count();
    eprintln!("{refused} of 100 idle connections refused at once");
    assert!(
        (1..100).contains(&refused),
        "{refused} of 100 idle connections refused at once"
    );
    // The idle ones are closed by the head deadline; the endpoint serves again.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match scrape_within(addr, Duration::from_secs(5)) {
            Ok((status, _)) if status == "HTTP/1.1 200 OK" => break,
            other if Instant::now() >= deadline => panic!("not serving again: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    drop(idle);
}
