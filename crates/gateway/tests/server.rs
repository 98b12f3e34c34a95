//! The gateway on real listeners: slow clients are cut off, shutdown drains in-flight requests
//! and calls the engine's shutdown, metrics are on their own listener, TLS and mTLS.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use spillway_gateway::{Config, Server};
use support::ScriptedEngine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

fn local_config() -> Config {
    let mut c = Config::default();
    c.http.listen = "127.0.0.1:0".parse().unwrap();
    c.http.metrics_listen = "127.0.0.1:0".parse().unwrap();
    c.timeouts.header_read = Duration::from_millis(500);
    c.timeouts.body_read = Duration::from_millis(500);
    c.timeouts.drain = Duration::from_secs(5);
    c.timeouts.shutdown = Duration::from_secs(8);
    c
}

struct Running {
    api: SocketAddr,
    metrics: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start(config: Config, engine: &Arc<ScriptedEngine>) -> Self {
        let server = Server::bind(config, engine.clone()).await.expect("bind");
        let (api, metrics) = (server.api_addr(), server.metrics_addr());
        let (tx, rx) = oneshot::channel::<()>();
        let done = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        Self {
            api,
            metrics,
            stop: Some(tx),
            done,
        }
    }

    async fn stop(mut self) -> Duration {
        let started = Instant::now();
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.done)
            .await
            .expect("server stops within its deadline")
            .unwrap();
        started.elapsed()
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, request: &[u8]) -> String {
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

async fn http(addr: SocketAddr, request: &str) -> String {
    exchange(TcpStream::connect(addr).await.unwrap(), request.as_bytes()).await
}

const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

#[tokio::test]
async fn a_client_sending_headers_too_slowly_is_cut_off_while_others_are_served() {
    let engine = ScriptedEngine::new();
    let server = Running::start(local_config(), &engine).await;
    let mut slow = TcpStream::connect(server.api).await.unwrap();
    let head =
        b"POST /v1/topics/orders/records HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
    let started = Instant::now();
    let mut sent = 0;
    let cut_off = loop {
        if started.elapsed() > Duration::from_secs(5) {
            break false;
        }
        if sent < head.len() && slow.write_all(&head[sent..sent + 1]).await.is_err() {
            break true;
        }
        sent += 1;
        // Meanwhile a normal client is served at once.
        if sent == 3 {
            assert!(http(server.api, HEALTHZ).await.starts_with("HTTP/1.1 200"));
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(100), slow.read(&mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => break true, // EOF, an error, or a 408 answer: cut off
            Err(_) => {}                          // still open
        }
    };
    assert!(cut_off, "the slow client was never cut off");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cut off after {:?}",
        started.elapsed()
    );
    assert!(sent < head.len(), "the slow client got its whole head in");
    assert!(http(server.api, HEALTHZ).await.starts_with("HTTP/1.1 200"));
    assert_eq!(engine.sent_count(), 0);
    server.stop().await;
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let engine = ScriptedEngine::new();
    let server = Running::start(local_config(), &engine).await;
    let mut idle = TcpStream::connect(server.api).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(3), idle.read(&mut buf)).await;
    assert!(read.is_ok(), "an idle connection stayed open for 3 s");
    assert!(started.elapsed() >= Duration::from_millis(400));
    server.stop().await;
}

