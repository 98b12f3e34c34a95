//! The bytes on disk: segment header and record framing. No I/O here, only encode and decode.
//!
//! Every integer is little-endian. The layout is drawn in the crate's design doc (`lib.rs`); the
//! constants below are the single source of truth for it.

use crate::Seq;

/// First eight bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SPWLSEG\0";
/// Format version written into new segments. Readers refuse (quarantine) other versions.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the segment header in bytes.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Bytes of framing before the record header: `len: u32`, `crc: u32`.
pub const FRAME_LEN: usize = 8;
/// Bytes of the typed record header: `seq: u64`, `timestamp_ms: u64`, `tag: u32`.
pub const RECORD_HEADER_LEN: usize = 20;
/// Total bytes a record takes on disk besides its payload.
pub const RECORD_OVERHEAD: usize = FRAME_LEN + RECORD_HEADER_LEN;
/// Hard upper bound of a payload, whatever the configuration: a length field above it is corrupt.
pub const MAX_PAYLOAD_LEN: usize = 64 * 1024 * 1024;

/// CRC-32C (Castagnoli), as used in every checksum of the spool.
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// The header at offset 0 of a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Sequence number of the first record this segment may hold; also its file name.
    pub first_seq: Seq,
    /// Wall-clock creation time, milliseconds since the Unix epoch (informational).
    pub created_ms: u64,
}

/// Why bytes failed to decode as a segment header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer than [`SEGMENT_HEADER_LEN`] bytes: the file was torn while being created.
    Short(usize),
    /// The magic is not ours.
    BadMagic,
    /// The header checksum does not match.
    BadChecksum,
    /// A version this build does not understand.
    UnknownVersion(u16),
}

