//! The two Kafka requests the doctor speaks itself, over a plain TCP socket, to learn what
//! librdkafka does not tell us: whether one given broker answers at all (ApiVersions), and which
//! broker the cluster names as controller (Metadata's `controller_id`, which librdkafka parses
//! but does not expose).
//!
//! ## Framing (Kafka protocol, big-endian)
//! ```text
//! request:  i32 size | i16 api_key | i16 api_version | i32 correlation_id | i16 client_id len | client_id | body
//! response: i32 size | i32 correlation_id | body            (response header v0: no tagged fields)
//! ```
//! - **ApiVersions v0** (key 18): empty body. Response: `i16 error_code`, then `i32 count` ×
//!   (`i16 api_key`, `i16 min_version`, `i16 max_version`). A broker that does not speak v0 still
//!   answers in v0 format with `UNSUPPORTED_VERSION` (35) and its ranges, so v0 is always safe.
//! - **Metadata v1..=v8** (key 3), the non-flexible versions, asking for no topics: `i32 0`
//!   topics; v4+ adds `bool allow_auto_topic_creation`; v8+ adds two `bool`s for authorised
//!   operations. Response: v3+ `i32 throttle_time_ms`; brokers `i32 count` × (`i32 node_id`,
//!   `string host`, `i32 port`, `nullable string rack`); v2+ `nullable string cluster_id`;
//!   `i32 controller_id` (-1: no active controller). We stop reading there.

use std::collections::BTreeMap;

/// ApiVersions' API key.
pub const API_VERSIONS: i16 = 18;
/// Metadata's API key.
pub const METADATA: i16 = 3;
/// DescribeConfigs' API key.
pub const DESCRIBE_CONFIGS: i16 = 32;
/// The newest Metadata version we can encode (v9 turns the request flexible).
pub const METADATA_MAX_VERSION: i16 = 8;

const CLIENT_ID: &str = "spillway-doctor";

/// A response we could not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The response ended before a field did.
    #[error("response truncated at byte {0}")]
    Truncated(usize),
    /// The response answers another request than ours.
    #[error("correlation id {got} does not match the request's {want}")]
    Correlation { want: i32, got: i32 },
    /// A string field is not UTF-8, or a length is negative where it cannot be.
    #[error("malformed field at byte {0}")]
    Malformed(usize),
}

/// Encodes a full request frame (size prefix included).
pub fn request(api_key: i16, api_version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(14 + CLIENT_ID.len() + body.len());
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(&api_key.to_be_bytes());
    frame.extend_from_slice(&api_version.to_be_bytes());
    frame.extend_from_slice(&correlation_id.to_be_bytes());
    frame.extend_from_slice(&(CLIENT_ID.len() as i16).to_be_bytes());
    frame.extend_from_slice(CLIENT_ID.as_bytes());
    frame.extend_from_slice(body);
    let size = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    frame
}

/// The body of a Metadata request of `version` (1..=8) that asks for no topics.
pub fn metadata_body(version: i16) -> Vec<u8> {
    let mut body = 0i32.to_be_bytes().to_vec();
    if version >= 4 {
        body.push(0); // allow_auto_topic_creation = false
    }
    if version >= 8 {
        body.extend_from_slice(&[0, 0]); // include cluster / topic authorized operations
    }
    body
}

/// What ApiVersions told us: the error code and each API's version range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiVersions {
    pub error_code: i16,
    pub apis: BTreeMap<i16, (i16, i16)>,
}

impl ApiVersions {
    pub fn supports(&self, api_key: i16) -> bool {
        self.apis.contains_key(&api_key)
    }

    /// The newest version of `api_key` in `lo..=hi` that the broker speaks.
    pub fn best_version(&self, api_key: i16, lo: i16, hi: i16) -> Option<i16> {
        let (min, max) = *self.apis.get(&api_key)?;
        let v = max.min(hi);
        (v >= min.max(lo)).then_some(v)
    }
}

/// What the Metadata request told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    pub broker_ids: Vec<i32>,
    pub cluster_id: Option<String>,
    pub controller_id: i32,
}

/// A cursor over a response body (after the size prefix).
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(DecodeError::Truncated(self.buf.len()))?;
        let out = &self.buf[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn i16(&mut self) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn count(&mut self) -> Result<usize, DecodeError> {
        let at = self.at;
        let n = self.i32()?;
        // Each element is at least 4 bytes: a count larger than the rest is garbage, not a
        // reason to allocate.
        if n < 0 || n as usize > (self.buf.len() - self.at) / 4 + 1 {
            return Err(DecodeError::Malformed(at));
        }
        Ok(n as usize)
    }
    fn nullable_string(&mut self) -> Result<Option<String>, DecodeError> {
        let at = self.at;
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        let bytes = self.take(len as usize)?;
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| DecodeError::Malformed(at))
    }
    fn correlation(&mut self, want: i32) -> Result<(), DecodeError> {
        let got = self.i32()?;
        if got != want {
            return Err(DecodeError::Correlation { want, got });
        }
        Ok(())
    }
}

/// Decodes an ApiVersions v0 response body (the bytes after the size prefix).
pub fn decode_api_versions(body: &[u8], correlation_id: i32) -> Result<ApiVersions, DecodeError> {
    let mut r = Reader { buf: body, at: 0 };
    r.correlation(correlation_id)?;
    let error_code = r.i16()?;
    let n = r.count()?;
    let mut apis = BTreeMap::new();
    for _ in 0..n {
        let key = r.i16()?;
        let min = r.i16()?;
        let max = r.i16()?;
        apis.insert(key, (min, max));
    }
    Ok(ApiVersions { error_code, apis })
}

