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
    Mfhd, Moof, SAMPLE_DURATION_PRESENT, Tfdt, Tfhd, Trun, first_sample_offset, per_sample_len,
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

/// A field to patch, where it sits in the fragment's bytes. `traf` is the track fragment's
/// position in the moof, which is also its run's position in [`Fragment::runs`] (a moof may
/// hold two track fragments of one track).
enum Field {
    Sequence {
        at: usize,
    },
    DecodeTime {
        at: usize,
        traf: usize,
        version: u8,
        value: u64,
    },
    /// `tfhd` default sample duration, or one `trun` sample's duration.
    Duration {
        at: usize,
        traf: usize,
        value: u32,
        samples: u32,
    },
    /// A track fragment whose samples take their duration from `trex`: there is no field to
    /// patch.
    Defaulted {
        traf: usize,
        samples: u32,
    },
    /// The media time of the `prft` before the moof, which moves with its track's times.
    ProducerTime {
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
    apply(
        fragment,
        &Rewrite {
            shifts,
            sequence,
            fill_durations: &[],
        },
    )
}

/// What a rewrite changes in each track fragment, by position.
struct Plan {
    /// New decode time per track fragment that has a `tfdt`.
    times: Vec<(usize, u64)>,
    /// Duration to give the zero-duration samples of a track fragment, and how much that adds.
    fills: Vec<(usize, u32, u64)>,
    /// New media time of the `prft`, if it moves.
    prft_time: Option<u64>,
    /// Whether every change fits the existing fields.
    fits: bool,
}

/// Applies every change in `rewrite`.
pub fn apply(fragment: Fragment, rewrite: &Rewrite<'_>) -> Result<Fragment> {
    let fields = locate(&fragment)?;
    let track_of = |traf: usize| fragment.runs.get(traf).map(|r| r.track_id);
    let shift_of = |traf: usize| {
        track_of(traf)
            .and_then(|track| rewrite.shifts.iter().find(|s| s.track_id == track))
            .map_or(0, |s| s.ticks)
    };
    let fill_of = |traf: usize| {
        track_of(traf)
            .and_then(|track| {
                rewrite
                    .fill_durations
                    .iter()
                    .find(|f| f.track_id == track && f.duration > 0)
            })
            .map(|f| f.duration)
    };
    let mut plan = Plan {
        times: Vec::with_capacity(2),
        fills: Vec::new(),
        prft_time: None,
        fits: true,
    };
    for field in &fields {
        match *field {
            Field::DecodeTime {
                traf,
                version,
                value,
                ..
            } => {
                let shifted = shift_time(value, shift_of(traf)).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Overflow("shifted decode time out of range"),
                        fragment.offset,
                        Default::default(),
                    )
                })?;
                if version == 0 && shifted > u64::from(u32::MAX) {
                    plan.fits = false;
                }
                plan.times.push((traf, shifted));
            }
            Field::Duration {
                traf,
                value: 0,
                samples,
                ..
            } => {
                if let Some(duration) = fill_of(traf) {
                    plan.fills
                        .push((traf, duration, u64::from(samples) * u64::from(duration)));
                }
            }
            Field::Defaulted { traf, samples } => {
                // The duration comes from trex, which only the splitter's summary saw: fill
                // only what that summary found to last 0.
                let lasts_zero = fragment.runs.get(traf).is_some_and(|r| r.duration == 0);
                if let Some(duration) = fill_of(traf).filter(|_| lasts_zero) {
                    plan.fits = false;
                    plan.fills
                        .push((traf, duration, u64::from(samples) * u64::from(duration)));
                }
            }
            Field::ProducerTime {
                version,
                track_id,
                value,
                ..
            } => {
                let ticks = rewrite
                    .shifts
                    .iter()
                    .find(|s| s.track_id == track_id)
                    .map_or(0, |s| s.ticks);
                if ticks != 0 {
                    let shifted = shift_time(value, ticks).ok_or_else(|| {
                        Error::new(
                            ErrorKind::Overflow("shifted prft media time out of range"),
                            fragment.offset,
                            Default::default(),
                        )
                    })?;
                    if version == 0 && shifted > u64::from(u32::MAX) {
                        plan.fits = false;
                    }
                    plan.prft_time = Some(shifted);
                }
            }
            Field::Duration { .. } | Field::Sequence { .. } => {}
        }
    }
    let mut fragment = if plan.fits {
        patch_in_place(fragment, &fields, &plan, rewrite.sequence)
    } else {
        reencode(fragment, &plan, rewrite.sequence)?
    };
    for (index, run) in fragment.runs.iter_mut().enumerate() {
        if let Some((_, time)) = plan.times.iter().find(|(traf, _)| *traf == index) {
            run.decode_time = *time;
        }
        for (_, _, added) in plan.fills.iter().filter(|(traf, _, _)| *traf == index) {
            run.duration = run.duration.saturating_add(*added);
        }
    }
    if let Some(sequence) = rewrite.sequence {
        fragment.sequence = sequence;
    }
    if let (Some(prft), Some(time)) = (fragment.prft.as_mut(), plan.prft_time) {
        prft.media_time = time;
        if time > u64::from(u32::MAX) {
            prft.version = 1;
        }
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
    plan: &Plan,
    sequence: Option<u32>,
) -> Fragment {
    let bytes = std::mem::take(&mut fragment.bytes);
    let mut buf = bytes
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
    for field in fields {
        match *field {
            Field::Sequence { at } => {
                if let Some(sequence) = sequence {
                    put_at(&mut buf, at, &sequence.to_be_bytes());
                }
            }
            Field::DecodeTime {
                at, traf, version, ..
            } => {
                let Some((_, time)) = plan.times.iter().find(|(t, _)| *t == traf) else {
                    continue;
                };
                if version == 1 {
                    put_at(&mut buf, at, &time.to_be_bytes());
                } else {
                    // Checked by the plan: the time fits in 32 bits.
                    put_at(&mut buf, at, &(*time as u32).to_be_bytes());
                }
            }
            Field::Duration {
                at, traf, value: 0, ..
            } => {
                if let Some((_, duration, _)) = plan.fills.iter().find(|(t, _, _)| *t == traf) {
                    put_at(&mut buf, at, &duration.to_be_bytes());
                }
            }
            Field::ProducerTime { at, version, .. } => {
                if let Some(time) = plan.prft_time {
                    if version == 1 {
                        put_at(&mut buf, at, &time.to_be_bytes());
                    } else {
                        // Checked by the plan: the time fits in 32 bits.
                        put_at(&mut buf, at, &(time as u32).to_be_bytes());
                    }
                }
            }
            Field::Duration { .. } | Field::Defaulted { .. } => {}
        }
    }
    fragment.bytes = buf.freeze();
    fragment
}