impl SegmentHeader {
    /// Encodes the 32-byte header.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut out = [0u8; SEGMENT_HEADER_LEN];
        out[0..8].copy_from_slice(&SEGMENT_MAGIC);
        out[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        // bytes 10..12 are reserved flags, zero in version 1
        out[12..20].copy_from_slice(&self.first_seq.0.to_le_bytes());
        out[20..28].copy_from_slice(&self.created_ms.to_le_bytes());
        let crc = crc32c(&out[0..28]);
        out[28..32].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a header from the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Self, HeaderError> {
        if bytes.len() < SEGMENT_HEADER_LEN {
            return Err(HeaderError::Short(bytes.len()));
        }
        if bytes[0..8] != SEGMENT_MAGIC {
            return Err(HeaderError::BadMagic);
        }
        if crc32c(&bytes[0..28]) != le_u32(&bytes[28..32]) {
            return Err(HeaderError::BadChecksum);
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != FORMAT_VERSION {
            return Err(HeaderError::UnknownVersion(version));
        }
        Ok(SegmentHeader {
            first_seq: Seq(le_u64(&bytes[12..20])),
            created_ms: le_u64(&bytes[20..28]),
        })
    }
}

/// The typed header every record carries before its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Sequence number within the stream.
    pub seq: Seq,
    /// Append time, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Caller-defined flags or tag; opaque to the spool.
    pub tag: u32,
}

/// Size on disk of a record with a payload of `payload_len` bytes.
pub fn encoded_len(payload_len: usize) -> usize {
    RECORD_OVERHEAD + payload_len
}

/// Appends one framed record to `out`.
pub fn encode_record(out: &mut Vec<u8>, header: &RecordHeader, payload: &[u8]) {
    let start = out.len();
    let len = (RECORD_HEADER_LEN + payload.len()) as u32;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&header.seq.0.to_le_bytes());
    out.extend_from_slice(&header.timestamp_ms.to_le_bytes());
    out.extend_from_slice(&header.tag.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c(&out[start + FRAME_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Why bytes at an offset are not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// The length field is below the header size or above [`MAX_PAYLOAD_LEN`].
    BadLength(u32),
    /// The checksum over header and payload does not match.
    BadChecksum,
}

/// The result of decoding at one offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole, valid record: its header, the payload's range within the input, and its total size.
    Record {
        header: RecordHeader,
        payload: std::ops::Range<usize>,
        total_len: usize,
    },
    /// The input ends inside the record: `needed` bytes in total would be required to decide.
    Incomplete { needed: usize },
    /// The bytes are not a record.
    Corrupt(Corruption),
}

/// Decodes the record at the start of `bytes`.
pub fn decode_record(bytes: &[u8]) -> Decoded {
    if bytes.len() < FRAME_LEN {
        return Decoded::Incomplete { needed: FRAME_LEN };
    }
    let len = le_u32(&bytes[0..4]);
    if (len as usize) < RECORD_HEADER_LEN || len as usize > RECORD_HEADER_LEN + MAX_PAYLOAD_LEN {
        return Decoded::Corrupt(Corruption::BadLength(len));
    }
    let total_len = FRAME_LEN + len as usize;
    if bytes.len() < total_len {
        return Decoded::Incomplete { needed: total_len };
    }
    let body = &bytes[FRAME_LEN..total_len];
    if crc32c(body) != le_u32(&bytes[4..8]) {
        return Decoded::Corrupt(Corruption::BadChecksum);
    }
    let header = RecordHeader {
        seq: Seq(le_u64(&body[0..8])),
        timestamp_ms: le_u64(&body[8..16]),
        tag: le_u32(&body[16..20]),
    };
    Decoded::Record {
        header,
        payload: FRAME_LEN + RECORD_HEADER_LEN..total_len,
        total_len,
    }
}

/// Reads the sequence number a record at the start of `bytes` claims, without checking its CRC.
/// Used to reject resynchronisation candidates cheaply before checksumming them.
pub fn peek_seq(bytes: &[u8]) -> Option<Seq> {
    (bytes.len() >= FRAME_LEN + 8).then(|| Seq(le_u64(&bytes[FRAME_LEN..FRAME_LEN + 8])))
}

pub(crate) fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

pub(crate) fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[0..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (RecordHeader, Vec<u8>) {
        let header = RecordHeader {
            seq: Seq(42),
            timestamp_ms: 1_700_000_000_123,
            tag: 7,
        };
        let mut out = Vec::new();
        encode_record(&mut out, &header, b"hello spool");
        (header, out)
    }

    #[test]
    fn crc32c_matches_the_published_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn record_layout_is_pinned_byte_for_byte() {
        let header = RecordHeader {
            seq: Seq(1),
            timestamp_ms: 2,
            tag: 3,
        };
        let mut out = Vec::new();
        encode_record(&mut out, &header, b"ab");
        assert_eq!(&out[0..4], &22u32.to_le_bytes());
        assert_eq!(&out[8..16], &1u64.to_le_bytes());
        assert_eq!(&out[16..24], &2u64.to_le_bytes());
        assert_eq!(&out[24..28], &3u32.to_le_bytes());
        assert_eq!(&out[28..30], b"ab");
        assert_eq!(le_u32(&out[4..8]), crc32c(&out[8..]));
        assert_eq!(out.len(), encoded_len(2));
    }

    #[test]
    fn record_round_trips() {
        let (header, bytes) = sample();
        match decode_record(&bytes) {
            Decoded::Record {
                header: h,
                payload,
                total_len,
            } => {
                assert_eq!(h, header);
                assert_eq!(&bytes[payload], b"hello spool");
                assert_eq!(total_len, bytes.len());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn record_truncated_at_every_byte_is_incomplete_never_a_record() {
        let (_, bytes) = sample();
        for cut in 0..bytes.len() {
            match decode_record(&bytes[..cut]) {
                Decoded::Incomplete { needed } => assert!(needed > cut),
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn record_with_any_byte_flipped_is_never_decoded_as_the_original() {
        let (header, bytes) = sample();
        for i in 0..bytes.len() {
            for mask in [0x01u8, 0x80, 0xFF] {
                let mut damaged = bytes.clone();
                damaged[i] ^= mask;
                match decode_record(&damaged) {
                    Decoded::Record {
                        header: h, payload, ..
                    } => {
                        panic!(
                            "flip {mask:#x} at {i} decoded as {h:?} / {:?}",
                            &damaged[payload]
                        )
                    }
                    Decoded::Corrupt(_) | Decoded::Incomplete { .. } => {}
                }
                let _ = header;
            }
        }
    }

    #[test]
    fn length_below_header_size_is_corrupt() {
        let mut bytes = vec![0u8; 64];
        bytes[0..4].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(
            decode_record(&bytes),
            Decoded::Corrupt(Corruption::BadLength(3))
        );
    }

    #[test]
    fn segment_header_round_trips_and_rejects_damage() {
        let h = SegmentHeader {
            first_seq: Seq(9),
            created_ms: 5,
        };
        let bytes = h.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(h));
        for cut in 0..SEGMENT_HEADER_LEN {
            assert_eq!(
                SegmentHeader::decode(&bytes[..cut]),
                Err(HeaderError::Short(cut))
            );
        }
        for i in 0..SEGMENT_HEADER_LEN {
            let mut damaged = bytes;
            damaged[i] ^= 0x10;
            assert!(
                SegmentHeader::decode(&damaged).is_err(),
                "flip at {i} accepted"
            );
        }
    }

    #[test]
    fn segment_header_with_unknown_version_is_refused() {
        let mut bytes = SegmentHeader {
            first_seq: Seq(0),
            created_ms: 0,
        }
        .encode();
        bytes[8] = 2;
        let crc = crc32c(&bytes[0..28]);
        bytes[28..32].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            SegmentHeader::decode(&bytes),
            Err(HeaderError::UnknownVersion(2))
        );
    }
}
