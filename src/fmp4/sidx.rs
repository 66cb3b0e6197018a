//! The segment index `sidx` (ISO/IEC 14496-12 §8.16.3) of an on-demand file: one reference per
//! segment, its size in bytes, its duration and whether it starts with a stream access point,
//! so a player fetches the index once and then each segment by byte range.
//!
//! ```text
//! sidx (full box, version 1)  reference_ID timescale earliest_presentation_time:u64
//!                             first_offset:u64 reserved:u16 reference_count:u16
//!                             (reference_type:1 referenced_size:31 subsegment_duration:u32
//!                              starts_with_SAP:1 SAP_type:3 SAP_delta_time:28)*
//! ```

use bytes::{BufMut, Bytes, BytesMut};

/// One segment of a track, as the index lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reference {
    pub size: u32,
    pub duration: u32,
    /// Starts with a sync sample (SAP type 1).
    pub starts_with_sap: bool,
}

/// A `sidx` for `track_id` whose media follows it directly (first_offset 0). At most 65,535
/// references fit one box (`reference_count` is 16 bits); `None` beyond.
pub fn encode(
    track_id: u32,
    timescale: u32,
    earliest_presentation_time: u64,
    references: &[Reference],
) -> Option<Bytes> {
    let count = u16::try_from(references.len()).ok()?;
    let len = 12 + 4 + 4 + 8 + 8 + 2 + 2 + 12 * references.len();
    let mut out = BytesMut::with_capacity(len);
    out.put_u32(len as u32);
    out.put_slice(b"sidx");
    out.put_u32(1 << 24); // version 1, flags 0
    out.put_u32(track_id);
    out.put_u32(timescale);
    out.put_u64(earliest_presentation_time);
    out.put_u64(0);
    out.put_u16(0);
    out.put_u16(count);
    for r in references {
        // reference_type 0: media; sizes are 31 bits.
        out.put_u32(r.size & 0x7fff_ffff);
        out.put_u32(r.duration);
        out.put_u32(if r.starts_with_sap { 0x9000_0000 } else { 0 });
    }
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_the_references_after_the_header() {
        let refs = [
            Reference {
                size: 1000,
                duration: 180_000,
                starts_with_sap: true,
            },
            Reference {
                size: 7,
                duration: 90_000,
                starts_with_sap: false,
            },
        ];
        let b = encode(1, 90_000, 1234, &refs).expect("fits");
        assert_eq!(b.len(), 40 + 24);
        assert_eq!(&b[4..8], b"sidx");
        assert_eq!(b[8], 1, "version 1");
        assert_eq!(u64::from_be_bytes(b[20..28].try_into().unwrap()), 1234);
        assert_eq!(u16::from_be_bytes([b[38], b[39]]), 2);
        assert_eq!(u32::from_be_bytes(b[40..44].try_into().unwrap()), 1000);
        assert_eq!(
            u32::from_be_bytes(b[48..52].try_into().unwrap()),
            0x9000_0000
        );
        assert_eq!(u32::from_be_bytes(b[60..64].try_into().unwrap()), 0);
        assert!(encode(1, 1, 0, &vec![refs[0]; 70_000]).is_none());
    }
}
