//! Reachability probes: from this host, to each broker the metadata lists.
//!
//! A broker that the rest of the cluster sees but we cannot reach is the KAFKA-3686 case:
//! the metadata keeps naming it leader, and librdkafka keeps sending it records until they time
//! out. So a successful metadata fetch proves nothing about each broker; each one is probed on
//! its own:
//! 1. a TCP connect, timed, with a timeout (refused, reset and silent are all failures);
//! 2. a Kafka round trip on that connection. On plaintext listeners (`security.protocol`
//!    `plaintext` or `sasl_plaintext`) we send ApiVersions v0 ourselves (see `wire`): brokers
//!    answer it before authentication, and it tells us which APIs the broker offers. On TLS
//!    listeners we cannot speak the protocol ourselves, so librdkafka fetches metadata through
//!    that broker alone, with the operator's security properties.
//!
//! Brokers are probed in parallel, one thread each, so the doctor's run time is one timeout, not
//! one per broker.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::facts::{Broker, BrokerProbe, Controller, RoundTrip, TcpOutcome};
use super::wire::{self, ApiVersions};

/// Bytes a response may have before we call it garbage (an ApiVersions response is about 1 KiB).
const MAX_RESPONSE: usize = 1 << 20;

/// How the probes reach brokers.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    pub timeout: Duration,
    /// Whether our own plaintext requests can be understood by the listener.
    pub plaintext: bool,
    /// Connection properties (security, SASL, TLS) for librdkafka's round trip on TLS listeners.
    pub connection_properties: Vec<(String, String)>,
}

/// Probes every broker, in parallel; results in the order of `brokers`.
pub fn probe_all(brokers: &[Broker], settings: &ProbeSettings) -> Vec<BrokerProbe> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = brokers
            .iter()
            .map(|b| scope.spawn(move || probe(b, settings)))
            .collect();
        handles
            .into_iter()
            .zip(brokers)
            .map(|(h, b)| {
                h.join().unwrap_or_else(|_| BrokerProbe {
                    broker: b.clone(),
                    tcp: TcpOutcome::Failed {
                        error: "probe thread panicked".into(),
                    },
                    round_trip: RoundTrip::Skipped {
                        reason: "probe thread panicked".into(),
                    },
                })
            })
            .collect()
    })
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn resolve(broker: &Broker) -> Result<SocketAddr, String> {
    (broker.host.as_str(), broker.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", broker.host))?
        .next()
        .ok_or_else(|| format!("{} resolves to no address", broker.host))
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

/// Probes one broker: TCP connect, then a Kafka round trip.
pub fn probe(broker: &Broker, settings: &ProbeSettings) -> BrokerProbe {
    let skipped = |reason: &str| RoundTrip::Skipped {
        reason: reason.into(),
    };
    let addr = match resolve(broker) {
        Ok(a) => a,
        Err(error) => {
            return BrokerProbe {
                broker: broker.clone(),
                tcp: TcpOutcome::Failed { error },
                round_trip: skipped("no address"),
            };
        }
    };
    let started = Instant::now();
    let stream = match TcpStream::connect_timeout(&addr, settings.timeout) {
        Ok(s) => s,
        Err(e) => {
            let tcp = if is_timeout(&e) {
                TcpOutcome::TimedOut {
                    after_millis: settings.timeout.as_millis() as u64,
                }
            } else {
                TcpOutcome::Failed {
                    error: e.to_string(),
                }
            };
            return BrokerProbe {
                broker: broker.clone(),
                tcp,
                round_trip: skipped("TCP connect failed"),
            };
        }
    };
    let tcp = TcpOutcome::Connected {
        millis: millis(started.elapsed()),
    };
    let round_trip = if settings.plaintext {
        api_versions_round_trip(stream, settings.timeout)
    } else {
        drop(stream);
        librdkafka_round_trip(broker, settings)
    };
    BrokerProbe {
        broker: broker.clone(),
        tcp,
        round_trip,
    }
}

fn api_versions_round_trip(mut stream: TcpStream, timeout: Duration) -> RoundTrip {
    let started = Instant::now();
    match exchange(&mut stream, wire::API_VERSIONS, 0, &[], 1, timeout) {
        Ok(body) => match wire::decode_api_versions(&body, 1) {
            Ok(versions) => RoundTrip::ApiVersions {
                millis: millis(started.elapsed()),
                api_count: versions.apis.len(),
                describe_configs: versions.supports(wire::DESCRIBE_CONFIGS),
            },
            Err(e) => RoundTrip::Failed {
                error: format!("undecodable ApiVersions response: {e}"),
            },
        },
        Err(e) if is_timeout(&e) => RoundTrip::TimedOut {
            after_millis: timeout.as_millis() as u64,
        },
        Err(e) => RoundTrip::Failed {
            error: e.to_string(),
        },
    }
}

fn librdkafka_round_trip(broker: &Broker, settings: &ProbeSettings) -> RoundTrip {
    let mut config = ClientConfig::new();
    for (k, v) in &settings.connection_properties {
        config.set(k, v);
    }
    config.set("bootstrap.servers", broker.address());
    let consumer: BaseConsumer = match config.create() {
        Ok(c) => c,
        Err(e) => {
            return RoundTrip::Failed {
                error: e.to_string(),
            };
        }
    };
    let started = Instant::now();
    match consumer.fetch_metadata(None, settings.timeout) {
        Ok(_) => RoundTrip::Metadata {
            millis: millis(started.elapsed()),
        },
        Err(_) if started.elapsed() >= settings.timeout => RoundTrip::TimedOut {
            after_millis: settings.timeout.as_millis() as u64,
        },
        Err(e) => RoundTrip::Failed {
            error: e.to_string(),
        },
    }
}

/// Sends one request and reads its response body (after the size prefix).
fn exchange(
    stream: &mut TcpStream,
    api_key: i16,
    version: i16,
    body: &[u8],
    correlation_id: i32,
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(&wire::request(api_key, version, correlation_id, body))?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let size = i32::from_be_bytes(size);
    if size < 4 || size as usize > MAX_RESPONSE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("implausible response size {size}: not a Kafka broker?"),
        ));
    }
    let mut body = vec![0u8; size as usize];
    stream.read_exact(&mut body)?;
    Ok(body)
}

