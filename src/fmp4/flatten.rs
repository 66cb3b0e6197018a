//! Fragments back into one progressive MP4 (ISO/IEC 14496-12 §8.6–§8.7): the file a phone's
//! player, a video editor or a messaging app takes, where fragmented MP4 is not. The inverse
//! of [`super::progressive`].
//!
//! ```text
//! ftyp  isom
//! moov  mvhd, trak per track (tkhd, edts > elst, mdia > ... > stbl: the init's stsd and
//!       stts ctts stss stsz stsc stco|co64 listing every sample), no mvex
//! mdat  each fragment's sample data, track by track, in the fragments' order
//! ```
//!
//! The `moov` comes first, so a player starts before the file has all come. Each track's run
//! in a fragment is one chunk. The media is not copied: the file is [`Flat::head`] and then
//! slices of the fragments' own buffers ([`Flat::media`]). Each track's samples are rebased to
//! start at 0, and an edit list keeps the tracks in step as they were: an empty edit delays a
//! track that started later, and the media edit skips composition offsets, so what showed
//! first in the fragments shows at 0.

use bytes::{BufMut, Bytes, BytesMut};

use super::fragment::samples_of;
use super::progressive::SampleRef;
use super::writer::boxed;
use super::{
    Atom, BoxPath, Edts, Error, ErrorKind, FourCC, Fragment, Ftyp, InitSegment, RawBox, Result,
    split_by_track,
};

/// A progressive MP4: `head` (ftyp, moov, the mdat's header), then every piece of `media`.
#[derive(Debug, Clone)]
pub struct Flat {
    pub head: Bytes,
    pub media: Vec<Bytes>,
}

