//! `prft`, the producer reference time (ISO/IEC 14496-12 §8.16.5): the wall clock (NTP format)
//! at which the sample at `media_time` of a track was captured or written. ffmpeg writes one
//! before each video `moof` with `-write_prft wallclock`; players use it to measure latency.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BufMut;

use super::{Atom, ErrorKind, FourCC, Reader, Result, atom::field, atom::put_full_header};

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
pub const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prft {
    pub version: u8,
    pub flags: u32,
    pub reference_track_id: u32,
    /// 32.32 fixed-point seconds since 1900-01-01 UTC.
    pub ntp_timestamp: u64,
    pub media_time: u64,
}

impl Prft {
    /// Where `media_time` lies in the body: after version and flags, the reference track
    /// and the 64-bit NTP time.
    pub const MEDIA_TIME_OFFSET: usize = 16;

    /// A version-1 `prft` saying that `media_time` of `track` was written at `now`.
    pub fn at(track: u32, media_time: u64, now: SystemTime) -> Self {
        Self {
            version: 1,
            flags: 0,
            reference_track_id: track,
            ntp_timestamp: ntp_from_system_time(now),
            media_time,
        }
    }

    /// The wall clock in milliseconds since the Unix epoch.
    pub fn unix_millis(&self) -> Option<u64> {
        unix_millis_from_ntp(self.ntp_timestamp)
    }
}

/// Converts a wall-clock time to NTP's 32.32 fixed point.
pub fn ntp_from_system_time(t: SystemTime) -> u64 {
    let since_unix = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since_unix.as_secs().saturating_add(NTP_UNIX_OFFSET_SECS);
    let frac = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// Milliseconds since the Unix epoch of an NTP timestamp, if it is after 1970.
pub fn unix_millis_from_ntp(ntp: u64) -> Option<u64> {
    let secs = (ntp >> 32).checked_sub(NTP_UNIX_OFFSET_SECS)?;
    // Rounded to the nearest millisecond: NTP fractions of whole milliseconds are not exact.
    let millis = (((ntp & 0xffff_ffff) * 1000) + (1 << 31)) >> 32;
    secs.checked_mul(1000)?.checked_add(millis)
}

impl Atom for Prft {
    const KIND: FourCC = FourCC::new(b"prft");

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (version, flags) = r.full_header()?;
        let reference_track_id = r.u32()?;
        let ntp_timestamp = r.u64()?;
        let media_time = match version {
            0 => u64::from(r.u32()?),
            1 => r.u64()?,
            v => return Err(r.error(ErrorKind::UnsupportedVersion(v))),
        };
        Ok(Self {
            version,
            flags,
            reference_track_id,
            ntp_timestamp,
            media_time,
        })
    }

    fn encode_body<B: BufMut>(&self, out: &mut B) {
        put_full_header(out, self.version, self.flags);
        out.put_u32(self.reference_track_id);
        out.put_u64(self.ntp_timestamp);
        if self.version == 0 {
            out.put_u32(self.media_time as u32);
        } else {
            out.put_u64(self.media_time);
        }
    }

    fn body_len(&self) -> usize {
        if self.version == 0 { 20 } else { 24 }
    }

    fn describe(&self, out: &mut String) {
        field(out, "track", self.reference_track_id);
        match self.unix_millis() {
            Some(ms) => field(out, "wallclock_ms", ms),
            None => field(out, "ntp", self.ntp_timestamp),
        }
        field(out, "media_time", self.media_time);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_round_trips_to_the_millisecond() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_000_123_456);
        let ntp = ntp_from_system_time(t);
        assert_eq!(unix_millis_from_ntp(ntp), Some(1_795_000_123_456));
    }

    #[test]
    fn ntp_before_1970_has_no_unix_time() {
        assert_eq!(unix_millis_from_ntp(5 << 32), None);
    }
}