/// Asks brokers (in order, first answer wins) for the controller id and cluster id with a
/// Metadata request of no topics. Only possible on plaintext listeners without SASL.
pub fn controller(
    brokers: &[Broker],
    settings: &ProbeSettings,
    sasl: bool,
) -> (Controller, Option<String>) {
    let unknown = |reason: String| (Controller::Unknown { reason }, None);
    if !settings.plaintext || sasl {
        return unknown(
            "the controller is learned with our own plaintext Metadata request, which this listener's security (TLS or SASL) does not allow; librdkafka does not expose it".into(),
        );
    }
    let mut last_error = String::from("no broker listed");
    for broker in brokers {
        match ask_controller(broker, settings.timeout) {
            Ok(info) => {
                return (
                    Controller::Reported {
                        id: info.controller_id,
                    },
                    info.cluster_id,
                );
            }
            Err(e) => last_error = format!("{}: {e}", broker.label()),
        }
    }
    unknown(format!(
        "no broker answered a Metadata request ({last_error})"
    ))
}

fn ask_controller(broker: &Broker, timeout: Duration) -> Result<wire::ClusterInfo, String> {
    let addr = resolve(broker)?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    let body = exchange(&mut stream, wire::API_VERSIONS, 0, &[], 1, timeout)
        .map_err(|e| format!("ApiVersions: {e}"))?;
    let versions: ApiVersions = wire::decode_api_versions(&body, 1).map_err(|e| e.to_string())?;
    let version = versions
        .best_version(wire::METADATA, 1, wire::METADATA_MAX_VERSION)
        .ok_or("the broker speaks no Metadata version between 1 and 8")?;
    let body = exchange(
        &mut stream,
        wire::METADATA,
        version,
        &wire::metadata_body(version),
        2,
        timeout,
    )
    .map_err(|e| format!("Metadata v{version}: {e}"))?;
    wire::decode_metadata(&body, version, 2).map_err(|e| format!("Metadata v{version}: {e}"))
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    fn settings() -> ProbeSettings {
        ProbeSettings {
            timeout: Duration::from_millis(300),
            plaintext: true,
            connection_properties: Vec::new(),
        }
    }

    fn broker_at(listener: &TcpListener) -> Broker {
        Broker {
            id: 1,
            host: "127.0.0.1".into(),
            port: listener.local_addr().unwrap().port(),
        }
    }

    #[test]
    fn a_listener_that_accepts_but_never_answers_times_out_the_round_trip() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let probe = probe(&broker_at(&listener), &settings());
        assert!(
            matches!(probe.tcp, TcpOutcome::Connected { .. }),
            "{probe:?}"
        );
        assert_eq!(probe.round_trip, RoundTrip::TimedOut { after_millis: 300 });
    }

    #[test]
    fn a_closed_port_fails_the_tcp_connect_and_skips_the_round_trip() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let broker = broker_at(&listener);
        drop(listener);
        let probe = probe(&broker, &settings());
        assert!(matches!(probe.tcp, TcpOutcome::Failed { .. }), "{probe:?}");
        assert!(matches!(probe.round_trip, RoundTrip::Skipped { .. }));
    }

    #[test]
    fn a_listener_that_answers_garbage_is_a_failed_round_trip_not_a_hang() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let broker = broker_at(&listener);
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf);
            s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").unwrap();
        });
        let probe = probe(&broker, &settings());
        server.join().unwrap();
        assert!(
            matches!(&probe.round_trip, RoundTrip::Failed { error } if error.contains("implausible")),
            "{probe:?}"
        );
    }
}

/// The round trip through librdkafka, used on TLS listeners, exercised here on plaintext.
#[cfg(test)]
mod librdkafka_tests {
    use spillway_test_support::MockKafka;

    use super::*;

    fn through_librdkafka() -> ProbeSettings {
        ProbeSettings {
            timeout: Duration::from_secs(2),
            plaintext: false,
            connection_properties: Vec::new(),
        }
    }

    fn first_broker(kafka: &MockKafka) -> Broker {
        let addr: SocketAddr = kafka
            .bootstrap()
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        Broker {
            id: 1,
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }

    #[test]
    fn without_our_plaintext_probe_a_broker_is_checked_with_a_librdkafka_metadata_request() {
        let kafka = MockKafka::new(3).unwrap();
        let probe = probe(&first_broker(&kafka), &through_librdkafka());
        assert!(
            matches!(probe.tcp, TcpOutcome::Connected { .. }),
            "{probe:?}"
        );
        assert!(
            matches!(probe.round_trip, RoundTrip::Metadata { .. }),
            "{probe:?}"
        );
    }

    #[test]
    fn a_silent_broker_fails_the_librdkafka_round_trip_within_the_timeout() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let broker = Broker {
            id: 1,
            host: "127.0.0.1".into(),
            port: silent.local_addr().unwrap().port(),
        };
        let started = Instant::now();
        let probe = probe(&broker, &through_librdkafka());
        assert!(
            matches!(
                probe.round_trip,
                RoundTrip::TimedOut { .. } | RoundTrip::Failed { .. }
            ),
            "{probe:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
}
