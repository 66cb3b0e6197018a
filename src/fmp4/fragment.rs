//! A media fragment, `[styp] [prft] [emsg] moof mdat`, held as one buffer that every viewer
//! shares, with what the server needs to know of it read from the `moof` headers alone.

use bytes::Bytes;

use super::moof::{Mfhd, SampleDefaults, Tfdt, Tfhd, Trun, is_sync};
use super::{Atom, Error, ErrorKind, FourCC, InitSegment, Mdat, Prft, Reader, Result};

pub const MOOF: FourCC = FourCC::new(b"moof");
pub const TRAF: FourCC = FourCC::new(b"traf");

/// One track's samples in a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackRun {
    pub track_id: u32,
    /// Decode time of the first sample (`tfdt`), in the track's timescale.
    pub decode_time: u64,
    /// Sum of the sample durations, in the track's timescale.
    pub duration: u64,
    pub sample_count: u32,
    /// Whether the first sample is a sync sample (a key frame for video).
    pub starts_with_sync: bool,
    /// Bytes of sample data in the `mdat`.
    pub data_size: u64,
}

impl TrackRun {
    pub fn end_time(&self) -> u64 {
        self.decode_time.saturating_add(self.duration)
    }
}

/// A complete media fragment.
#[derive(Debug, Clone, PartialEq)]
pub struct Fragment {
    /// Every byte from the first prefix box to the end of the `mdat`, as received.
    pub bytes: Bytes,
    /// Absolute stream offset of the first byte.
    pub offset: u64,
    /// The `mfhd` sequence number.
    pub sequence: u32,
    /// Where `moof` starts in `bytes`.
    pub moof_start: usize,
    /// Where `mdat` (its header) starts in `bytes`.
    pub mdat_start: usize,
    /// One entry per `traf`, in order.
    pub runs: Vec<TrackRun>,
    /// The producer reference time written before the `moof`, if any.
    pub prft: Option<Prft>,
}

impl Fragment {
    /// Reads a fragment from `bytes`, which must hold exactly `[prefix boxes] moof mdat`,
    /// using `init` for the track sample defaults.
    pub fn parse(bytes: Bytes, offset: u64, init: &InitSegment) -> Result<Self> {
        let mut r = Reader::new(&bytes, offset);
        let mut prft = None;
        let mut moof: Option<(usize, u64)> = None;
        let mut mdat: Option<(usize, usize, usize)> = None;
        while let Some(child) = r.next_box()? {
            let start = child.start();
            let end = start + child.len();
            if mdat.is_some() {
                return Err(Error::new(
                    ErrorKind::OutOfOrder("a box after the mdat of a fragment"),
                    child.offset(),
                    child.path(),
                ));
            }
            let kind = child.kind();
            if kind == MOOF {
                if moof.is_some() {
                    return Err(Error::new(
                        ErrorKind::OutOfOrder("two moof boxes before an mdat"),
                        child.offset(),
                        child.path(),
                    ));
                }
                moof = Some((start, child.offset()));
            } else if kind == Mdat::KIND {
                if moof.is_none() {
                    return Err(Error::new(
                        ErrorKind::OutOfOrder("mdat without a moof before it"),
                        child.offset(),
                        child.path(),
                    ));
                }
                let body_start = start + usize::from(child.header.header_len);
                mdat = Some((start, body_start, end));
            } else if moof.is_some() {
                return Err(Error::new(
                    ErrorKind::OutOfOrder("moof not followed by its mdat"),
                    child.offset(),
                    child.path(),
                ));
            } else if kind == Prft::KIND {
                prft = Some(child.decode::<Prft>()?);
            }
        }
        let (Some((moof_start, _)), Some((mdat_start, mdat_body, mdat_end))) = (moof, mdat) else {
            return Err(r.error(ErrorKind::MissingBox(if moof.is_none() {
                MOOF
            } else {
                Mdat::KIND
            })));
        };
        let mut r = Reader::new(&bytes, offset);
        let mut sequence = None;
        let mut runs = Vec::with_capacity(1);
        while let Some(mut child) = r.next_box()? {
            if child.kind() != MOOF {
                continue;
            }
            let moof_offset = child.offset();
            let moof_path = child.path();
            let body = child.body();
            let mut data_end = moof_start;
            let mut first_traf = true;
            while let Some(part) = body.next_box()? {
                let kind = part.kind();
                if kind == Mfhd::KIND {
                    // ISO/IEC 14496-12 §8.8.5: exactly one per moof.
                    if sequence.is_some() {
                        return Err(Error::new(
                            ErrorKind::DuplicateBox(kind),
                            part.offset(),
                            part.path(),
                        ));
                    }
                    sequence = Some(part.decode::<Mfhd>()?.sequence_number);
                } else if kind == TRAF {
                    let run = read_traf(
                        part,
                        init,
                        DataLayout {
                            moof_start,
                            first_traf,
                            previous_end: data_end,
                            mdat: (mdat_body, mdat_end),
                        },
                        &mut data_end,
                    )?;
                    first_traf = false;
                    runs.push(run);
                }
            }
            if sequence.is_none() {
                return Err(Error::new(
                    ErrorKind::MissingBox(Mfhd::KIND),
                    moof_offset,
                    moof_path,
                ));
            }
            break;
        }
        let sequence = sequence.unwrap_or_default();
        Ok(Self {
            bytes,
            offset,
            sequence,
            moof_start,
            mdat_start,
            runs,
            prft,
        })
    }

