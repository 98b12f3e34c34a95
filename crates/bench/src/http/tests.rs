use super::*;

#[test]
fn a_request_carries_its_records_and_an_exact_content_length() {
    let r = String::from_utf8(request_bytes(2, 5)).unwrap();
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    assert_eq!(
        body,
        r#"{"format":"string","records":[{"value":"abcde"},{"value":"abcde"}]}"#
    );
    assert!(head.contains(&format!("Content-Length: {}", body.len())));
    let parsed: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(parsed["records"].as_array().unwrap().len(), 2);
}

#[test]
fn a_response_head_is_parsed_only_once_complete() {
    let full = b"HTTP/1.1 202 Accepted\r\ncontent-length: 3\r\ncontent-type: x\r\n\r\nabc";
    assert_eq!(parse_head(&full[..20]), None);
    let head = parse_head(full).unwrap();
    assert_eq!(head.status, 202);
    assert_eq!(head.body, Body::Length(3));
    assert_eq!(head.len, full.len() - 3);
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(parse_head(chunked).unwrap().body, Body::Chunked);
}

#[test]
fn a_chunked_body_ends_at_its_zero_chunk() {
    assert_eq!(chunked_end(b"3\r\nabc\r\n0\r\n\r\n"), Some(13));
    assert_eq!(chunked_end(b"3\r\nabc\r\n0\r\n"), None);
    assert_eq!(chunked_end(b"3\r\nab"), None);
}

#[test]
fn http_is_compared_with_the_library_and_the_spool_limit_of_its_round() {
    let run = |mode: &str, via: &str, round: usize, per_s: f64| HttpRun {
        mode: mode.into(),
        via: via.into(),
        batch: 1,
        round,
        records: 1,
        requests: 1,
        errors: 0,
        secs: 1.0,
        records_per_s: per_s,
    };
    let runs = vec![
        run("failover", "library", 0, 100.0),
        run("failover", "http", 0, 50.0),
        run("spool_first", "library", 0, 100.0),
        run("spool_first", "http", 0, 80.0),
        run("spool_first", "spool-limit", 0, 160.0),
    ];
    let cases = summarise(&runs);
    assert_eq!(cases.len(), 2);
    assert_eq!(cases[0].overhead_ratio, Some(0.5));
    assert_eq!(cases[0].spool_limit_per_s, None);
    assert_eq!(cases[1].overhead_ratio, Some(0.8));
    assert_eq!(cases[1].vs_spool_limit, Some(0.5));
    let md = render(&cases, 64);
    assert!(
        md.contains("| failover | 1 | 50 | 100 | 0.50× (0.50) | — | — |"),
        "{md}"
    );
}
