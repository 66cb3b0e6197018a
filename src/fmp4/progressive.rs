//! Progressive MP4, the everyday file (a phone's video, a camera's clip, an export): every
//! sample listed in the `moov` sample tables (ISO/IEC 14496-12 §8.6–§8.7) and the media in one
//! `mdat` before or after it. Read here into a sample index, then written out as fragments
//! cut at the video track's key frames, for the same segmenter and manifests as live input.
//!
//! ```text
//! stbl > stts   decode-time deltas, run-length          §8.6.1.2
//!      > ctts   composition offsets, v0 or v1           §8.6.1.3 (v0 read signed, as ffmpeg)
//!      > stss   sync samples (none: every sample is)   §8.6.2
//!      > stsz | stz2  sample sizes                      §8.7.3
//!      > stsc   samples per chunk, run-length           §8.7.4
//!      > stco | co64  chunk offsets in the file         §8.7.5
//! edts > elst   where presentation starts              §8.6.6
//! ```
//!
//! Pure: the `moov` in, a sample index out, with every count checked against the bytes that
//! hold it before anything is allocated, every sample checked to lie inside the file, and at
//! most [`MAX_SAMPLES`] samples a track. The media itself is not read here: the caller reads
//! each fragment's byte ranges straight into the buffer [`fragment_header`] starts, the one
//! copy the bytes make.

use bytes::{Bytes, BytesMut};

use super::moof::{
    Mfhd, SAMPLE_COMPOSITION_TIME_OFFSETS_PRESENT, SAMPLE_DURATION_PRESENT, SAMPLE_FLAGS_PRESENT,
    SAMPLE_SIZE_PRESENT, Tfdt, Tfhd, Traf, Trun, TrunSample,
};
use super::moov::{AUDIO, Moov, Trak, VIDEO};
use super::writer::{NON_SYNC_SAMPLE_FLAGS, SYNC_SAMPLE_FLAGS, empty_table, mvex_for};
use super::{Atom, BoxPath, Error, ErrorKind, FourCC, Ftyp, Moof, RawBox, Reader, Result, mdat};

/// The most samples one track may list: 2^23, 39 hours at 60 frames a second, or 48 hours
/// of 48 kHz AAC. At 32 bytes a sample the index of such a track is 256 MiB.
pub const MAX_SAMPLES: usize = 1 << 23;

/// One sample: where it is in the file and when it plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleRef {
    pub offset: u64,
    pub size: u32,
    pub duration: u32,
    pub decode_time: u64,
    pub composition_offset: i32,
    pub sync: bool,
}

/// What a track is, from its handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Video,
    Audio,
    Other,
}

/// One track's samples, in decode order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackSamples {
    pub track_id: u32,
    pub timescale: u32,
    pub kind: Kind,
    pub samples: Vec<SampleRef>,
    /// The media time presentation starts at, as ffmpeg takes it from the edit list: the
    /// first non-empty edit's `media_time` (0 without one). With B-frames ffmpeg writes the
    /// first composition offset here, so that the first picture shows at 0.
    pub edit_media_time: i64,
}

impl TrackSamples {
    /// The track's length in seconds, by its decode times.
    pub fn duration_secs(&self) -> f64 {
        let end = self
            .samples
            .last()
            .map_or(0, |s| s.decode_time + u64::from(s.duration));
        end as f64 / f64::from(self.timescale.max(1))
    }
}

fn bad(kind: ErrorKind, path: BoxPath) -> Error {
    Error::new(kind, 0, path)
}

/// Where a sample table sits, for errors (its byte offset is not known here).
fn path_of(kind: &[u8; 4]) -> BoxPath {
    let mut path = BoxPath::root();
    for k in [b"moov", b"trak", b"mdia", b"minf", b"stbl", kind] {
        path = path.push(FourCC::new(k)).unwrap_or(path);
    }
    path
}