impl Flat {
    /// The whole file's length.
    pub fn len(&self) -> u64 {
        self.head.len() as u64 + self.media.iter().map(|m| m.len() as u64).sum::<u64>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One track's samples, and its chunks: where each starts among the media and how many
/// samples it holds.
#[derive(Default)]
struct Collected {
    samples: Vec<SampleRef>,
    chunks: Vec<(u64, u32)>,
}

/// The progressive file of `fragments` (in decode order, described by `init`).
pub fn flatten(init: &InitSegment, fragments: &[Fragment]) -> Result<Flat> {
    let mut tracks: Vec<(u32, Collected)> = init
        .moov
        .trak
        .iter()
        .map(|t| (t.tkhd.track_id, Collected::default()))
        .collect();
    let mut media = Vec::new();
    let mut at = 0u64;
    for fragment in fragments {
        for piece in split_by_track(fragment, init)? {
            let Some((track_id, samples)) = samples_of(&piece, init)? else {
                return Err(unsupported(
                    "a fragment whose sample data this server cannot place",
                ));
            };
            let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
                continue;
            };
            let Some((_, collected)) = tracks.iter_mut().find(|(id, _)| *id == track_id) else {
                continue;
            };
            let (from, to) = (
                first.offset as usize,
                (last.offset + u64::from(last.size)) as usize,
            );
            let data = piece.bytes.slice(from..to);
            collected.chunks.push((at, samples.len() as u32));
            at += data.len() as u64;
            collected.samples.extend(samples);
            media.push(data);
        }
    }
    tracks.retain(|(_, c)| !c.samples.is_empty());
    if tracks.is_empty() {
        return Err(unsupported("no samples to write"));
    }
    let movie_timescale = init.moov.mvhd.timescale.max(1);
    // When each track's first picture or sound shows, in seconds: the earliest of them is the
    // file's 0.
    let shown_from = |id: u32, c: &Collected| -> f64 {
        let timescale = f64::from(timescale_of(init, id));
        let first = c.samples[0].decode_time as f64 + f64::from(min_offset(&c.samples));
        (first - super::progressive::edit_start(init, id).unwrap_or(0) as f64) / timescale
    };
    let base = tracks
        .iter()
        .map(|(id, c)| shown_from(*id, c))
        .fold(f64::INFINITY, f64::min);

    // The moov is written twice: once to learn its size (which places the media), then with
    // the chunk offsets it gives.
    let large = at > u64::from(u32::MAX) / 2;
    let write = |media_start: u64| -> Bytes {
        let mut moov = init.moov.clone();
        moov.mvex = None;
        moov.trak
            .retain(|t| tracks.iter().any(|(id, _)| *id == t.tkhd.track_id));
        let mut movie_duration = 0u64;
        for trak in &mut moov.trak {
            let id = trak.tkhd.track_id;
            let Some((_, c)) = tracks.iter().find(|(tid, _)| *tid == id) else {
                continue;
            };
            let timescale = trak.mdia.mdhd.timescale.max(1);
            let duration: u64 = c.samples.iter().map(|s| u64::from(s.duration)).sum();
            let to_movie = |t: f64| (t * f64::from(movie_timescale)).round().max(0.0) as u64;
            let delay = to_movie(shown_from(id, c) - base);
            let shown = to_movie(duration as f64 / f64::from(timescale));
            movie_duration = movie_duration.max(delay + shown);
            trak.tkhd.duration = delay + shown;
            trak.mdia.mdhd.duration = duration;
            trak.edts = Some(edit_list(delay, shown, i64::from(min_offset(&c.samples))));
            let stbl = &mut trak.mdia.minf.stbl;
            stbl.unknown = sample_tables(c, media_start, large);
        }
        moov.mvhd.duration = movie_duration;
        let mut out = BytesMut::new();
        ftyp().encode(&mut out);
        moov.encode(&mut out);
        out.freeze()
    };
    let mdat_header = if large { 16 } else { 8 };
    let probe = write(0);
    let head_len = probe.len() as u64 + mdat_header;
    let mut head = BytesMut::from(&write(head_len)[..]);
    if large {
        head.put_u32(1);
        head.put_slice(b"mdat");
        head.put_u64(16 + at);
    } else {
        head.put_u32((8 + at) as u32);
        head.put_slice(b"mdat");
    }
    debug_assert_eq!(head.len() as u64, head_len);
    Ok(Flat {
        head: head.freeze(),
        media,
    })
}

fn unsupported(what: &'static str) -> Error {
    Error::new(ErrorKind::InvalidValue(what), 0, BoxPath::root())
}

fn timescale_of(init: &InitSegment, track_id: u32) -> u32 {
    init.track(track_id).map_or(1, |t| t.timescale.max(1))
}

/// The smallest composition offset: where presentation starts past the first decode time.
fn min_offset(samples: &[SampleRef]) -> i32 {
    samples
        .iter()
        .take(64)
        .map(|s| s.composition_offset)
        .min()
        .unwrap_or(0)
}

fn ftyp() -> Ftyp {
    let brands: &[&[u8; 4]] = &[b"isom", b"iso2", b"avc1", b"mp41"];
    Ftyp {
        major_brand: FourCC::new(b"isom"),
        minor_version: 512,
        compatible_brands: brands.iter().map(|b| FourCC::new(b)).collect(),
    }
}

/// `edts > elst` (§8.6.6): an empty edit of `delay`, then the media from `media_time` for
/// `shown` (both in the movie's timescale).
fn edit_list(delay: u64, shown: u64, media_time: i64) -> Edts {
    let mut elst = BytesMut::new();
    elst.put_u32(1 << 24); // version 1, no flags
    elst.put_u32(if delay > 0 { 2 } else { 1 });
    if delay > 0 {
        elst.put_u64(delay);
        elst.put_i64(-1);
        elst.put_u32(1 << 16);
    }
    elst.put_u64(shown);
    elst.put_i64(media_time.max(0));
    elst.put_u32(1 << 16); // media_rate 1.0
    Edts {
        body: boxed(b"elst", &elst),
    }
}

fn raw(kind: &[u8; 4], body: &[u8]) -> RawBox {
    RawBox {
        kind: FourCC::new(kind),
        bytes: boxed(kind, body),
    }
}

/// Run-length pairs of `values`: `(count, value)`.
fn runs<T: PartialEq + Copy>(values: impl Iterator<Item = T>) -> Vec<(u32, T)> {
    let mut out: Vec<(u32, T)> = Vec::new();
    for value in values {
        match out.last_mut() {
            Some((count, last)) if *last == value => *count += 1,
            _ => out.push((1, value)),
        }
    }
    out
}

/// stts, ctts, stss, stsz, stsc and stco (co64 when `large`) for a track's samples, its
/// chunks placed from `media_start`.
fn sample_tables(c: &Collected, media_start: u64, large: bool) -> Vec<RawBox> {
    let mut tables = Vec::new();
    let full = |entries: usize, per: usize| {
        let mut body = BytesMut::with_capacity(8 + entries * per);
        body.put_u32(0);
        body.put_u32(entries as u32);
        body
    };

    let durations = runs(c.samples.iter().map(|s| s.duration));
    let mut stts = full(durations.len(), 8);
    for (count, duration) in &durations {
        stts.put_u32(*count);
        stts.put_u32(*duration);
    }
    tables.push(raw(b"stts", &stts));

    if c.samples.iter().any(|s| s.composition_offset != 0) {
        let offsets = runs(c.samples.iter().map(|s| s.composition_offset));
        let mut ctts = full(offsets.len(), 8);
        if offsets.iter().any(|(_, o)| *o < 0) {
            ctts[0] = 1; // version 1: signed offsets
        }
        for (count, offset) in &offsets {
            ctts.put_u32(*count);
            ctts.put_i32(*offset);
        }
        tables.push(raw(b"ctts", &ctts));
    }

    if c.samples.iter().any(|s| !s.sync) {
        let syncs: Vec<u32> = (1..)
            .zip(&c.samples)
            .filter(|(_, s)| s.sync)
            .map(|(i, _)| i)
            .collect();
        let mut stss = full(syncs.len(), 4);
        for i in syncs {
            stss.put_u32(i);
        }
        tables.push(raw(b"stss", &stss));
    }

    let mut stsz = BytesMut::with_capacity(12 + 4 * c.samples.len());
    stsz.put_u32(0);
    stsz.put_u32(0); // sizes listed one by one
    stsz.put_u32(c.samples.len() as u32);
    for s in &c.samples {
        stsz.put_u32(s.size);
    }
    tables.push(raw(b"stsz", &stsz));

    // Chunks that hold the same number of samples share an entry (first chunk, samples, 1).
    let per_chunk = runs(c.chunks.iter().map(|(_, n)| *n));
    let mut stsc = full(per_chunk.len(), 12);
    let mut first_chunk = 1u32;
    for (count, samples) in &per_chunk {
        stsc.put_u32(first_chunk);
        stsc.put_u32(*samples);
        stsc.put_u32(1);
        first_chunk += count;
    }
    tables.push(raw(b"stsc", &stsc));

    let mut offsets = full(c.chunks.len(), if large { 8 } else { 4 });
    for (at, _) in &c.chunks {
        if large {
            offsets.put_u64(media_start + at);
        } else {
            offsets.put_u32((media_start + at) as u32);
        }
    }
    tables.push(raw(if large { b"co64" } else { b"stco" }, &offsets));
    tables
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_count_repeats() {
        assert_eq!(
            runs([1, 1, 2, 2, 2, 1].into_iter()),
            vec![(2, 1), (3, 2), (1, 1)]
        );
        assert!(runs(std::iter::empty::<u32>()).is_empty());
    }

    #[test]
    fn an_edit_list_delays_a_later_track() {
        let edts = edit_list(500, 10_000, 1024);
        let elst = &edts.body[8..];
        assert_eq!(u32::from_be_bytes(elst[4..8].try_into().unwrap()), 2);
        assert_eq!(i64::from_be_bytes(elst[16..24].try_into().unwrap()), -1);
        assert_eq!(i64::from_be_bytes(elst[36..44].try_into().unwrap()), 1024);
    }
}