    /// The run of `track_id`, if this fragment has samples of that track.
    pub fn run(&self, track_id: u32) -> Option<&TrackRun> {
        self.runs.iter().find(|run| run.track_id == track_id)
    }

    /// Whether this fragment starts with a sync sample of `track_id`: where a group of
    /// pictures, and so a segment or a late joiner's stream, may start.
    pub fn starts_with_sync_of(&self, track_id: u32) -> bool {
        self.run(track_id).is_some_and(|run| run.starts_with_sync)
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The media payload, a slice of `bytes`.
    pub fn mdat_payload(&self) -> Bytes {
        let header = self
            .bytes
            .get(self.mdat_start..)
            .and_then(|rest| super::BoxHeader::parse(rest).ok().flatten())
            .map_or(8, |h| usize::from(h.header_len));
        self.bytes
            .slice(self.mdat_start.saturating_add(header).min(self.bytes.len())..)
    }
}

/// Where sample data may be: needed to check that every run points inside the `mdat`.
struct DataLayout {
    moof_start: usize,
    first_traf: bool,
    previous_end: usize,
    /// The `mdat` body, as offsets into the fragment.
    mdat: (usize, usize),
}

fn read_traf(
    mut traf: super::reader::Child<'_>,
    init: &InitSegment,
    layout: DataLayout,
    data_end: &mut usize,
) -> Result<TrackRun> {
    let traf_offset = traf.offset();
    let traf_path = traf.path();
    let body = traf.body();
    let mut tfhd: Option<Tfhd> = None;
    let mut decode_time = None;
    let mut run = TrackRun {
        track_id: 0,
        decode_time: 0,
        duration: 0,
        sample_count: 0,
        starts_with_sync: false,
        data_size: 0,
    };
    let mut defaults = SampleDefaults::default();
    let mut first_trun = true;
    // ISO/IEC 14496-12 §8.8.7.1: without an explicit base, the first track fragment counts
    // from the moof, later ones from the end of the previous one's data, unless
    // default-base-is-moof says "always the moof".
    let mut base: Option<usize> = None;
    let mut next_data = 0usize;
    while let Some(mut child) = body.next_box()? {
        let kind = child.kind();
        if kind == Tfhd::KIND {
            // Exactly one tfhd and at most one tfdt per traf (§8.8.7, §8.8.12), as the typed
            // decoder insists too.
            if tfhd.is_some() {
                return Err(Error::new(
                    ErrorKind::DuplicateBox(kind),
                    child.offset(),
                    child.path(),
                ));
            }
            let header = child.decode::<Tfhd>()?;
            let track = init.track(header.track_id).ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidValue("traf names a track the init segment does not have"),
                    traf_offset,
                    traf_path,
                )
            })?;
            defaults = SampleDefaults {
                duration: header
                    .default_sample_duration
                    .unwrap_or(track.defaults.default_sample_duration),
                size: header
                    .default_sample_size
                    .unwrap_or(track.defaults.default_sample_size),
                flags: header
                    .default_sample_flags
                    .unwrap_or(track.defaults.default_sample_flags),
            };
            base = if header.base_data_offset.is_some() {
                None
            } else if header.default_base_is_moof() || layout.first_traf {
                Some(layout.moof_start)
            } else {
                Some(layout.previous_end)
            };
            next_data = base.unwrap_or(0);
            run.track_id = header.track_id;
            tfhd = Some(header);
        } else if kind == Tfdt::KIND {
            if decode_time.is_some() {
                return Err(Error::new(
                    ErrorKind::DuplicateBox(kind),
                    child.offset(),
                    child.path(),
                ));
            }
            decode_time = Some(child.decode::<Tfdt>()?.base_media_decode_time);
        } else if kind == Trun::KIND {
            if tfhd.is_none() {
                return Err(Error::new(
                    ErrorKind::OutOfOrder("trun before tfhd"),
                    child.offset(),
                    child.path(),
                ));
            }
            let offset = child.offset();
            let path = child.path();
            let summary = Trun::summarize(child.body(), &defaults)?;
            child.body().expect_end()?;
            if first_trun {
                run.starts_with_sync = is_sync(summary.first_sample_flags);
                first_trun = false;
            }
            run.duration = run.duration.saturating_add(summary.duration);
            run.sample_count = run.sample_count.saturating_add(summary.sample_count);
            run.data_size = run.data_size.saturating_add(summary.data_size);
            if let Some(base) = base {
                let start = match summary.data_offset {
                    Some(rel) => i64::try_from(base)
                        .ok()
                        .and_then(|b| b.checked_add(i64::from(rel)))
                        .and_then(|s| usize::try_from(s).ok()),
                    None => Some(next_data),
                };
                let end = start.and_then(|s| {
                    usize::try_from(summary.data_size)
                        .ok()
                        .and_then(|len| s.checked_add(len))
                });
                match (start, end) {
                    (Some(start), Some(end)) if start >= layout.mdat.0 && end <= layout.mdat.1 => {
                        next_data = end;
                        *data_end = end;
                    }
                    _ => {
                        return Err(Error::new(
                            ErrorKind::InvalidValue("trun sample data lies outside the mdat"),
                            offset,
                            path,
                        ));
                    }
                }
            }
        }
    }
    if tfhd.is_none() {
        return Err(Error::new(
            ErrorKind::MissingBox(Tfhd::KIND),
            traf_offset,
            traf_path,
        ));
    }
    run.decode_time = decode_time
        .ok_or_else(|| Error::new(ErrorKind::MissingBox(Tfdt::KIND), traf_offset, traf_path))?;
    Ok(run)
}