/// A child of `stbl` by type, its body in a reader (absolute offsets are not known here: errors
/// name the box path).
fn table<'a>(boxes: &'a [RawBox], kind: &[u8; 4]) -> Option<&'a RawBox> {
    boxes.iter().find(|b| b.kind == FourCC::new(kind))
}

/// Reads a table box's full header and hands its body to `read`.
fn with_body<T>(raw: &RawBox, read: impl FnOnce(&mut Reader<'_>, u8) -> Result<T>) -> Result<T> {
    let mut outer = Reader::new(&raw.bytes, 0);
    let mut child = outer
        .next_box()?
        .ok_or_else(|| outer.error(ErrorKind::MissingBox(raw.kind)))?;
    let body = child.body();
    let (version, _) = body.full_header()?;
    read(body, version)
}

/// Every track's sample index from a progressive `moov`, checked against a file of
/// `file_len` bytes.
pub fn sample_tables(moov: &Moov, file_len: u64) -> Result<Vec<TrackSamples>> {
    moov.trak
        .iter()
        .map(|trak| track_samples(trak, file_len))
        .collect()
}

/// Whether a `moov` lists samples itself (a progressive file, or one whose first samples are
/// in the `moov` before any fragment).
pub fn has_samples(moov: &Moov) -> bool {
    moov.trak.iter().any(|trak| {
        let boxes = &trak.mdia.minf.stbl.unknown;
        table(boxes, b"stsz")
            .or_else(|| table(boxes, b"stz2"))
            .and_then(|raw| {
                with_body(raw, |r, _| {
                    r.u32()?;
                    r.u32()
                })
                .ok()
            })
            .is_some_and(|count| count > 0)
    })
}

fn track_samples(trak: &Trak, file_len: u64) -> Result<TrackSamples> {
    let track_id = trak.tkhd.track_id;
    let timescale = trak.mdia.mdhd.timescale;
    let kind = match trak.mdia.hdlr.handler_type {
        VIDEO => Kind::Video,
        AUDIO => Kind::Audio,
        _ => Kind::Other,
    };
    let boxes = &trak.mdia.minf.stbl.unknown;
    let missing = |k: &[u8; 4]| bad(ErrorKind::MissingBox(FourCC::new(k)), path_of(k));

    let sizes = if let Some(raw) = table(boxes, b"stsz") {
        read_stsz(raw)?
    } else if let Some(raw) = table(boxes, b"stz2") {
        read_stz2(raw)?
    } else {
        return Err(missing(b"stsz"));
    };
    let count = sizes.len();
    if count > MAX_SAMPLES {
        return Err(bad(
            ErrorKind::TooLarge {
                size: count as u64,
                max: MAX_SAMPLES as u64,
            },
            path_of(b"stsz"),
        ));
    }
    let chunks = if let Some(raw) = table(boxes, b"stco") {
        read_offsets(raw, false)?
    } else if let Some(raw) = table(boxes, b"co64") {
        read_offsets(raw, true)?
    } else if count == 0 {
        Vec::new()
    } else {
        return Err(missing(b"stco"));
    };
    let stsc = match table(boxes, b"stsc") {
        Some(raw) => read_stsc(raw)?,
        None if count == 0 => Vec::new(),
        None => return Err(missing(b"stsc")),
    };
    let deltas = match table(boxes, b"stts") {
        Some(raw) => read_runs(raw)?,
        None if count == 0 => Vec::new(),
        None => return Err(missing(b"stts")),
    };
    let offsets = match table(boxes, b"ctts") {
        Some(raw) => read_runs(raw)?,
        None => Vec::new(),
    };
    let sync = match table(boxes, b"stss") {
        Some(raw) => Some(read_stss(raw)?),
        None => None,
    };

    let mut samples = Vec::with_capacity(count);
    // Chunk offsets and samples per chunk give each sample's place in the file.
    let path = path_of(b"stsc");
    let mut entry = 0;
    let mut n = 0usize;
    'chunks: for (chunk_index, &chunk_offset) in chunks.iter().enumerate() {
        let chunk = chunk_index as u64 + 1;
        while entry + 1 < stsc.len() && stsc[entry + 1].0 <= chunk {
            entry += 1;
        }
        let Some(&(first, per_chunk)) = stsc.get(entry) else {
            return Err(bad(ErrorKind::InvalidValue("stsc has no entries"), path));
        };
        if first > chunk {
            return Err(bad(
                ErrorKind::InvalidValue("stsc's first entry starts after chunk 1"),
                path,
            ));
        }
        let mut at = chunk_offset;
        for _ in 0..per_chunk {
            let Some(&size) = sizes.get(n) else {
                break 'chunks;
            };
            let end = at
                .checked_add(u64::from(size))
                .ok_or_else(|| bad(ErrorKind::Overflow("sample offset"), path))?;
            if end > file_len {
                return Err(bad(
                    ErrorKind::SampleOutsideFile {
                        track: track_id,
                        sample: n as u64 + 1,
                        end,
                        file_len,
                    },
                    path_of(b"stco"),
                ));
            }
            samples.push(SampleRef {
                offset: at,
                size,
                duration: 0,
                decode_time: 0,
                composition_offset: 0,
                sync: sync.is_none(),
            });
            at = end;
            n += 1;
        }
    }
    if samples.len() != count {
        return Err(bad(
            ErrorKind::InvalidValue("stsc and stco place fewer samples than stsz lists"),
            path,
        ));
    }

    // Decode times from the deltas.
    let mut time = 0u64;
    let mut next = samples.iter_mut();
    let mut timed = 0usize;
    for &(run, delta) in &deltas {
        for _ in 0..run {
            let Some(sample) = next.next() else {
                return Err(bad(
                    ErrorKind::InvalidValue("stts lists more samples than stsz"),
                    path_of(b"stts"),
                ));
            };
            sample.decode_time = time;
            sample.duration = delta;
            time = time
                .checked_add(u64::from(delta))
                .ok_or_else(|| bad(ErrorKind::Overflow("decode time"), path_of(b"stts")))?;
            timed += 1;
        }
    }
    if timed != count {
        return Err(bad(
            ErrorKind::InvalidValue("stts lists fewer samples than stsz"),
            path_of(b"stts"),
        ));
    }
    let mut next = samples.iter_mut();
    'offsets: for &(run, offset) in &offsets {
        for _ in 0..run {
            let Some(sample) = next.next() else {
                break 'offsets;
            };
            // Read signed whatever the version, as ffmpeg does: writers put negative
            // offsets in version 0 too.
            sample.composition_offset = offset as i32;
        }
    }
    if let Some(numbers) = sync {
        for number in numbers {
            let sample = usize::try_from(number)
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| samples.get_mut(i))
                .ok_or_else(|| {
                    bad(
                        ErrorKind::InvalidValue("stss names a sample past the last"),
                        path_of(b"stss"),
                    )
                })?;
            sample.sync = true;
        }
    }
    Ok(TrackSamples {
        track_id,
        timescale,
        kind,
        samples,
        edit_media_time: edit_media_time(trak)?,
    })
}

