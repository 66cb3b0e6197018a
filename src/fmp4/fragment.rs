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
    /// Per `traf`, where its sample data starts in `bytes`, when its runs lie one after
    /// another (as every muxer seen writes them); `None` when they do not, or when an
    /// absolute `base_data_offset` places them somewhere this fragment cannot tell.
    pub data_starts: Vec<Option<usize>>,
    /// The producer reference time written before the `moof`, if any.
    pub prft: Option<Prft>,
}

impl Fragment {
    /// Reads a fragment from `bytes`, which must hold exactly `[prefix boxes] moof mdat`,
    /// using `init` for the track sample defaults.
    pub fn parse(bytes: Bytes, offset: u64, init: &InitSegment) -> Result<Self> {
        Self::parse_placing(bytes, offset, init, None)
    }

    /// [`Fragment::parse`], also saying where each `trun`'s data lies in `bytes`, per `traf`
    /// (`None` for a run whose place an absolute `base_data_offset` loses).
    fn parse_placing(
        bytes: Bytes,
        offset: u64,
        init: &InitSegment,
        mut placed: Option<&mut Vec<RunPlaces>>,
    ) -> Result<Self> {
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
        let mut data_starts = Vec::with_capacity(1);
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
                    let runs_placed = placed.as_deref_mut().map(|p| {
                        p.push(Vec::new());
                        p.last_mut().expect("just pushed")
                    });
                    let (run, data_start) = read_traf(
                        part,
                        runs_placed,
                        init,
                        DataLayout {
                            stream_offset: offset,
                            moof_start,
                            first_traf,
                            previous_end: data_end,
                            mdat: (mdat_body, mdat_end),
                        },
                        &mut data_end,
                    )?;
                    first_traf = false;
                    runs.push(run);
                    data_starts.push(data_start);
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
            data_starts,
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
    /// The fragment's first byte in the stream: what a `base_data_offset` counts from.
    stream_offset: u64,
    moof_start: usize,
    first_traf: bool,
    previous_end: usize,
    /// The `mdat` body, as offsets into the fragment.
    mdat: (usize, usize),
}

fn read_traf(
    mut traf: super::reader::Child<'_>,
    mut placed_runs: Option<&mut RunPlaces>,
    init: &InitSegment,
    layout: DataLayout,
    data_end: &mut usize,
) -> Result<(TrackRun, Option<usize>)> {
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
    let mut data_start = None;
    let mut contiguous = true;
    // Whether the base is an absolute base_data_offset, which a stream read from its middle
    // (or restarted) may not agree with: then where the data is stays unknown, as before.
    let mut absolute = false;
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
            absolute = header.base_data_offset.is_some();
            base = if let Some(absolute) = header.base_data_offset {
                // An absolute position in the stream (ffmpeg without default_base_moof):
                // inside this fragment, or nothing is known of where the data is.
                absolute
                    .checked_sub(layout.stream_offset)
                    .and_then(|at| usize::try_from(at).ok())
                    // Before this fragment's moof (into boxes in front of it, or before the
                    // fragment): the file was rewritten, as ffmpeg's global_sidx does, or the
                    // stream is read from its middle; ffmpeg writes each moof's own position
                    // there, so count from the moof.
                    .filter(|at| *at >= layout.moof_start)
                    .or(Some(layout.moof_start))
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
            let mut lost = false;
            if let Some(from) = base {
                let place = |from: usize| {
                    let start = match summary.data_offset {
                        Some(rel) => i64::try_from(from)
                            .ok()
                            .and_then(|b| b.checked_add(i64::from(rel)))
                            .and_then(|s| usize::try_from(s).ok()),
                        None => Some(next_data),
                    }?;
                    let end = start.checked_add(usize::try_from(summary.data_size).ok()?)?;
                    (start >= layout.mdat.0 && end <= layout.mdat.1).then_some((start, end))
                };
                let mut placed = place(from);
                if placed.is_none() && absolute && from != layout.moof_start {
                    // The same for an absolute base past the moof that places nothing.
                    placed = place(layout.moof_start);
                    if placed.is_some() {
                        base = Some(layout.moof_start);
                    }
                }
                if let Some(runs) = placed_runs.as_deref_mut() {
                    runs.push(placed);
                }
                match placed {
                    Some((start, end)) => {
                        if data_start.is_none() {
                            data_start = Some(start);
                        } else if start != next_data {
                            contiguous = false;
                        }
                        next_data = end;
                        *data_end = end;
                    }
                    None if absolute => lost = true,
                    None => {
                        return Err(Error::new(
                            ErrorKind::InvalidValue("trun sample data lies outside the mdat"),
                            offset,
                            path,
                        ));
                    }
                }
            } else if let Some(runs) = placed_runs.as_deref_mut() {
                runs.push(None);
            }
            if lost {
                contiguous = false;
                base = None;
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
    if !contiguous {
        data_start = None;
    }
    Ok((run, data_start))
}

/// A fragment of several track fragments as one fragment per track fragment, each its own
/// `moof` (the `traf`, its `tfhd` counting from the `moof`, its runs' offsets set anew) and
/// `mdat` (that track's bytes, copied once, gathered from wherever its runs put them); so is
/// one whose data is placed by an absolute `base_data_offset`. A fragment of one track placed from its `moof` is given back as it is.
/// What needs it: a DASH Representation of one track, whose segments must hold only its
/// own samples (ffmpeg's `frag_keyframe` puts every track in one `moof`).
pub fn split_by_track(fragment: &Fragment, init: &InitSegment) -> Result<Vec<Fragment>> {
    let moof_bytes = fragment
        .bytes
        .slice(fragment.moof_start..fragment.mdat_start);
    let moof = super::Moof::decode(&moof_bytes)?;
    // One track, its data placed from its own moof: already what is wanted. An absolute
    // base_data_offset would point elsewhere once the fragment is in another file.
    if fragment.runs.len() <= 1 && moof.traf.iter().all(|t| t.tfhd.base_data_offset.is_none()) {
        return Ok(vec![fragment.clone()]);
    }
    // Where each run's data is, for track fragments whose runs do not follow each other
    // (GStreamer's isofmp4mux interleaves the tracks' chunks in one mdat).
    let placements = if fragment.data_starts.iter().any(Option::is_none)
        || moof.traf.iter().any(|t| t.trun.len() > 1)
    {
        let mut placed = Vec::new();
        Fragment::parse_placing(
            fragment.bytes.clone(),
            fragment.offset,
            init,
            Some(&mut placed),
        )?;
        placed
    } else {
        Vec::new()
    };
    let mut out = Vec::with_capacity(moof.traf.len());
    for (index, ((traf, run), start)) in moof
        .traf
        .iter()
        .zip(&fragment.runs)
        .zip(&fragment.data_starts)
        .enumerate()
    {
        if run.sample_count == 0 {
            continue;
        }
        let outside = || {
            Error::new(
                ErrorKind::InvalidValue("trun sample data lies outside the mdat"),
                fragment.offset,
                super::BoxPath::root(),
            )
        };
        let runs = placements.get(index).map(Vec::as_slice).unwrap_or_default();
        let data: std::borrow::Cow<'_, [u8]> = match *start {
            Some(start) if runs.len() <= 1 => {
                let len = usize::try_from(run.data_size).unwrap_or(usize::MAX);
                let data = fragment
                    .bytes
                    .get(start..start.saturating_add(len))
                    .ok_or_else(outside)?;
                std::borrow::Cow::Borrowed(data)
            }
            _ => {
                if runs.is_empty() || runs.iter().any(Option::is_none) {
                    return Err(Error::new(
                        ErrorKind::Unsupported(
                            "a track fragment whose data an absolute base_data_offset places \
                             outside its fragment",
                        ),
                        fragment.offset + fragment.moof_start as u64,
                        super::BoxPath::root(),
                    ));
                }
                let mut gathered = Vec::with_capacity(run.data_size as usize);
                for (s, e) in runs.iter().flatten() {
                    gathered.extend_from_slice(fragment.bytes.get(*s..*e).ok_or_else(outside)?);
                }
                std::borrow::Cow::Owned(gathered)
            }
        };
        let mut traf = traf.clone();
        traf.tfhd.base_data_offset = None;
        traf.tfhd.other_flags |= super::moof::DEFAULT_BASE_IS_MOOF;
        // Every run placed explicitly, one after another in the new mdat (a run without a
        // data offset is not read as following the one before by every reader: ffmpeg 5.1).
        for trun in &mut traf.trun {
            trun.data_offset = Some(0);
        }
        let mut single = super::Moof {
            mfhd: moof.mfhd,
            traf: vec![traf],
            unknown: Vec::new(),
        };
        let header = if data.len() + 8 > u32::MAX as usize {
            16
        } else {
            8
        };
        let moof_len = single.encoded_len();
        let mut at = moof_len + header;
        let sizes: Vec<usize> = if runs.len() == single.traf[0].trun.len() {
            runs.iter().flatten().map(|(s, e)| e - s).collect()
        } else {
            vec![data.len()]
        };
        for (trun, size) in single.traf[0].trun.iter_mut().zip(sizes) {
            trun.data_offset = i32::try_from(at).ok();
            at += size;
        }
        let mut bytes = bytes::BytesMut::with_capacity(moof_len + header + data.len());
        single.encode(&mut bytes);
        super::mdat::put_header(&mut bytes, data.len() as u64);
        bytes.extend_from_slice(&data);
        out.push(Fragment::parse(bytes.freeze(), fragment.offset, init)?);
    }
    Ok(out)
}

/// A fragment of one sample of one track whose duration is wrong (the next fragment's decode
/// time says otherwise: ffmpeg's frag_every_frame writes a default for AAC that is not the
/// frame's), written again with `duration`: in the `trun` if it stores durations, else as the
/// `tfhd` default. The data keeps its place after the `moof`, whose length may change.
pub fn with_sample_duration(
    fragment: &Fragment,
    duration: u32,
    init: &InitSegment,
) -> Result<Fragment> {
    let unchanged = || Ok(fragment.clone());
    let [run] = fragment.runs.as_slice() else {
        return unchanged();
    };
    if run.sample_count != 1 || fragment.data_starts.first().copied().flatten().is_none() {
        return unchanged();
    }
    let moof_bytes = fragment
        .bytes
        .slice(fragment.moof_start..fragment.mdat_start);
    let mut moof = super::Moof::decode(&moof_bytes)?;
    let Some(traf) = moof.traf.first_mut() else {
        return unchanged();
    };
    if !traf.tfhd.default_base_is_moof() || traf.tfhd.base_data_offset.is_some() {
        return unchanged();
    }
    for trun in &mut traf.trun {
        if trun.sample_fields & super::moof::SAMPLE_DURATION_PRESENT != 0 {
            for sample in &mut trun.samples {
                sample.duration = duration;
            }
        }
    }
    if traf
        .trun
        .iter()
        .all(|t| t.sample_fields & super::moof::SAMPLE_DURATION_PRESENT == 0)
    {
        traf.tfhd.default_sample_duration = Some(duration);
    }
    // The data offset from the moof start, moved by however much the moof grew.
    let old_len = fragment.mdat_start - fragment.moof_start;
    let new_len = moof.encoded_len();
    let shift = new_len as i64 - old_len as i64;
    for trun in &mut moof.traf[0].trun {
        if let Some(offset) = trun.data_offset.as_mut() {
            *offset = i32::try_from(i64::from(*offset) + shift).unwrap_or(*offset);
        }
    }
    let mut bytes = bytes::BytesMut::with_capacity(fragment.bytes.len() + 4);
    bytes.extend_from_slice(&fragment.bytes[..fragment.moof_start]);
    moof.encode(&mut bytes);
    bytes.extend_from_slice(&fragment.bytes[fragment.mdat_start..]);
    Fragment::parse(bytes.freeze(), fragment.offset, init)
}

/// Per `trun` of a `traf`, where its data lies in the fragment's bytes (`start..end`), or
/// `None` where an absolute `base_data_offset` loses it.
type RunPlaces = Vec<Option<(usize, usize)>>;

/// The most samples a fragment of one track may have to be cut by sample: an hour of 48 kHz
/// AAC in one moof (mux.js writes a track a moof) is 170,000.
pub const MAX_FRAGMENT_SAMPLES: u32 = 1 << 21;

/// The samples of a fragment of one track, its data where its moof says (as
/// [`split_by_track`] leaves it), each with where its data lies in the fragment's bytes: its
/// track and them, or `None` for a fragment of another form (several tracks, data placed
/// elsewhere).
pub(crate) fn samples_of(
    fragment: &Fragment,
    init: &InitSegment,
) -> Result<Option<(u32, Vec<super::progressive::SampleRef>)>> {
    use super::moof::{
        SAMPLE_COMPOSITION_TIME_OFFSETS_PRESENT, SAMPLE_DURATION_PRESENT, SAMPLE_FLAGS_PRESENT,
        SAMPLE_SIZE_PRESENT,
    };
    let ([run], [Some(data_start)]) = (fragment.runs.as_slice(), fragment.data_starts.as_slice())
    else {
        return Ok(None);
    };
    let Some(track) = init.track(run.track_id) else {
        return Ok(None);
    };
    // Samples listed by defaults alone take no bytes in the trun: bound them here.
    if run.sample_count > MAX_FRAGMENT_SAMPLES {
        return Err(Error::new(
            ErrorKind::TooLarge {
                size: u64::from(run.sample_count),
                max: u64::from(MAX_FRAGMENT_SAMPLES),
            },
            fragment.offset + fragment.moof_start as u64,
            super::BoxPath::root(),
        ));
    }
    let moof_bytes = fragment
        .bytes
        .slice(fragment.moof_start..fragment.mdat_start);
    let moof = super::Moof::decode(&moof_bytes)?;
    let [traf] = moof.traf.as_slice() else {
        return Ok(None);
    };
    let defaults = SampleDefaults {
        duration: traf
            .tfhd
            .default_sample_duration
            .unwrap_or(track.defaults.default_sample_duration),
        size: traf
            .tfhd
            .default_sample_size
            .unwrap_or(track.defaults.default_sample_size),
        flags: traf
            .tfhd
            .default_sample_flags
            .unwrap_or(track.defaults.default_sample_flags),
    };
    let mut samples = Vec::with_capacity(run.sample_count as usize);
    let (mut time, mut offset) = (run.decode_time, *data_start as u64);
    for trun in &traf.trun {
        for i in 0..trun.sample_count as usize {
            let stored = trun.samples.get(i);
            let field = |bit: u32| stored.filter(|_| trun.sample_fields & bit != 0);
            let duration = field(SAMPLE_DURATION_PRESENT).map_or(defaults.duration, |s| s.duration);
            let size = field(SAMPLE_SIZE_PRESENT).map_or(defaults.size, |s| s.size);
            let flags = match (i, trun.first_sample_flags) {
                (0, Some(first)) => first,
                _ => field(SAMPLE_FLAGS_PRESENT).map_or(defaults.flags, |s| s.flags),
            };
            let composition_offset =
                field(SAMPLE_COMPOSITION_TIME_OFFSETS_PRESENT).map_or(0, |s| s.composition_offset);
            samples.push(super::progressive::SampleRef {
                offset,
                size,
                duration,
                decode_time: time,
                composition_offset: i32::try_from(composition_offset).unwrap_or(0),
                sync: is_sync(flags),
            });
            time = time.saturating_add(u64::from(duration));
            offset = offset.saturating_add(u64::from(size));
        }
    }
    if offset > fragment.bytes.len() as u64 {
        return Err(Error::new(
            ErrorKind::InvalidValue("trun sample data lies outside the mdat"),
            fragment.offset,
            super::BoxPath::root(),
        ));
    }
    Ok(Some((track.id, samples)))
}

/// The earliest presentation time (decode time plus composition offset) of a fragment of
/// one track, in its timescale; `None` for a fragment of another form or without samples.
pub fn earliest_presentation(fragment: &Fragment, init: &InitSegment) -> Result<Option<u64>> {
    Ok(samples_of(fragment, init)?.and_then(|(_, samples)| {
        samples
            .iter()
            .map(|s| {
                s.decode_time
                    .saturating_add_signed(i64::from(s.composition_offset))
            })
            .min()
    }))
}

/// A fragment of one track, its data where its moof says (as [`split_by_track`] leaves it),
/// cut in two at decode time `at` (in the track's timescale): the samples that start before
/// `at`, and those from it on, each in a fragment of its own with its own `tfdt`, its media
/// copied once. `None` when `at` does not fall between two of its samples, or the fragment
/// is of another form (several tracks, data placed elsewhere), which is left whole.
pub fn split_at(
    fragment: &Fragment,
    at: u64,
    init: &InitSegment,
) -> Result<Option<(Fragment, Fragment)>> {
    use super::progressive::SampleRef;
    let [run] = fragment.runs.as_slice() else {
        return Ok(None);
    };
    if at <= run.decode_time || at >= run.end_time() {
        return Ok(None);
    }
    let Some((track_id, samples)) = samples_of(fragment, init)? else {
        return Ok(None);
    };
    let Some(cut) = samples.iter().position(|s| s.decode_time >= at) else {
        return Ok(None);
    };
    if cut == 0 {
        return Ok(None);
    }
    let build = |part: &[SampleRef]| piece(fragment, init, track_id, part);
    Ok(Some((build(&samples[..cut])?, build(&samples[cut..])?)))
}

/// A fragment of `samples` (consecutive, at least one) of `fragment`'s one track, with its
/// own `tfdt`, their media copied from `fragment` once.
fn piece(
    fragment: &Fragment,
    init: &InitSegment,
    track_id: u32,
    samples: &[super::progressive::SampleRef],
) -> Result<Fragment> {
    use super::progressive::{Run, fragment_header};
    let run = Run { track_id, samples };
    let (mut buf, _) = fragment_header(fragment.sequence, &[run]);
    let (first, last) = (samples[0], samples[samples.len() - 1]);
    let range = first.offset as usize..(last.offset + u64::from(last.size)) as usize;
    buf.extend_from_slice(&fragment.bytes[range]);
    Fragment::parse(buf.freeze(), fragment.offset, init)
}

/// A fragment of one track cut before each of its key frames but the first, so that every
/// group of pictures starts a fragment of its own (a muxer that writes the whole track in
/// one `moof`, as mux.js does, or a key frame inside a fragment): the pieces in order, each
/// with its own `tfdt`, its media copied once; the fragment itself when it has no key frame
/// after its first sample, or is of another form than [`split_at`] takes.
pub fn split_at_key_frames(fragment: &Fragment, init: &InitSegment) -> Result<Vec<Fragment>> {
    let Some((track_id, samples)) = samples_of(fragment, init)? else {
        return Ok(vec![fragment.clone()]);
    };
    let mut starts: Vec<usize> = (1..samples.len()).filter(|&i| samples[i].sync).collect();
    if starts.is_empty() {
        return Ok(vec![fragment.clone()]);
    }
    starts.insert(0, 0);
    starts.push(samples.len());
    starts
        .windows(2)
        .map(|w| piece(fragment, init, track_id, &samples[w[0]..w[1]]))
        .collect()
}