#[tokio::test]
async fn a_body_that_stalls_gets_408_and_writes_nothing() {
    let engine = ScriptedEngine::new();
    let server = Running::start(local_config(), &engine).await;
    let mut stream = TcpStream::connect(server.api).await.unwrap();
    let head = "POST /v1/topics/orders/records HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"records\":";
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut out = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut out))
        .await
        .expect("answered")
        .unwrap();
    let text = String::from_utf8_lossy(&out[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert_eq!(engine.sent_count(), 0);
    server.stop().await;
}

#[tokio::test]
async fn metrics_are_served_on_their_own_listener_only() {
    let engine = ScriptedEngine::new();
    let server = Running::start(local_config(), &engine).await;
    let on_metrics = http(
        server.metrics,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        on_metrics.starts_with("HTTP/1.1 200") && on_metrics.contains("spillway_http_requests"),
        "{on_metrics}"
    );
    let on_api = http(
        server.api,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(on_api.starts_with("HTTP/1.1 404"), "{on_api}");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_stops_accepting_finishes_in_flight_requests_then_shuts_the_engine_down() {
    let engine = ScriptedEngine::new();
    let release = engine.hold_sends();
    let server = Running::start(local_config(), &engine).await;
    let api = server.api;
    let body = r#"{"records":[{"value":1}]}"#;
    let in_flight = tokio::spawn(http(api, Box::leak(format!(
        "POST /v1/topics/orders/records HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ).into_boxed_str())));
    while engine.sent_count() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stopping = tokio::spawn(server.stop());
    // New connections are refused once the listener is closed.
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(api).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "still accepting after shutdown began");
    assert!(
        engine.shutdowns.lock().is_empty(),
        "engine shut down before the drain"
    );
    release.add_permits(1);
    let answer = in_flight.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let took = stopping.await.unwrap();
    assert!(took < Duration::from_secs(8));
    let shutdowns = engine.shutdowns.lock().clone();
    assert_eq!(shutdowns.len(), 1);
    assert!(shutdowns[0] <= Duration::from_secs(8));
}

/// Reads from `stream` until the text read so far holds `needle` `times` times.
async fn read_until(stream: &mut TcpStream, seen: &mut String, needle: &str, times: usize) {
    let mut buf = [0u8; 4096];
    while seen.matches(needle).count() < times {
        let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("waiting for {needle:?} x{times} in {seen:?}"))
            .unwrap();
        assert!(n > 0, "closed early: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

#[tokio::test]
async fn v3_streaming_reports_arrive_while_the_request_is_open_and_shutdown_ends_the_stream() {
    let engine = ScriptedEngine::new();
    let server = Running::start(local_config(), &engine).await;
    let mut stream = TcpStream::connect(server.api).await.unwrap();
    let head = "POST /v3/clusters/c/topics/orders/records HTTP/1.1\r\nHost: x\r\n\
                Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = |text: &str| format!("{:x}\r\n{text}\r\n", text.len());
    let record = |n: u32| format!("{{\"value\": {{\"type\": \"JSON\", \"data\": {n}}}}}");
    let mut seen = String::new();
    stream
        .write_all(chunk(&record(1)).as_bytes())
        .await
        .unwrap();
    read_until(&mut stream, &mut seen, "\"error_code\":200", 1).await;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    stream
        .write_all(chunk(&record(2)).as_bytes())
        .await
        .unwrap();
    read_until(&mut stream, &mut seen, "\"error_code\":200", 2).await;
    assert_eq!(engine.sent_count(), 2);
    // Shutdown with the stream still open: a last 503 report, then the response ends.
    let stopping = tokio::spawn(server.stop());
    read_until(&mut stream, &mut seen, "\"error_code\":503", 1).await;
    read_until(&mut stream, &mut seen, "0\r\n\r\n", 1).await;
    assert!(stopping.await.unwrap() < Duration::from_secs(5));
    assert_eq!(engine.shutdowns.lock().len(), 1);
}

mod tls {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    use rustls::RootCertStore;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio_rustls::TlsConnector;

    struct Pki {
        dir: tempfile::TempDir,
        ca: CertificateDer<'static>,
        client: (CertificateDer<'static>, PrivateKeyDer<'static>),
    }

    fn pki() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "spillway test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let mut sp = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = sp.signed_by(&server_key, &ca, &ca_key).unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut cp = CertificateParams::new(Vec::<String>::new()).unwrap();
        cp.distinguished_name.push(DnType::CommonName, "client");
        cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = cp.signed_by(&client_key, &ca, &ca_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("server.pem"), server.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), server_key.serialize_pem()).unwrap();
        Pki {
            dir,
            ca: ca.der().clone(),
            client: (
                client.der().clone(),
                PrivateKeyDer::Pkcs8(client_key.serialize_der().into()),
            ),
        }
    }

    fn tls_config(pki: &Pki, mtls: bool) -> Config {
        let mut c = local_config();
        c.tls = Some(spillway_gateway::config::TlsConfig {
            cert: pki.dir.path().join("server.pem"),
            key: pki.dir.path().join("server.key"),
            client_ca: mtls.then(|| pki.dir.path().join("ca.pem")),
        });
        c
    }

    async fn connect_tls(
        addr: SocketAddr,
        pki: &Pki,
        with_client_cert: bool,
        alpn: &[&[u8]],
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let mut roots = RootCertStore::empty();
        roots.add(pki.ca.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = if with_client_cert {
            builder
                .with_client_auth_cert(vec![pki.client.0.clone()], pki.client.1.clone_key())
                .unwrap()
        } else {
            builder.with_no_client_auth()
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
    }

    async fn get_over_tls(addr: SocketAddr, pki: &Pki, with_client_cert: bool) -> String {
        match connect_tls(addr, pki, with_client_cert, &[]).await {
            Ok(stream) => exchange(stream, HEALTHZ.as_bytes()).await,
            Err(e) => format!("handshake failed: {e}"),
        }
    }

    #[tokio::test]
    async fn an_h2_connection_that_never_sends_its_preface_is_closed_after_the_header_timeout() {
        let pki = pki();
        let engine = ScriptedEngine::new();
        let server = Running::start(tls_config(&pki, false), &engine).await;
        let mut silent = connect_tls(server.api, &pki, false, &[b"h2"])
            .await
            .expect("handshake");
        assert_eq!(silent.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let started = Instant::now();
        // The server speaks first (its SETTINGS); the connection must then end.
        let mut seen = Vec::new();
        let ended =
            tokio::time::timeout(Duration::from_secs(3), silent.read_to_end(&mut seen)).await;
        assert!(ended.is_ok(), "a silent h2 connection stayed open for 3 s");
        assert!(started.elapsed() >= Duration::from_millis(400));
        server.stop().await;
    }

    #[tokio::test]
    async fn an_h2_client_that_sent_its_preface_is_served_after_the_header_timeout() {
        let pki = pki();
        let engine = ScriptedEngine::new();
        let server = Running::start(tls_config(&pki, false), &engine).await;
        let tls = connect_tls(server.api, &pki, false, &[b"h2"])
            .await
            .expect("handshake");
        let io = hyper_util::rt::TokioIo::new(tls);
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        tokio::time::sleep(Duration::from_millis(800)).await;
        let request = hyper::Request::get("https://localhost/healthz")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let answer = send.send_request(request).await.expect("answered over h2");
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.version(), hyper::Version::HTTP_2);
        server.stop().await;
    }

    #[tokio::test]
    async fn the_api_listener_serves_https_when_tls_is_configured() {
        let pki = pki();
        let engine = ScriptedEngine::new();
        let server = Running::start(tls_config(&pki, false), &engine).await;
        let answer = get_over_tls(server.api, &pki, false).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let plain = http(server.api, HEALTHZ).await;
        assert!(
            !plain.starts_with("HTTP/1.1 200"),
            "plain HTTP served on a TLS listener"
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn with_mtls_only_clients_with_a_certificate_from_the_ca_are_served() {
        let pki = pki();
        let engine = ScriptedEngine::new();
        let server = Running::start(tls_config(&pki, true), &engine).await;
        let answer = get_over_tls(server.api, &pki, true).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let refused = get_over_tls(server.api, &pki, false).await;
        assert!(
            !refused.contains("200 OK"),
            "served without a client certificate: {refused}"
        );
        server.stop().await;
    }
}