fn read_stsz(raw: &RawBox) -> Result<Vec<u32>> {
    with_body(raw, |r, _| {
        let constant = r.u32()?;
        let count = r.u32()?;
        if constant != 0 {
            let count = usize::try_from(count).unwrap_or(usize::MAX);
            if count > MAX_SAMPLES {
                return Err(r.error(ErrorKind::TooLarge {
                    size: count as u64,
                    max: MAX_SAMPLES as u64,
                }));
            }
            return Ok(vec![constant; count]);
        }
        let count = r.bounded_count(u64::from(count), 4)?;
        (0..count).map(|_| r.u32()).collect()
    })
}

fn read_stz2(raw: &RawBox) -> Result<Vec<u32>> {
    with_body(raw, |r, _| {
        r.skip(3)?;
        let field = r.u8()?;
        let count = u64::from(r.u32()?);
        match field {
            4 => {
                let bytes = r.bounded_count(count.div_ceil(2), 1)?;
                let packed = r.bytes(bytes)?;
                Ok((0..count as usize)
                    .map(|i| {
                        let byte = packed[i / 2];
                        u32::from(if i % 2 == 0 { byte >> 4 } else { byte & 0x0f })
                    })
                    .collect())
            }
            8 => {
                let count = r.bounded_count(count, 1)?;
                (0..count).map(|_| r.u8().map(u32::from)).collect()
            }
            16 => {
                let count = r.bounded_count(count, 2)?;
                (0..count).map(|_| r.u16().map(u32::from)).collect()
            }
            _ => Err(r.error(ErrorKind::InvalidValue("stz2 field size is not 4, 8 or 16"))),
        }
    })
}

