//! Rewrites fragments: shifts decode times (`tfdt`), renumbers `mfhd`, fills in sample
//! durations an encoder left at 0, and sets the `prft`.
//!
//! The `sample` source loops a clip by shifting each pass past the previous one, sources that
//! restart keep their timeline continuous the same way, and ffmpeg's live fMP4 (which writes
//! each frame before the next one's time is known) gets its zero durations replaced by the
//! track's frame interval, which MSE needs to show every frame. Where the new values fit the
//! old fields the bytes are patched in place (without a copy when the fragment's buffer is not
//! shared); otherwise the `moof` is encoded again and the `trun` data offsets move with it.

use bytes::{BufMut, Bytes, BytesMut};

use super::moof::{
    DATA_OFFSET_PRESENT, FIRST_SAMPLE_FLAGS_PRESENT, Mfhd, Moof,
    SAMPLE_COMPOSITION_TIME_OFFSETS_PRESENT, SAMPLE_DURATION_PRESENT, SAMPLE_FLAGS_PRESENT,
    SAMPLE_SIZE_PRESENT, Tfdt, Tfhd, Trun,
};
use super::{
    Atom, Error, ErrorKind, Fragment, Prft, Reader, Result, fragment::MOOF, fragment::TRAF,
};

/// A time shift for one track, in that track's timescale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackShift {
    pub track_id: u32,
    pub ticks: i64,
}

/// The duration to give a track's samples whose duration is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationFill {
    pub track_id: u32,
    pub duration: u32,
}

/// What to change in a fragment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rewrite<'a> {
    pub shifts: &'a [TrackShift],
    pub sequence: Option<u32>,
    pub fill_durations: &'a [DurationFill],
}

/// A field to patch, where it sits in the fragment's bytes.
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
    /// `tfhd` default sample duration, or one `trun` sample's duration.
    Duration {
        at: usize,
        track_id: u32,
        value: u32,
        samples: u32,
    },
    /// A track fragment whose samples take their duration from `trex`: there is no field to
    /// patch.
    Defaulted {
        track_id: u32,
        samples: u32,
    },
}

/// Shifts the decode time of every track named in `shifts` and, with `sequence`, sets the
/// `mfhd` sequence number.
pub fn rewrite(
    fragment: Fragment,
    shifts: &[TrackShift],
    sequence: Option<u32>,
) -> Result<Fragment> {
    apply(
        fragment,
        &Rewrite {
            shifts,
            sequence,
            fill_durations: &[],
        },
    )
}