fn reencode(fragment: Fragment, plan: &Plan, sequence: Option<u32>) -> Result<Fragment> {
    let moof_end = fragment.mdat_start;
    let moof_bytes = fragment.bytes.slice(fragment.moof_start..moof_end);
    let mut moof = Moof::decode_at(&moof_bytes, fragment.offset + fragment.moof_start as u64)?;
    let old_len = moof.encoded_len();
    if let Some(sequence) = sequence {
        moof.mfhd = Mfhd {
            sequence_number: sequence,
        };
    }
    for (index, traf) in moof.traf.iter_mut().enumerate() {
        if let (Some(tfdt), Some((_, time))) = (
            traf.tfdt.as_mut(),
            plan.times.iter().find(|(t, _)| *t == index),
        ) {
            // Keep the version the encoder chose unless the time needs 64 bits.
            tfdt.base_media_decode_time = *time;
            if *time > u64::from(u32::MAX) {
                tfdt.version = 1;
            }
        }
        if let Some((_, duration, _)) = plan.fills.iter().find(|(t, _, _)| *t == index) {
            fill_traf_durations(&mut traf.tfhd, &mut traf.trun, *duration);
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
    let mut out = BytesMut::with_capacity(fragment.bytes.len() + growth.max(0) as usize + 4);
    write_prefix(&fragment, plan.prft_time, &mut out)?;
    let moof_start = out.len();
    moof.encode(&mut out);
    let mdat_start = out.len();
    out.put_slice(&fragment.bytes[moof_end..]);
    let data_starts = moved_data(
        &fragment,
        &moof,
        mdat_start as i64 - fragment.mdat_start as i64,
    );
    Ok(Fragment {
        bytes: out.freeze(),
        moof_start,
        mdat_start,
        data_starts,
        ..fragment
    })
}

/// The bytes of a fragment (`[prefix] moof mdat`) whose track fragments lack a `tfdt` (older
/// muxers' and Smooth Streaming's fragments, timed only by their order), with one added to
/// each, version 1, at the decode time `time_of(track_id, tfxd)` gives from the time in a
/// Smooth Streaming `tfxd` box of the track fragment, if it has one (or else from the end of
/// the track's previous fragment). Data offsets counted from the moof move with it. `None` when no track
/// fragment lacks one.
pub fn add_missing_tfdt(
    bytes: &Bytes,
    offset: u64,
    mut time_of: impl FnMut(u32, Option<u64>) -> u64,
) -> Result<Option<Bytes>> {
    let mut r = Reader::new(bytes, offset);
    let mut moof_at = None;
    while let Some(child) = r.next_box()? {
        if child.kind() == MOOF {
            moof_at = Some((child.start(), child.start() + child.len()));
            break;
        }
    }
    let Some((moof_start, moof_end)) = moof_at else {
        return Ok(None);
    };
    let moof_bytes = bytes.slice(moof_start..moof_end);
    let mut moof = Moof::decode_at(&moof_bytes, offset + moof_start as u64)?;
    if moof.traf.iter().all(|t| t.tfdt.is_some()) {
        return Ok(None);
    }
    let old_len = moof.encoded_len();
    for traf in &mut moof.traf {
        if traf.tfdt.is_none() {
            traf.tfdt = Some(Tfdt {
                version: 1,
                base_media_decode_time: time_of(traf.tfhd.track_id, traf.smooth_time()),
            });
        }
    }
    let growth = moof.encoded_len() as i64 - old_len as i64;
    for traf in &mut moof.traf {
        if traf.tfhd.base_data_offset.is_some() {
            continue;
        }
        for trun in &mut traf.trun {
            if let Some(data_offset) = trun.data_offset.as_mut() {
                *data_offset = i32::try_from(i64::from(*data_offset) + growth).map_err(|_| {
                    Error::new(
                        ErrorKind::Overflow("trun data offset"),
                        offset,
                        Default::default(),
                    )
                })?;
            }
        }
    }
    let mut out = BytesMut::with_capacity(bytes.len() + growth.max(0) as usize);
    out.put_slice(&bytes[..moof_start]);
    moof.encode(&mut out);
    out.put_slice(&bytes[moof_end..]);
    Ok(Some(out.freeze()))
}

/// Where each track fragment's data is once the mdat moved by `shift`: moved with it, or
/// unknown where an absolute `base_data_offset` placed it.
fn moved_data(fragment: &Fragment, moof: &Moof, shift: i64) -> Vec<Option<usize>> {
    fragment
        .data_starts
        .iter()
        .zip(&moof.traf)
        .map(|(start, traf)| {
            if traf.tfhd.base_data_offset.is_some() {
                return None;
            }
            start.and_then(|s| usize::try_from(s as i64 + shift).ok())
        })
        .collect()
}

/// Copies the boxes before the moof, with the `prft` media time set to `prft_time`.
fn write_prefix(fragment: &Fragment, prft_time: Option<u64>, out: &mut BytesMut) -> Result<()> {
    let prefix = fragment.bytes.slice(..fragment.moof_start);
    let Some(time) = prft_time else {
        out.put_slice(&prefix);
        return Ok(());
    };
    let mut r = Reader::new(&prefix, fragment.offset);
    while let Some(child) = r.next_box()? {
        if child.kind() == Prft::KIND {
            let mut prft = child.decode::<Prft>()?;
            prft.media_time = time;
            if time > u64::from(u32::MAX) {
                prft.version = 1;
            }
            prft.encode(out);
        } else {
            out.put_slice(&child.raw().bytes);
        }
    }
    Ok(())
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
        if moof.kind() == Prft::KIND {
            let at = moof.start() + usize::from(moof.header.header_len) + Prft::MEDIA_TIME_OFFSET;
            let prft = moof.decode::<Prft>()?;
            fields.push(Field::ProducerTime {
                at,
                version: prft.version,
                track_id: prft.reference_track_id,
                value: prft.media_time,
            });
            continue;
        }
        if moof.kind() != MOOF {
            continue;
        }
        let moof_body = moof.body();
        let mut traf = 0;
        while let Some(mut child) = moof_body.next_box()? {
            let body_at = child.start() + usize::from(child.header.header_len);
            if child.kind() == Mfhd::KIND {
                fields.push(Field::Sequence {
                    at: body_at + Mfhd::SEQUENCE_OFFSET,
                });
            } else if child.kind() == TRAF {
                locate_in_traf(child.body(), traf, &mut fields)?;
                traf += 1;
            }
        }
        break;
    }
    Ok(fields)
}

fn locate_in_traf(body: &mut Reader<'_>, traf: usize, fields: &mut Vec<Field>) -> Result<()> {
    let mut tfhd: Option<(Tfhd, usize)> = None;
    let mut samples_without_field = 0u32;
    let mut has_per_sample_durations = false;
    while let Some(mut part) = body.next_box()? {
        let body_at = part.start() + usize::from(part.header.header_len);
        if part.kind() == Tfhd::KIND {
            tfhd = Some((part.decode::<Tfhd>()?, body_at));
        } else if part.kind() == Tfdt::KIND {
            let tfdt = part.decode::<Tfdt>()?;
            fields.push(Field::DecodeTime {
                at: body_at + Tfdt::DECODE_TIME_OFFSET,
                traf,
                version: tfdt.version,
                value: tfdt.base_media_decode_time,
            });
        } else if part.kind() == Trun::KIND {
            let trun = part.body();
            let (_version, flags) = trun.full_header()?;
            let count = trun.u32()?;
            if flags & SAMPLE_DURATION_PRESENT == 0 {
                samples_without_field = samples_without_field.saturating_add(count);
                continue;
            }
            has_per_sample_durations = true;
            // Each sample's duration, the first field of its entry; the reader stands after
            // the sample count, 8 bytes into the body.
            let first = first_sample_offset(flags);
            let stride = per_sample_len(flags);
            let count = trun.bounded_count(u64::from(count), stride)?;
            for i in 0..count {
                let offset = i * stride;
                let mut sample = trun.clone();
                sample.skip(offset + first - 8)?;
                fields.push(Field::Duration {
                    at: body_at + first + offset,
                    traf,
                    value: sample.u32()?,
                    samples: 1,
                });
            }
        }
    }
    let Some((header, body_at)) = tfhd else {
        return Ok(());
    };
    if samples_without_field == 0 {
        return Ok(());
    }
    match header.default_sample_duration {
        Some(value) => {
            fields.push(Field::Duration {
                at: body_at + header.default_duration_offset(),
                traf,
                value,
                samples: samples_without_field,
            });
        }
        None if !has_per_sample_durations => fields.push(Field::Defaulted {
            traf,
            samples: samples_without_field,
        }),
        None => {}
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
    let data_starts = fragment
        .data_starts
        .iter()
        .map(|s| s.and_then(|s| usize::try_from(s as i64 + growth).ok()))
        .collect();
    Ok(Fragment {
        bytes: out.freeze(),
        moof_start,
        mdat_start,
        data_starts,
        prft: Some(*prft),
        ..fragment
    })
}