fn read_offsets(raw: &RawBox, wide: bool) -> Result<Vec<u64>> {
    with_body(raw, |r, _| {
        let count = u64::from(r.u32()?);
        let count = r.bounded_count(count, if wide { 8 } else { 4 })?;
        (0..count)
            .map(|_| {
                if wide {
                    r.u64()
                } else {
                    r.u32().map(u64::from)
                }
            })
            .collect()
    })
}

/// `stsc` entries as (first chunk, samples per chunk), first chunks strictly increasing.
fn read_stsc(raw: &RawBox) -> Result<Vec<(u64, u32)>> {
    with_body(raw, |r, _| {
        let count = u64::from(r.u32()?);
        let count = r.bounded_count(count, 12)?;
        let mut out: Vec<(u64, u32)> = Vec::with_capacity(count);
        for _ in 0..count {
            let first = u64::from(r.u32()?);
            let per_chunk = r.u32()?;
            r.u32()?; // sample_description_index
            if first == 0 || out.last().is_some_and(|(last, _)| *last >= first) {
                return Err(r.error(ErrorKind::OutOfOrder("stsc first chunks")));
            }
            out.push((first, per_chunk));
        }
        Ok(out)
    })
}

/// `stts` or `ctts` as (count, value) runs.
fn read_runs(raw: &RawBox) -> Result<Vec<(u32, u32)>> {
    with_body(raw, |r, _| {
        let count = u64::from(r.u32()?);
        let count = r.bounded_count(count, 8)?;
        (0..count).map(|_| Ok((r.u32()?, r.u32()?))).collect()
    })
}

fn read_stss(raw: &RawBox) -> Result<Vec<u32>> {
    with_body(raw, |r, _| {
        let count = u64::from(r.u32()?);
        let count = r.bounded_count(count, 4)?;
        (0..count).map(|_| r.u32()).collect()
    })
}

/// Where an init segment's edit list starts `track`'s presentation: the first non-empty
/// edit's media time (in the track's timescale), 0 without one or without such a track.
pub fn edit_start(init: &crate::fmp4::InitSegment, track: u32) -> Result<i64> {
    let mut r = Reader::new(&init.bytes, 0);
    while let Some(child) = r.next_box()? {
        if child.kind() == Moov::KIND {
            let moov = child.decode::<Moov>()?;
            return match moov.trak.iter().find(|t| t.tkhd.track_id == track) {
                Some(trak) => edit_media_time(trak),
                None => Ok(0),
            };
        }
    }
    Ok(0)
}

/// The first non-empty edit's media time, 0 without an edit list.
fn edit_media_time(trak: &Trak) -> Result<i64> {
    let Some(edts) = &trak.edts else {
        return Ok(0);
    };
    let mut body = Reader::new(&edts.body, 0);
    while let Some(mut child) = body.next_box()? {
        if child.kind() != FourCC::new(b"elst") {
            continue;
        }
        let r = child.body();
        let (version, _) = r.full_header()?;
        let count = u64::from(r.u32()?);
        let count = r.bounded_count(count, if version == 1 { 20 } else { 12 })?;
        for _ in 0..count {
            let media_time = if version == 1 {
                r.u64()?;
                r.u64()? as i64
            } else {
                r.u32()?;
                i64::from(r.i32()?)
            };
            r.u32()?; // media_rate
            if media_time >= 0 {
                return Ok(media_time);
            }
        }
    }
    Ok(0)
}