/// Applies every change in `rewrite`.
pub fn apply(fragment: Fragment, rewrite: &Rewrite<'_>) -> Result<Fragment> {
    let fields = locate(&fragment)?;
    let shift_of = |track: u32| {
        rewrite
            .shifts
            .iter()
            .find(|s| s.track_id == track)
            .map_or(0, |s| s.ticks)
    };
    let fill_of = |track: u32| {
        rewrite
            .fill_durations
            .iter()
            .find(|f| f.track_id == track && f.duration > 0)
            .map(|f| f.duration)
    };
    let mut new_times = Vec::with_capacity(2);
    let mut filled: Vec<(u32, u64)> = Vec::new();
    let mut fits = true;
    for field in &fields {
        match field {
            Field::DecodeTime {
                version,
                track_id,
                value,
                ..
            } => {
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
            Field::Duration {
                track_id,
                value: 0,
                samples,
                ..
            } => {
                if let Some(duration) = fill_of(*track_id) {
                    filled.push((*track_id, u64::from(*samples) * u64::from(duration)));
                }
            }
            Field::Defaulted { track_id, samples } => {
                if let Some(duration) = fill_of(*track_id) {
                    fits = false;
                    filled.push((*track_id, u64::from(*samples) * u64::from(duration)));
                }
            }
            _ => {}
        }
    }
    let mut fragment = if fits {
        patch_in_place(fragment, &fields, &new_times, rewrite, &fill_of)
    } else {
        reencode(fragment, &new_times, rewrite, &fill_of)?
    };
    for run in &mut fragment.runs {
        if let Some((_, time)) = new_times.iter().find(|(track, _)| *track == run.track_id) {
            run.decode_time = *time;
        }
        for (track, added) in &filled {
            if *track == run.track_id {
                run.duration = run.duration.saturating_add(*added);
            }
        }
    }
    if let Some(sequence) = rewrite.sequence {
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

fn put_at(buf: &mut BytesMut, at: usize, value: &[u8]) {
    if let Some(slot) = buf.get_mut(at..at + value.len()) {
        slot.copy_from_slice(value);
    }
}

fn patch_in_place(
    mut fragment: Fragment,
    fields: &[Field],
    new_times: &[(u32, u64)],
    rewrite: &Rewrite<'_>,
    fill_of: &dyn Fn(u32) -> Option<u32>,
) -> Fragment {
    let bytes = std::mem::take(&mut fragment.bytes);
    let mut buf = bytes
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
    let mut times = new_times.iter();
    for field in fields {
        match field {
            Field::Sequence { at } => {
                if let Some(sequence) = rewrite.sequence {
                    put_at(&mut buf, *at, &sequence.to_be_bytes());
                }
            }
            Field::DecodeTime { at, version, .. } => {
                let Some((_, time)) = times.next() else {
                    continue;
                };
                if *version == 1 {
                    put_at(&mut buf, *at, &time.to_be_bytes());
                } else {
                    // Checked by the caller: the time fits in 32 bits.
                    put_at(&mut buf, *at, &(*time as u32).to_be_bytes());
                }
            }
            Field::Duration {
                at,
                track_id,
                value: 0,
                ..
            } => {
                if let Some(duration) = fill_of(*track_id) {
                    put_at(&mut buf, *at, &duration.to_be_bytes());
                }
            }
            Field::Duration { .. } | Field::Defaulted { .. } => {}
        }
    }
    fragment.bytes = buf.freeze();
    fragment
}

fn reencode(
    fragment: Fragment,
    new_times: &[(u32, u64)],
    rewrite: &Rewrite<'_>,
    fill_of: &dyn Fn(u32) -> Option<u32>,
) -> Result<Fragment> {
    let moof_end = fragment.mdat_start;
    let moof_bytes = fragment.bytes.slice(fragment.moof_start..moof_end);
    let mut moof = Moof::decode_at(&moof_bytes, fragment.offset + fragment.moof_start as u64)?;
    let old_len = moof.encoded_len();
    if let Some(sequence) = rewrite.sequence {
        moof.mfhd = Mfhd {
            sequence_number: sequence,
        };
    }
    let mut times = new_times.iter();
    for traf in &mut moof.traf {
        if let (Some(tfdt), Some((_, time))) = (traf.tfdt.as_mut(), times.next()) {
            // Keep the version the encoder chose unless the time needs 64 bits.
            tfdt.base_media_decode_time = *time;
            if *time > u64::from(u32::MAX) {
                tfdt.version = 1;
            }
        }
        if let Some(duration) = fill_of(traf.tfhd.track_id) {
            fill_traf_durations(&mut traf.tfhd, &mut traf.trun, duration);
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

fn fill_traf_durations(tfhd: &mut Tfhd, truns: &mut [Trun], duration: u32) {
    let per_sample = truns
        .iter()
        .any(|t| t.sample_fields & SAMPLE_DURATION_PRESENT != 0);
    for trun in truns.iter_mut() {
        if trun.sample_fields & SAMPLE_DURATION_PRESENT != 0 {
            for sample in &mut trun.samples {
                if sample.duration == 0 {
                    sample.duration = duration;
                }
            }
        }
    }
    if !per_sample && tfhd.default_sample_duration.unwrap_or(0) == 0 {
        tfhd.default_sample_duration = Some(duration);
    }
}

/// Finds the fields a rewrite may change in the fragment's `moof`.
fn locate(fragment: &Fragment) -> Result<Vec<Field>> {
    let mut fields = Vec::with_capacity(4);
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
                locate_in_traf(child.body(), &mut fields)?;
            }
        }
        break;
    }
    Ok(fields)
}

fn locate_in_traf(traf: &mut Reader<'_>, fields: &mut Vec<Field>) -> Result<()> {
    let mut tfhd: Option<(Tfhd, usize)> = None;
    let mut samples_without_field = 0u32;
    let mut has_per_sample_durations = false;
    while let Some(mut part) = traf.next_box()? {
        let body_at = part.start() + usize::from(part.header.header_len);
        if part.kind() == Tfhd::KIND {
            let header = part.decode::<Tfhd>()?;
            tfhd = Some((header, body_at));
        } else if part.kind() == Tfdt::KIND {
            let tfdt = part.decode::<Tfdt>()?;
            fields.push(Field::DecodeTime {
                at: body_at + 4,
                version: tfdt.version,
                track_id: tfhd.as_ref().map_or(0, |(t, _)| t.track_id),
                value: tfdt.base_media_decode_time,
            });
        } else if part.kind() == Trun::KIND {
            let track_id = tfhd.as_ref().map_or(0, |(t, _)| t.track_id);
            let body = part.body();
            let (_version, flags) = body.full_header()?;
            let count = body.u32()?;
            if flags & SAMPLE_DURATION_PRESENT == 0 {
                samples_without_field = samples_without_field.saturating_add(count);
                continue;
            }
            has_per_sample_durations = true;
            // Offsets of each sample's duration field.
            let mut at = body_at + 8;
            if flags & DATA_OFFSET_PRESENT != 0 {
                at += 4;
            }
            if flags & FIRST_SAMPLE_FLAGS_PRESENT != 0 {
                at += 4;
            }
            let stride = [
                SAMPLE_DURATION_PRESENT,
                SAMPLE_SIZE_PRESENT,
                SAMPLE_FLAGS_PRESENT,
                SAMPLE_COMPOSITION_TIME_OFFSETS_PRESENT,
            ]
            .iter()
            .filter(|bit| flags & **bit != 0)
            .count()
                * 4;
            let count = body.bounded_count(u64::from(count), 0)?;
            let data = body.rest();
            for i in 0..count {
                let offset = i * stride;
                let Some(raw) = data.get(offset..offset + 4) else {
                    break;
                };
                let value = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
                fields.push(Field::Duration {
                    at: at + offset,
                    track_id,
                    value,
                    samples: 1,
                });
            }
        }
    }
    if let Some((header, body_at)) = tfhd
        && samples_without_field > 0
    {
        match header.default_sample_duration {
            Some(value) => {
                // flags, track id, then base data offset and sample description index
                // if present, then the default duration.
                let mut at = body_at + 8;
                if header.base_data_offset.is_some() {
                    at += 8;
                }
                if header.sample_description_index.is_some() {
                    at += 4;
                }
                fields.push(Field::Duration {
                    at,
                    track_id: header.track_id,
                    value,
                    samples: samples_without_field,
                });
            }
            None if !has_per_sample_durations => fields.push(Field::Defaulted {
                track_id: header.track_id,
                samples: samples_without_field,
            }),
            None => {}
        }
    }
    Ok(())
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

/// Concatenates buffers (tests, `package`).
pub fn concat<'a>(parts: impl IntoIterator<Item = &'a Bytes>) -> Bytes {
    let parts: Vec<&Bytes> = parts.into_iter().collect();
    let mut out = BytesMut::with_capacity(parts.iter().map(|b| b.len()).sum());
    for part in parts {
        out.put_slice(part);
    }
    out.freeze()
}
