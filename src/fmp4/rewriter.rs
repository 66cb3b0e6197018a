//! Rewrites fragments: shifts decode times (`tfdt`), renumbers `mfhd`, and sets the `prft`.
//!
//! The `sample` source loops a clip by shifting each pass past the previous one, and sources
//! that restart keep their timeline continuous the same way. Where the new values fit the old
//! fields the bytes are patched in place (without a copy when the fragment's buffer is not
//! shared); where a 32-bit `tfdt` overflows, the `moof` is encoded again as version 1 and the
//! `trun` data offsets move with it.

use bytes::{BufMut, Bytes, BytesMut};

use super::moof::{Mfhd, Moof, Tfdt, Tfhd};
use super::{
    Atom, Error, ErrorKind, Fragment, Prft, Reader, Result, fragment::MOOF, fragment::TRAF,
};

/// A time shift for one track, in that track's timescale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackShift {
    pub track_id: u32,
    pub ticks: i64,
}

/// Where a field to patch sits in the fragment's bytes.
enum Field {
    Sequence {
        at: usize,
    },
    DecodeTime {
        at: usize,
        version: u8,
        track_id: u32,
        value: u64,
    },
}

/// Shifts the decode time of every track named in `shifts` and, with `sequence`, sets the
/// `mfhd` sequence number.
pub fn rewrite(
    fragment: Fragment,
    shifts: &[TrackShift],
    sequence: Option<u32>,
) -> Result<Fragment> {
    let fields = locate(&fragment)?;
    let shift_of = |track: u32| {
        shifts
            .iter()
            .find(|s| s.track_id == track)
            .map_or(0, |s| s.ticks)
    };
    let mut new_times = Vec::with_capacity(fields.len());
    let mut fits = true;
    for field in &fields {
        if let Field::DecodeTime {
            version,
            track_id,
            value,
            ..
        } = field
        {
            let shifted = shift_time(*value, shift_of(*track_id)).ok_or_else(|| {
                Error::new(
                    ErrorKind::Overflow("shifted decode time out of range"),
                    fragment.offset,
                    Default::default(),
                )
            })?;
            if *version == 0 && shifted > u64::from(u32::MAX) {
                fits = false;
            }
            new_times.push((*track_id, shifted));
        }
    }
    let mut fragment = if fits {
        patch_in_place(fragment, &fields, &new_times, sequence)
    } else {
        reencode(fragment, &new_times, sequence)?
    };
    for run in &mut fragment.runs {
        if let Some((_, time)) = new_times.iter().find(|(track, _)| *track == run.track_id) {
            run.decode_time = *time;
        }
    }
    if let Some(sequence) = sequence {
        fragment.sequence = sequence;
    }
    Ok(fragment)
}

fn shift_time(value: u64, ticks: i64) -> Option<u64> {
    if ticks >= 0 {
        value.checked_add(ticks.unsigned_abs())
    } else {
        value.checked_sub(ticks.unsigned_abs())
    }
}

fn patch_in_place(
    mut fragment: Fragment,
    fields: &[Field],
    new_times: &[(u32, u64)],
    sequence: Option<u32>,
) -> Fragment {
    let bytes = std::mem::take(&mut fragment.bytes);
    let mut buf = bytes
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
    let mut times = new_times.iter();
    for field in fields {
        match field {
            Field::Sequence { at } => {
                if let (Some(sequence), Some(slot)) = (sequence, buf.get_mut(*at..*at + 4)) {
                    slot.copy_from_slice(&sequence.to_be_bytes());
                }
            }
            Field::DecodeTime { at, version, .. } => {
                let Some((_, time)) = times.next() else {
                    continue;
                };
                if *version == 1 {
                    if let Some(slot) = buf.get_mut(*at..*at + 8) {
                        slot.copy_from_slice(&time.to_be_bytes());
                    }
                } else if let Some(slot) = buf.get_mut(*at..*at + 4) {
                    // Checked by the caller: the time fits in 32 bits.
                    slot.copy_from_slice(&(*time as u32).to_be_bytes());
                }
            }
        }
    }
    fragment.bytes = buf.freeze();
    fragment
}

