//! The fault proxy does what each mode promises, checked against a plain TCP echo server and
//! against a real broker with a vanilla rdkafka producer.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use spillway_test_support::{FaultMode, FaultProxy, TansuBroker};

/// An echo server on a free port, serving each connection on its own thread.
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(msg)?;
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got)?;
    Ok(got)
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

#[test]
fn pass_forwards_bytes_both_ways_and_counts_them() {
    let proxy = FaultProxy::start(echo_server()).unwrap();
    let mut s = connect(proxy.addr());
    assert_eq!(roundtrip(&mut s, b"hello").unwrap(), b"hello");
    let stats = proxy.stats();
    assert_eq!((stats.bytes_to_upstream, stats.bytes_to_client), (5, 5));
    assert_eq!(stats.connections_accepted, 1);
}

#[test]
fn blackhole_holds_bytes_until_the_partition_heals() {
    let proxy = FaultProxy::start(echo_server()).unwrap();
    let mut s = connect(proxy.addr());
    assert_eq!(roundtrip(&mut s, b"before").unwrap(), b"before");

    proxy.set_mode(FaultMode::Blackhole);
    let err = roundtrip(&mut s, b"during").unwrap_err();
    assert!(is_timeout(&err), "expected a hang, got {err}");
    // A new connection is accepted but answers nothing either.
    let mut fresh = connect(proxy.addr());
    assert!(is_timeout(&roundtrip(&mut fresh, b"new").unwrap_err()));

    proxy.set_mode(FaultMode::Pass);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut held = vec![0u8; 6];
    s.read_exact(&mut held).unwrap();
    assert_eq!(
        held, b"during",
        "bytes held during the blackhole arrive after it"
    );
}

#[test]
fn reset_closes_existing_and_new_connections() {
    let proxy = FaultProxy::start(echo_server()).unwrap();
    let mut s = connect(proxy.addr());
    assert_eq!(roundtrip(&mut s, b"x").unwrap(), b"x");
    proxy.set_mode(FaultMode::Reset);
    std::thread::sleep(Duration::from_millis(100));
    let err = roundtrip(&mut s, b"y").unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof | ErrorKind::BrokenPipe
        ),
        "expected a reset, got {err:?}"
    );
    let mut fresh = connect(proxy.addr());
    let err = roundtrip(&mut fresh, b"z").unwrap_err();
    assert!(
        !is_timeout(&err),
        "a new connection must be reset, not hang: {err:?}"
    );
    assert!(proxy.stats().connections_reset >= 2);
}

#[test]
fn refuse_makes_connects_fail_and_pass_restores_the_same_address() {
    let proxy = FaultProxy::start(echo_server()).unwrap();
    proxy.set_mode(FaultMode::Refuse);
    std::thread::sleep(Duration::from_millis(100));
    let err = TcpStream::connect(proxy.addr()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    proxy.set_mode(FaultMode::Pass);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut s = loop {
        match TcpStream::connect(proxy.addr()) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("proxy did not listen again: {e}"),
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    assert_eq!(roundtrip(&mut s, b"back").unwrap(), b"back");
}

#[test]
fn delay_forwards_every_byte_no_sooner_than_the_delay() {
    let proxy = FaultProxy::start(echo_server()).unwrap();
    proxy.set_mode(FaultMode::Delay(Duration::from_millis(200)));
    let mut s = connect(proxy.addr());
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let start = Instant::now();
    assert_eq!(roundtrip(&mut s, b"slow").unwrap(), b"slow");
    // Delayed once each way: a lower bound, not a speed measurement.
    assert!(start.elapsed() >= Duration::from_millis(400));
}

fn idempotent_producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "3000")
        .create()
        .unwrap()
}

async fn send(producer: &FutureProducer, value: &str) -> Result<(), KafkaError> {
    producer
        .send(
            FutureRecord::<(), _>::to("proxied").payload(value),
            Duration::from_secs(10),
        )
        .await
        .map(drop)
        .map_err(|(e, _)| e)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_makes_a_vanilla_producer_time_out_and_pass_lets_new_records_through() {
    let broker = TansuBroker::start_proxied().unwrap();
    broker.create_topics(&[("proxied", 1)]).unwrap();
    let proxy = broker.proxy().unwrap();
    let producer = idempotent_producer(&broker.bootstrap());
    send(&producer, "before")
        .await
        .expect("delivered through a passing proxy");

    proxy.set_mode(FaultMode::Blackhole);
    let err = send(&producer, "during")
        .await
        .expect_err("nothing gets through a blackhole");
    assert!(
        matches!(
            err,
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)
        ),
        "expected MessageTimedOut, got {err:?}"
    );
    // After a timeout librdkafka bumps the idempotent producer's epoch locally; Tansu 0.6.0
    // panics on the next batch with that epoch. The workaround: a new producer (new id).
    drop(producer);

    proxy.set_mode(FaultMode::Pass);
    let producer = idempotent_producer(&broker.bootstrap());
    send(&producer, "after")
        .await
        .expect("records flow again once the proxy passes");
    assert!(!broker.wedged(), "{}", broker.log_tail());
    assert!(proxy.stats().bytes_to_upstream > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_reports_tansus_epoch_bump_wedge_and_a_restart_clears_it() {
    let mut broker = TansuBroker::start_proxied().unwrap();
    broker.create_topics(&[("proxied", 1)]).unwrap();
    let producer = idempotent_producer(&broker.bootstrap());
    send(&producer, "before").await.unwrap();
    broker.proxy().unwrap().set_mode(FaultMode::Blackhole);
    send(&producer, "during").await.expect_err("timed out");
    broker.proxy().unwrap().set_mode(FaultMode::Pass);
    // Reusing the producer after its timeout sends a batch with a locally bumped epoch.
    for _ in 0..3 {
        if send(&producer, "after").await.is_ok() || broker.wedged() {
            break;
        }
    }
    drop(producer);
    assert!(
        broker.wedged(),
        "expected Tansu's known wedge; log:\n{}",
        broker.log_tail()
    );
    let err = broker.check_not_wedged().unwrap_err();
    assert!(err.to_string().contains("not ours"), "{err}");

    broker.restart().unwrap();
    let producer = idempotent_producer(&broker.bootstrap());
    send(&producer, "after restart")
        .await
        .expect("a restart with a fresh producer recovers");
}