const SAMPLE_TABLES: [&[u8; 4]; 12] = [
    b"stts", b"ctts", b"cslg", b"stss", b"stsh", b"sdtp", b"stsz", b"stz2", b"stsc", b"stco",
    b"co64", b"sbgp",
];

/// The init segment (`ftyp` and `moov`) of the fragmented form of a progressive file: its
/// tracks and sample descriptions as they were, its edit lists kept, the sample tables
/// emptied (§8.8.1: fragments list the samples), durations zeroed (the fragments say how long
/// it is), and a `trex` per track unless it has its own.
pub fn fragmented_init(moov: &Moov) -> Bytes {
    let mut moov = moov.clone();
    moov.mvhd.duration = 0;
    for trak in &mut moov.trak {
        trak.tkhd.duration = 0;
        trak.mdia.mdhd.duration = 0;
        let stbl = &mut trak.mdia.minf.stbl;
        stbl.unknown
            .retain(|raw| !SAMPLE_TABLES.iter().any(|k| raw.kind == FourCC::new(k)));
        // stts, stsc, stco: a zero entry count; stsz: sample size and count zero.
        stbl.unknown.push(empty_table(b"stts", 1));
        stbl.unknown.push(empty_table(b"stsc", 1));
        stbl.unknown.push(empty_table(b"stsz", 2));
        stbl.unknown.push(empty_table(b"stco", 1));
    }
    // A file that goes on in fragments has its own trex defaults, which they rely on.
    if moov.mvex.is_none() {
        moov.mvex = Some(mvex_for(&moov.trak));
    }
    let brands: &[&[u8; 4]] = &[b"iso6", b"isom", b"mp41"];
    let ftyp = Ftyp {
        major_brand: FourCC::new(b"iso6"),
        minor_version: 0,
        compatible_brands: brands.iter().map(|b| FourCC::new(b)).collect(),
    };
    let mut out = BytesMut::with_capacity(ftyp.encoded_len() + moov.encoded_len());
    ftyp.encode(&mut out);
    moov.encode(&mut out);
    out.freeze()
}

/// One track's part of a fragment: consecutive samples of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run<'a> {
    pub track_id: u32,
    pub samples: &'a [SampleRef],
}