fn reencode(
    fragment: Fragment,
    new_times: &[(u32, u64)],
    sequence: Option<u32>,
) -> Result<Fragment> {
    let moof_end = fragment.mdat_start;
    let moof_bytes = fragment.bytes.slice(fragment.moof_start..moof_end);
    let mut moof = Moof::decode_at(&moof_bytes, fragment.offset + fragment.moof_start as u64)?;
    let old_len = moof.encoded_len();
    if let Some(sequence) = sequence {
        moof.mfhd = Mfhd {
            sequence_number: sequence,
        };
    }
    let mut times = new_times.iter();
    for traf in &mut moof.traf {
        if let (Some(tfdt), Some((_, time))) = (traf.tfdt.as_mut(), times.next()) {
            *tfdt = Tfdt::new(*time);
        }
    }
    let growth = moof.encoded_len() as i64 - old_len as i64;
    for traf in &mut moof.traf {
        // Offsets counted from the moof move with its end; absolute ones are not ours to fix.
        if traf.tfhd.base_data_offset.is_some() {
            continue;
        }
        for trun in &mut traf.trun {
            if let Some(offset) = trun.data_offset.as_mut() {
                *offset = i32::try_from(i64::from(*offset) + growth).map_err(|_| {
                    Error::new(
                        ErrorKind::Overflow("trun data offset"),
                        fragment.offset,
                        Default::default(),
                    )
                })?;
            }
        }
    }
    let mut out = BytesMut::with_capacity(fragment.bytes.len() + growth.max(0) as usize);
    out.put_slice(&fragment.bytes[..fragment.moof_start]);
    moof.encode(&mut out);
    let mdat_start = out.len();
    out.put_slice(&fragment.bytes[moof_end..]);
    Ok(Fragment {
        bytes: out.freeze(),
        mdat_start,
        ..fragment
    })
}

/// Finds the `mfhd` sequence number and every `tfdt` time in the fragment's `moof`.
fn locate(fragment: &Fragment) -> Result<Vec<Field>> {
    let mut fields = Vec::with_capacity(3);
    let mut r = Reader::new(&fragment.bytes, fragment.offset);
    while let Some(mut moof) = r.next_box()? {
        if moof.kind() != MOOF {
            continue;
        }
        let moof_body = moof.body();
        while let Some(mut child) = moof_body.next_box()? {
            let body_at = child.start() + usize::from(child.header.header_len);
            if child.kind() == Mfhd::KIND {
                // version and flags, then the sequence number.
                fields.push(Field::Sequence { at: body_at + 4 });
            } else if child.kind() == TRAF {
                let traf = child.body();
                let mut track_id = None;
                while let Some(part) = traf.next_box()? {
                    let part_body = part.start() + usize::from(part.header.header_len);
                    if part.kind() == Tfhd::KIND {
                        track_id = Some(part.decode::<Tfhd>()?.track_id);
                    } else if part.kind() == Tfdt::KIND {
                        let tfdt = part.decode::<Tfdt>()?;
                        fields.push(Field::DecodeTime {
                            at: part_body + 4,
                            version: tfdt.version,
                            track_id: track_id.unwrap_or(0),
                            value: tfdt.base_media_decode_time,
                        });
                    }
                }
            }
        }
        break;
    }
    Ok(fields)
}

/// Replaces the fragment's `prft` (or adds one just before the `moof`).
pub fn set_prft(fragment: Fragment, prft: &Prft) -> Result<Fragment> {
    let mut prefix = BytesMut::with_capacity(fragment.moof_start + prft.encoded_len());
    let mut r = Reader::new(&fragment.bytes, fragment.offset);
    while let Some(child) = r.next_box()? {
        if child.kind() == MOOF {
            break;
        }
        if child.kind() != Prft::KIND {
            prefix.put_slice(&child.raw().bytes);
        }
    }
    prft.encode(&mut prefix);
    let moof_start = prefix.len();
    let growth = moof_start as i64 - fragment.moof_start as i64;
    let mut out = prefix;
    out.reserve(fragment.bytes.len() - fragment.moof_start);
    out.put_slice(&fragment.bytes[fragment.moof_start..]);
    let mdat_start = usize::try_from(fragment.mdat_start as i64 + growth).map_err(|_| {
        Error::new(
            ErrorKind::Overflow("mdat position"),
            fragment.offset,
            Default::default(),
        )
    })?;
    Ok(Fragment {
        bytes: out.freeze(),
        moof_start,
        mdat_start,
        prft: Some(*prft),
        ..fragment
    })
}

/// Concatenates fragments' bytes (tests, `package`).
pub fn concat<'a>(parts: impl IntoIterator<Item = &'a Bytes>) -> Bytes {
    let parts: Vec<&Bytes> = parts.into_iter().collect();
    let mut out = BytesMut::with_capacity(parts.iter().map(|b| b.len()).sum());
    for part in parts {
        out.put_slice(part);
    }
    out.freeze()
}