/// Decodes a Metadata response body of `version` (1..=8) up to `controller_id`.
pub fn decode_metadata(
    body: &[u8],
    version: i16,
    correlation_id: i32,
) -> Result<ClusterInfo, DecodeError> {
    let mut r = Reader { buf: body, at: 0 };
    r.correlation(correlation_id)?;
    if version >= 3 {
        r.i32()?; // throttle_time_ms
    }
    let n = r.count()?;
    let mut broker_ids = Vec::with_capacity(n);
    for _ in 0..n {
        broker_ids.push(r.i32()?);
        r.nullable_string()?; // host
        r.i32()?; // port
        r.nullable_string()?; // rack (v1+)
    }
    let cluster_id = if version >= 2 {
        r.nullable_string()?
    } else {
        None
    };
    let controller_id = r.i32()?;
    Ok(ClusterInfo {
        broker_ids,
        cluster_id,
        controller_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response frame body: correlation id, then `rest`.
    fn body(correlation_id: i32, rest: &[u8]) -> Vec<u8> {
        let mut b = correlation_id.to_be_bytes().to_vec();
        b.extend_from_slice(rest);
        b
    }

    fn api_versions_body() -> Vec<u8> {
        let mut rest = 0i16.to_be_bytes().to_vec();
        rest.extend_from_slice(&2i32.to_be_bytes());
        for (key, min, max) in [(METADATA, 0i16, 12i16), (DESCRIBE_CONFIGS, 0, 4)] {
            for v in [key, min, max] {
                rest.extend_from_slice(&v.to_be_bytes());
            }
        }
        body(7, &rest)
    }

    /// A Metadata response of `version` with brokers 1 and 2, cluster "abc", controller 2.
    fn metadata_response(version: i16) -> Vec<u8> {
        let mut rest = Vec::new();
        if version >= 3 {
            rest.extend_from_slice(&0i32.to_be_bytes());
        }
        rest.extend_from_slice(&2i32.to_be_bytes());
        for id in [1i32, 2] {
            rest.extend_from_slice(&id.to_be_bytes());
            rest.extend_from_slice(&9i16.to_be_bytes());
            rest.extend_from_slice(b"127.0.0.1");
            rest.extend_from_slice(&9092i32.to_be_bytes());
            rest.extend_from_slice(&(-1i16).to_be_bytes()); // rack: null
        }
        if version >= 2 {
            rest.extend_from_slice(&3i16.to_be_bytes());
            rest.extend_from_slice(b"abc");
        }
        rest.extend_from_slice(&2i32.to_be_bytes());
        rest.extend_from_slice(&0i32.to_be_bytes()); // no topics
        body(9, &rest)
    }

    #[test]
    fn an_api_versions_request_is_framed_as_kafka_expects() {
        let frame = request(API_VERSIONS, 0, 1, &[]);
        let mut want = vec![0, 0, 0, 25, 0, 18, 0, 0, 0, 0, 0, 1, 0, 15];
        want.extend_from_slice(b"spillway-doctor");
        assert_eq!(frame, want);
    }

    #[test]
    fn metadata_request_bodies_grow_with_the_version() {
        assert_eq!(metadata_body(1), vec![0, 0, 0, 0]);
        assert_eq!(metadata_body(4), vec![0, 0, 0, 0, 0]);
        assert_eq!(metadata_body(8), vec![0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn an_api_versions_response_decodes_and_tells_whether_describe_configs_is_offered() {
        let v = decode_api_versions(&api_versions_body(), 7).unwrap();
        assert_eq!(v.error_code, 0);
        assert!(v.supports(DESCRIBE_CONFIGS));
        assert!(!v.supports(API_VERSIONS));
        assert_eq!(v.best_version(METADATA, 1, METADATA_MAX_VERSION), Some(8));
        assert_eq!(v.best_version(DESCRIBE_CONFIGS, 5, 8), None);
    }

    #[test]
    fn metadata_responses_of_every_version_decode_the_controller() {
        for version in 1..=METADATA_MAX_VERSION {
            let info = decode_metadata(&metadata_response(version), version, 9).unwrap();
            assert_eq!(info.broker_ids, vec![1, 2], "v{version}");
            assert_eq!(info.controller_id, 2, "v{version}");
            let cluster = (version >= 2).then(|| "abc".to_string());
            assert_eq!(info.cluster_id, cluster, "v{version}");
        }
    }

    #[test]
    fn every_truncation_of_a_response_is_an_error_not_a_panic() {
        let api = api_versions_body();
        for cut in 0..api.len() {
            assert!(decode_api_versions(&api[..cut], 7).is_err(), "cut at {cut}");
        }
        let md = metadata_response(3);
        // The trailing topic count is not read.
        for cut in 0..md.len() - 4 {
            assert!(decode_metadata(&md[..cut], 3, 9).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_response_to_another_request_is_rejected() {
        assert_eq!(
            decode_api_versions(&api_versions_body(), 8),
            Err(DecodeError::Correlation { want: 8, got: 7 })
        );
    }

    #[test]
    fn an_absurd_array_count_is_rejected_without_allocating() {
        let garbage = body(7, &[0, 0, 0x7f, 0xff, 0xff, 0xff]);
        assert!(matches!(
            decode_api_versions(&garbage, 7),
            Err(DecodeError::Malformed(6))
        ));
    }
}