/// A fragment's `moof` and `mdat` header, in a buffer with room for the media that follows:
/// each run's samples in order, run after run (the caller reads them from the file into it).
/// Returns the buffer and the number of media bytes it expects.
pub fn fragment_header(sequence: u32, runs: &[Run<'_>]) -> (BytesMut, u64) {
    let trafs = runs
        .iter()
        .filter(|run| !run.samples.is_empty())
        .map(|run| Traf {
            tfhd: Tfhd {
                track_id: run.track_id,
                base_data_offset: None,
                sample_description_index: None,
                default_sample_duration: None,
                default_sample_size: None,
                default_sample_flags: None,
                // default-base-is-moof.
                other_flags: 0x02_0000,
            },
            tfdt: Some(Tfdt {
                version: 1,
                base_media_decode_time: run.samples[0].decode_time,
            }),
            trun: vec![Trun {
                version: u8::from(run.samples.iter().any(|s| s.composition_offset < 0)),
                data_offset: Some(0),
                first_sample_flags: None,
                sample_fields: SAMPLE_DURATION_PRESENT
                    | SAMPLE_SIZE_PRESENT
                    | SAMPLE_FLAGS_PRESENT
                    | SAMPLE_COMPOSITION_TIME_OFFSETS_PRESENT,
                sample_count: run.samples.len() as u32,
                samples: run
                    .samples
                    .iter()
                    .map(|s| TrunSample {
                        duration: s.duration,
                        size: s.size,
                        flags: if s.sync {
                            SYNC_SAMPLE_FLAGS
                        } else {
                            NON_SYNC_SAMPLE_FLAGS
                        },
                        composition_offset: i64::from(s.composition_offset),
                    })
                    .collect(),
            }],
            unknown: Vec::new(),
        })
        .collect::<Vec<_>>();
    let sizes: Vec<u64> = runs
        .iter()
        .filter(|run| !run.samples.is_empty())
        .map(|run| run.samples.iter().map(|s| u64::from(s.size)).sum())
        .collect();
    let media: u64 = sizes.iter().sum();
    let mut moof = Moof {
        mfhd: Mfhd {
            sequence_number: sequence,
        },
        traf: trafs,
        unknown: Vec::new(),
    };
    let mdat_header = mdat::header_len(media);
    let moof_len = moof.encoded_len();
    let mut offset = (moof_len + mdat_header) as u64;
    for (traf, size) in moof.traf.iter_mut().zip(&sizes) {
        if let Some(trun) = traf.trun.first_mut() {
            trun.data_offset = i32::try_from(offset).ok();
        }
        offset += size;
    }
    let capacity = usize::try_from(media).unwrap_or(0) + moof_len + mdat_header;
    let mut out = BytesMut::with_capacity(capacity);
    moof.encode(&mut out);
    mdat::put_header(&mut out, media);
    (out, media)
}

/// Where fragments start: one per key frame of the lead track (the first video track, else
/// the first track) and, with `fragment_secs`, also every that many seconds inside a group of
/// pictures (for low-latency players' parts). Each fragment holds, of every other track, the
/// samples that start before the next fragment does. Returns per fragment, per track (in
/// `tracks` order), the range of sample indices.
pub fn plan_fragments(
    tracks: &[TrackSamples],
    fragment_secs: Option<f64>,
) -> Vec<Vec<std::ops::Range<usize>>> {
    let Some(lead) = tracks
        .iter()
        .position(|t| t.kind == Kind::Video && !t.samples.is_empty())
        .or_else(|| tracks.iter().position(|t| !t.samples.is_empty()))
    else {
        return Vec::new();
    };
    let lead_track = &tracks[lead];
    let scale = f64::from(lead_track.timescale.max(1));
    // The lead track's cut points: sample indices a fragment starts at.
    let mut cuts = vec![0usize];
    let mut last_cut_time = lead_track.samples[0].decode_time as f64 / scale;
    for (i, sample) in lead_track.samples.iter().enumerate().skip(1) {
        let time = sample.decode_time as f64 / scale;
        let due = fragment_secs.is_some_and(|secs| time - last_cut_time >= secs - 1e-9);
        // A key frame always starts a fragment when there is no fragment duration; with one,
        // at the due time or at a key frame, whichever first.
        if sample.sync || due {
            cuts.push(i);
            last_cut_time = time;
        }
    }
    cuts.push(lead_track.samples.len());
    let mut next = vec![0usize; tracks.len()];
    let mut plan = Vec::with_capacity(cuts.len());
    for (n, pair) in cuts.windows(2).enumerate() {
        let last = n + 2 == cuts.len();
        let end_time = lead_track
            .samples
            .get(pair[1])
            .map(|s| s.decode_time as f64 / scale);
        let mut ranges = Vec::with_capacity(tracks.len());
        for (t, track) in tracks.iter().enumerate() {
            let start = next[t];
            let end = if t == lead {
                pair[1]
            } else if last {
                track.samples.len()
            } else {
                let limit = end_time.unwrap_or(f64::INFINITY);
                let ts = f64::from(track.timescale.max(1));
                let mut end = start;
                while end < track.samples.len()
                    && (track.samples[end].decode_time as f64 / ts) < limit
                {
                    end += 1;
                }
                end
            };
            next[t] = end;
            ranges.push(start..end);
        }
        plan.push(ranges);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn full_box(kind: &[u8; 4], version: u8, body: &[u8]) -> RawBox {
        let mut bytes = BytesMut::new();
        bytes.put_u32((12 + body.len()) as u32);
        bytes.put_slice(kind);
        bytes.put_u8(version);
        bytes.put_bytes(0, 3);
        bytes.put_slice(body);
        RawBox {
            kind: FourCC::new(kind),
            bytes: bytes.freeze(),
        }
    }

    fn words(values: &[u32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_be_bytes()).collect()
    }

    #[test]
    fn tables_with_counts_past_their_bytes_are_errors_before_allocation() {
        // 2^32 - 1 sample sizes claimed in 4 bytes.
        let stsz = full_box(b"stsz", 0, &words(&[0, u32::MAX, 7]));
        assert!(matches!(
            read_stsz(&stsz).map_err(|e| e.kind),
            Err(ErrorKind::CountTooLarge { .. })
        ));
        // A constant size with 2^32 - 1 samples: over the sample limit.
        let stsz = full_box(b"stsz", 0, &words(&[100, u32::MAX]));
        assert!(matches!(
            read_stsz(&stsz).map_err(|e| e.kind),
            Err(ErrorKind::TooLarge { .. })
        ));
        let stco = full_box(b"stco", 0, &words(&[1_000_000, 1]));
        assert!(read_offsets(&stco, false).is_err());
        let stsc = full_box(b"stsc", 0, &words(&[2, 5, 1, 1, 4, 3, 1]));
        assert!(matches!(
            read_stsc(&stsc).map_err(|e| e.kind),
            Err(ErrorKind::OutOfOrder(_))
        ));
    }

    #[test]
    fn stz2_packs_sizes_in_nibbles_bytes_or_halfwords() {
        let mut body = vec![0, 0, 0, 4];
        body.extend_from_slice(&3u32.to_be_bytes());
        body.extend_from_slice(&[0x12, 0x30]);
        assert_eq!(read_stz2(&full_box(b"stz2", 0, &body)), Ok(vec![1, 2, 3]));
        let mut body = vec![0, 0, 0, 16];
        body.extend_from_slice(&2u32.to_be_bytes());
        body.extend_from_slice(&[0x01, 0x00, 0xff, 0xff]);
        assert_eq!(
            read_stz2(&full_box(b"stz2", 0, &body)),
            Ok(vec![256, 65535])
        );
    }

    fn track(kind: Kind, timescale: u32, times: &[(u64, bool)]) -> TrackSamples {
        TrackSamples {
            track_id: 1,
            timescale,
            kind,
            samples: times
                .iter()
                .map(|&(t, sync)| SampleRef {
                    offset: 0,
                    size: 1,
                    duration: 1,
                    decode_time: t,
                    composition_offset: 0,
                    sync,
                })
                .collect(),
            edit_media_time: 0,
        }
    }

    #[test]
    fn fragments_start_at_the_video_key_frames_and_carry_the_audio_before_the_next() {
        // Video at 10 Hz (timescale 10), key frames at 0 and 1 s; audio at 4 Hz.
        let video = track(
            Kind::Video,
            10,
            &(0..20).map(|i| (i, i % 10 == 0)).collect::<Vec<_>>(),
        );
        let audio = track(
            Kind::Audio,
            4,
            &(0..8).map(|i| (i, true)).collect::<Vec<_>>(),
        );
        let plan = plan_fragments(&[audio.clone(), video.clone()], None);
        assert_eq!(plan, vec![vec![0..4, 0..10], vec![4..8, 10..20]]);
        // With 0.5 s fragments, also a cut in the middle of each group.
        let plan = plan_fragments(&[video, audio], Some(0.5));
        assert_eq!(plan.len(), 4);
        assert_eq!(plan[1], vec![5..10, 2..4]);
        assert!(plan_fragments(&[], None).is_empty());
    }
}
