//! `package INPUT --out DIR`: an MP4 file into DASH segments with a static MPD (and an HLS
//! playlist), by the same segmenter and manifests as the live server. A fragmented file goes
//! through the live splitter; a progressive one (samples listed in its `moov`) is read by its
//! sample tables (`fmp4::progressive`) and cut into a fragment per group of pictures, or every
//! `--fragment-duration` inside one, its media read by ranges straight into the fragments.
//!
//! ```text
//! DIR/init.mp4  DIR/{n}.m4s          all tracks together (HLS, ffmpeg, most players)
//! DIR/{track}/init.mp4  {n}.m4s      one track each (the MPD: DASH-IF IOP wants one
//!                                    component per Representation)
//! DIR/manifest.mpd  DIR/index.m3u8
//! ```

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use crate::fmp4::progressive::{self, Run};
use crate::fmp4::{
    self, Atom, BoxPath, ErrorKind, FourCC, Fragment, InitSegment, Moov, Splitter, Unit,
};
use crate::manifest::{dash, hls};
use crate::stream::manifests::{self, HlsUris};
use crate::stream::{
    HubConfig, IO_PIECE, MediaInit, Segment, Snapshot, Status, Window, concat, unix_millis,
    write_file, write_in_pieces,
};

/// Why `package` could not write its output.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("--segment-duration {0} is out of range (0.5 to 30 seconds)")]
    SegmentDuration(f64),
    #[error("cannot {what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", .path.display())]
    Fmp4 {
        path: PathBuf,
        #[source]
        source: fmp4::Error,
    },
    #[error("{} holds more than one init segment; package one stream at a time", .0.display())]
    SeveralInits(PathBuf),
    #[error("{}: the init segment has no tracks", .0.display())]
    NoTracks(PathBuf),
    #[error("{} has no init segment", .0.display())]
    NoInit(PathBuf),
    #[error("{} has no media fragments", .0.display())]
    NoMedia(PathBuf),
    #[error("no complete segment to describe")]
    NothingToDescribe,
    #[error("--fragment-duration {0} is out of range (0.1 s up to the segment duration)")]
    FragmentDuration(f64),
    /// The reader of [`read_units`] wanted no more.
    #[error("stopped reading")]
    Stopped,
    #[error("{}: the moov is {size} bytes, over the limit of {MAX_MOOV} bytes", .path.display())]
    MoovTooLarge { path: PathBuf, size: u64 },
}

/// The largest `moov` read: its sample tables for 2^23 samples a track take about 100 MiB.
pub const MAX_MOOV: u64 = 256 << 20;

/// How to cut.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    pub segment_secs: f64,
    /// Fragments inside a segment, for low-latency players; `None`: one per group of pictures.
    pub fragment_secs: Option<f64>,
    /// DASH's on-demand profile: one file per track, indexed by a `sidx`, byte ranges in the
    /// MPD; else the live profile's numbered segments (and HLS).
    pub on_demand: bool,
}

/// A top-level box: its type, where it starts and how long it is.
#[derive(Debug, Clone, Copy)]
struct TopBox {
    kind: FourCC,
    offset: u64,
    len: u64,
}

/// The top-level boxes of a file, by their headers alone (seeking past each body), up to
/// the first `moof`: enough to tell a progressive file from a fragmented one.
fn top_level(file: &mut File, file_len: u64) -> Result<Vec<TopBox>, fmp4::Error> {
    let mut boxes = Vec::new();
    let mut at = 0u64;
    let bad = |kind, offset| fmp4::Error::new(kind, offset, BoxPath::root());
    while at < file_len {
        let mut head = [0u8; 16];
        let want = (file_len - at).min(16) as usize;
        file.seek(SeekFrom::Start(at))
            .and_then(|_| file.read_exact(&mut head[..want]))
            .map_err(|_| {
                bad(
                    ErrorKind::Truncated {
                        needed: 8,
                        available: file_len - at,
                    },
                    at,
                )
            })?;
        if want < 8 {
            return Err(bad(
                ErrorKind::Truncated {
                    needed: 8,
                    available: want as u64,
                },
                at,
            ));
        }
        let size32 = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let kind = FourCC([head[4], head[5], head[6], head[7]]);
        let len = match size32 {
            0 => file_len - at,
            1 if want == 16 => u64::from_be_bytes(head[8..16].try_into().unwrap_or_default()),
            1 => {
                return Err(bad(
                    ErrorKind::Truncated {
                        needed: 16,
                        available: want as u64,
                    },
                    at,
                ));
            }
            n => u64::from(n),
        };
        if len < 8 || at.checked_add(len).is_none_or(|end| end > file_len) {
            return Err(bad(ErrorKind::BadSize { size: len }, at));
        }
        boxes.push(TopBox {
            kind,
            offset: at,
            len,
        });
        if kind == FourCC::new(b"moof") {
            break;
        }
        at += len;
    }
    Ok(boxes)
}

/// What `package` wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Packaged {
    pub segments: usize,
    pub duration_secs: f64,
    pub tracks: usize,
}

pub fn package(input: &Path, out: &Path, options: Options) -> Result<Packaged, PackageError> {
    if options.on_demand {
        return package_on_demand(input, out, options);
    }
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| PackageError::Io { what, path, source }
    };
    let write = |path: &Path, bytes: &[u8]| write_file(path, bytes).map_err(io("write", path));
    std::fs::create_dir_all(out).map_err(io("create", out))?;
    let mut wrote_init = false;
    // Each segment is written the moment it is complete, and the window keeps only its timing.
    let mut sink = |init: &MediaInit, segment: &Segment| -> Result<(), PackageError> {
        if !wrote_init {
            write(&out.join("init.mp4"), &init.segment.bytes)?;
            for (track, bytes) in &init.track_inits {
                let dir = out.join(track.to_string());
                std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
                write(&dir.join("init.mp4"), bytes)?;
            }
            wrote_init = true;
        }
        let name = format!("{}.m4s", segment.number);
        write(&out.join(&name), &concat(segment.chunks()))?;
        for (track, _) in &init.track_inits {
            let bytes = concat(segment.track_chunks(*track));
            write(&out.join(track.to_string()).join(&name), &bytes)?;
        }
        Ok(())
    };
    let (snapshot, config, start) = cut(input, options, &mut sink)?;
    write_manifests(input, out, &snapshot, &config, start)
}

/// The on-demand profile: each track's segments appended to a file of its own as they
/// complete, then `{track}.mp4` written as its init, its `sidx` and that media, and an MPD of
/// `SegmentBase` byte ranges.
fn package_on_demand(input: &Path, out: &Path, options: Options) -> Result<Packaged, PackageError> {
    use std::io::Write as _;
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| PackageError::Io { what, path, source }
    };
    std::fs::create_dir_all(out).map_err(io("create", out))?;
    // Per track: its media so far (a file beside the output) and the index's references.
    let mut media: std::collections::BTreeMap<u32, (PathBuf, File, Vec<fmp4::sidx::Reference>)> =
        std::collections::BTreeMap::new();
    let mut sink = |init: &MediaInit, segment: &Segment| -> Result<(), PackageError> {
        for (track, _) in &init.track_inits {
            let bytes = concat(segment.track_chunks(*track));
            if bytes.is_empty() {
                continue;
            }
            if !media.contains_key(track) {
                let path = out.join(format!(".{track}.media"));
                let file = File::create(&path).map_err(io("create", &path))?;
                media.insert(*track, (path, file, Vec::new()));
            }
            let Some((path, file, references)) = media.get_mut(track) else {
                continue;
            };
            write_in_pieces(file, &bytes).map_err(io("write", path))?;
            let duration = segment
                .tracks
                .iter()
                .find(|t| t.track_id == *track)
                .map_or(0, |t| t.duration);
            let first = segment.track_chunks(*track).next().is_some();
            let starts_with_sap = first
                && segment
                    .fragments
                    .iter()
                    .find_map(|f| f.fragment.run(*track))
                    .is_some_and(|r| r.starts_with_sync);
            references.push(fmp4::sidx::Reference {
                size: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
                duration: u32::try_from(duration).unwrap_or(u32::MAX),
                starts_with_sap,
            });
        }
        Ok(())
    };
    let (snapshot, config, _) = cut(input, options, &mut sink)?;
    let init = snapshot
        .init
        .clone()
        .ok_or_else(|| PackageError::NoInit(input.to_path_buf()))?;
    if snapshot.segments.is_empty() {
        return Err(PackageError::NoMedia(input.to_path_buf()));
    }
    let mut bases = std::collections::HashMap::new();
    let mut playlists = Vec::new();
    for (track, (path, file, references)) in media {
        drop(file);
        let track_init = init
            .track_inits
            .iter()
            .find(|(id, _)| *id == track)
            .map(|(_, bytes)| bytes.clone())
            .unwrap_or_default();
        let timescale = init.segment.track(track).map_or(1, |t| t.timescale);
        let start = snapshot
            .segments
            .iter()
            .find_map(|s| s.tracks.iter().find(|t| t.track_id == track))
            .map_or(0, |t| t.start);
        let sidx = fmp4::sidx::encode(track, timescale, start, &references)
            .ok_or(PackageError::NothingToDescribe)?;
        let name = format!("{track}.mp4");
        let target = out.join(&name);
        let mut file = File::create(&target).map_err(io("create", &target))?;
        file.write_all(&track_init)
            .and_then(|()| file.write_all(&sidx))
            .map_err(io("write", &target))?;
        let mut media = File::open(&path).map_err(io("read", &path))?;
        let mut piece = vec![0u8; IO_PIECE];
        loop {
            let n = media.read(&mut piece).map_err(io("read", &path))?;
            if n == 0 {
                break;
            }
            file.write_all(&piece[..n]).map_err(io("write", &target))?;
        }
        std::fs::remove_file(&path).map_err(io("remove", &path))?;
        let init_len = track_init.len() as u64;
        playlists.push(OnDemandTrack {
            track,
            file: name.clone(),
            init_len,
            media_start: init_len + sidx.len() as u64,
            timescale,
            references,
        });
        bases.insert(
            track.to_string(),
            dash::SegmentBase {
                base_url: name,
                initialization: (0, init_len.saturating_sub(1)),
                index: (init_len, init_len + sidx.len() as u64 - 1),
            },
        );
    }
    let mpd = manifests::dash_mpd(&snapshot, &config, Vec::new(), 0, false)
        .ok_or(PackageError::NothingToDescribe)?;
    let text = dash::render_on_demand(&mpd, &|id| bases.get(id).cloned());
    let path = out.join("manifest.mpd");
    std::fs::write(&path, text).map_err(io("write", &path))?;
    write_on_demand_hls(out, &init.segment, &playlists)?;
    Ok(Packaged {
        segments: snapshot.segments.len(),
        duration_secs: snapshot.segments.iter().map(|s| s.duration_secs()).sum(),
        tracks: init.segment.tracks.len(),
    })
}

/// One track's on-demand file, as its HLS playlist lists it.
struct OnDemandTrack {
    track: u32,
    file: String,
    init_len: u64,
    /// Where the first segment starts: after the init and the `sidx`.
    media_start: u64,
    timescale: u32,
    references: Vec<fmp4::sidx::Reference>,
}

/// HLS over the on-demand files: a media playlist per track (`{track}.m3u8`) of byte ranges
/// (the init, then each segment, as the `sidx` indexes them), and `index.m3u8`, whose video
/// variant names the audio as a rendition group (or, without video, the audio is the variant).
fn write_on_demand_hls(
    out: &Path,
    init: &InitSegment,
    tracks: &[OnDemandTrack],
) -> Result<(), PackageError> {
    let write = |name: &str, text: String| {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|source| PackageError::Io {
            what: "write",
            path,
            source,
        })
    };
    // Peak bits per second of each track's segments.
    let mut peaks = std::collections::HashMap::new();
    for t in tracks {
        let scale = f64::from(t.timescale.max(1));
        let mut offset = t.media_start;
        let mut segments = Vec::with_capacity(t.references.len());
        let mut peak: f64 = 0.0;
        let mut longest: f64 = 0.0;
        for r in &t.references {
            let secs = f64::from(r.duration) / scale;
            longest = longest.max(secs);
            if secs > 0.0 {
                peak = peak.max(f64::from(r.size) * 8.0 / secs);
            }
            segments.push(hls::Segment {
                uri: t.file.clone(),
                duration_secs: secs,
                program_date_time_ms: None,
                parts: Vec::new(),
                discontinuity: false,
                map_uri: None,
                byte_range: Some(hls::ByteRange {
                    offset,
                    len: u64::from(r.size),
                }),
            });
            offset += u64::from(r.size);
        }
        peaks.insert(t.track, peak.ceil() as u64);
        let playlist = hls::MediaPlaylist {
            target_duration_secs: longest.round().max(1.0) as u64,
            part_target_secs: 0.0,
            media_sequence: 1,
            discontinuity_sequence: 0,
            map_uri: t.file.clone(),
            map_byte_range: Some(hls::ByteRange {
                offset: 0,
                len: t.init_len,
            }),
            segments,
            open_parts: Vec::new(),
            open_program_date_time_ms: None,
            preload_hint_uri: None,
            kind: hls::PlaylistKind::Finished,
        };
        write(&format!("{}.m3u8", t.track), hls::media(&playlist))?;
    }
    let of_kind = |kind: fmp4::TrackKind| {
        tracks
            .iter()
            .filter_map(move |t| init.track(t.track).filter(|i| i.kind == kind))
    };
    let audio: Vec<&fmp4::Track> = of_kind(fmp4::TrackKind::Audio).collect();
    let codec = |t: &fmp4::Track| t.codec.clone().unwrap_or_default();
    let mut multivariant = hls::Multivariant::default();
    let videos: Vec<&fmp4::Track> = of_kind(fmp4::TrackKind::Video).collect();
    if videos.is_empty() {
        for a in &audio {
            multivariant.variants.push(hls::Variant {
                bandwidth: peaks.get(&a.id).copied().unwrap_or(0),
                codecs: codec(a),
                resolution: None,
                frame_rate: None,
                uri: format!("{}.m3u8", a.id),
                audio_group: None,
            });
        }
    } else {
        for (i, a) in audio.iter().enumerate() {
            multivariant.audio.push(hls::AudioRendition {
                group_id: "audio".into(),
                name: format!("audio {}", a.id),
                uri: format!("{}.m3u8", a.id),
                channels: Some(a.channels).filter(|c| *c > 0),
                default: i == 0,
            });
        }
        let audio_peak = audio
            .iter()
            .filter_map(|a| peaks.get(&a.id))
            .copied()
            .max()
            .unwrap_or(0);
        for v in videos {
            let mut codecs = vec![codec(v)];
            codecs.extend(audio.first().map(|a| codec(a)));
            multivariant.variants.push(hls::Variant {
                bandwidth: peaks.get(&v.id).copied().unwrap_or(0) + audio_peak,
                codecs: codecs.join(","),
                resolution: Some((v.width, v.height)),
                frame_rate: None,
                uri: format!("{}.m3u8", v.id),
                audio_group: (!audio.is_empty()).then(|| "audio".to_string()),
            });
        }
    }
    write("index.m3u8", hls::multivariant(&multivariant))
}

/// How far (seconds of media) a fragment may arrive behind one of another track that comes
/// after it in time, and still be placed in order: what the muxer's interleaving may be.
/// This much media is held; ffmpeg interleaves within a second.
pub const REORDER_SECS: f64 = 10.0;

/// Cuts a file's fragments into the window, segment by segment.
struct Cutter<'a> {
    input: &'a Path,
    window: Window,
    init: Option<Arc<InitSegment>>,
    /// Per track, a one-sample fragment held until the track's next one says how long it
    /// lasts (ffmpeg's frag_every_frame writes a default that is not the frame's).
    held: std::collections::HashMap<u32, Fragment>,
    /// Fragments waiting to be placed, sorted by start time (video first at equal times):
    /// placed once the newest seen is REORDER_SECS past them, so a track interleaved late
    /// still lands in the segment its time belongs to.
    pending: std::collections::VecDeque<(f64, bool, Fragment)>,
    newest: f64,
    next_to_write: u64,
    /// The earliest presentation time of the reference track's first key frame, seconds:
    /// the static MPD's Period starts there (its `presentationTimeOffset`), so video whose
    /// first frame shows after its decode time (B-frames, no edit list) keeps its last frame
    /// inside the Period.
    presentation_start: Option<f64>,
    /// Whether the reference track's first key frame (the first segment) has been placed,
    /// and the other tracks' fragments from before it, held for that segment.
    started: bool,
    early: Vec<Fragment>,
    sink: &'a mut dyn FnMut(&MediaInit, &Segment) -> Result<(), PackageError>,
}

impl Cutter<'_> {
    fn broken(&self, source: fmp4::Error) -> PackageError {
        PackageError::Fmp4 {
            path: self.input.to_path_buf(),
            source,
        }
    }

    fn take(&mut self, unit: Unit) -> Result<(), PackageError> {
        match unit {
            Unit::Init(init) => {
                if self.init.is_some() {
                    return Err(PackageError::SeveralInits(self.input.to_path_buf()));
                }
                self.init = Some(init.clone());
                if self.window.set_init(init).is_none() {
                    return Err(PackageError::NoTracks(self.input.to_path_buf()));
                }
            }
            Unit::Fragment(fragment) => {
                let init = self
                    .init
                    .clone()
                    .ok_or_else(|| PackageError::NoInit(self.input.to_path_buf()))?;
                // One track a fragment, for Representations of one track each; the
                // video reference track's a group of pictures each, so segments can be
                // cut at any of its key frames.
                let reference = init
                    .reference_track()
                    .filter(|t| t.kind == fmp4::TrackKind::Video)
                    .map(|t| t.id);
                let parts = fmp4::split_by_track(&fragment, &init).map_err(|e| self.broken(e))?;
                for part in parts {
                    if part.runs.first().map(|r| r.track_id) == reference {
                        let pieces =
                            fmp4::split_at_key_frames(&part, &init).map_err(|e| self.broken(e))?;
                        for piece in pieces {
                            self.hold(piece, &init)?;
                        }
                    } else {
                        self.hold(part, &init)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A one-sample fragment lasts until its track's next one starts, whatever it says.
    fn hold(&mut self, fragment: Fragment, init: &InitSegment) -> Result<(), PackageError> {
        let Some(run) = fragment.runs.first().copied() else {
            return Ok(());
        };
        if let Some(before) = self.held.remove(&run.track_id) {
            let mut before = before;
            if let Some(prev) = before.runs.first().copied() {
                let actual = run.decode_time.saturating_sub(prev.decode_time);
                if actual > 0
                    && actual != prev.duration
                    && let Ok(actual) = u32::try_from(actual)
                {
                    before = fmp4::with_sample_duration(&before, actual, init)
                        .map_err(|e| self.broken(e))?;
                }
            }
            self.queue(before, init)?;
        }
        if run.sample_count == 1 {
            self.held.insert(run.track_id, fragment);
            Ok(())
        } else {
            self.queue(fragment, init)
        }
    }

    fn queue(&mut self, fragment: Fragment, init: &InitSegment) -> Result<(), PackageError> {
        let Some(time) = self.insert(fragment, init) else {
            return Ok(());
        };
        self.newest = self.newest.max(time);
        self.place(self.newest - REORDER_SECS)
    }

    /// Puts a fragment among the pending ones by its start time; that time, in seconds.
    fn insert(&mut self, fragment: Fragment, init: &InitSegment) -> Option<f64> {
        let run = fragment.runs.first()?;
        let track = init.track(run.track_id);
        let scale = f64::from(track.map_or(1, |t| t.timescale).max(1));
        let video = track.is_some_and(|t| t.kind == fmp4::TrackKind::Video);
        let time = run.decode_time as f64 / scale;
        let key = (time, !video);
        let at = self
            .pending
            .iter()
            .rposition(|(t, v, _)| (*t, *v) <= key)
            .map_or(0, |i| i + 1);
        self.pending.insert(at, (time, !video, fragment));
        Some(time)
    }

    /// Places the pending fragments that start before `limit`, and writes out what that
    /// completes. A fragment of another track than the reference that runs across one of the
    /// reference track's key frames is cut there first (its later part pending again, after
    /// the key frame), so that whichever key frame starts a segment, every track's samples
    /// from that time on are in that segment: a muxer's long audio fragments (a second, as
    /// ffmpeg's ismv and GStreamer's fragmented mp4mux write) do not run into the segment
    /// before, nor leave the next without audio.
    fn place(&mut self, limit: f64) -> Result<(), PackageError> {
        while self.pending.front().is_some_and(|(t, _, _)| *t < limit) {
            let Some((_, _, fragment)) = self.pending.pop_front() else {
                break;
            };
            let fragment = match self.cut_at_key(fragment)? {
                (first, Some(rest)) => {
                    if let Some(init) = self.init.clone() {
                        self.insert(rest, &init);
                    }
                    first
                }
                (whole, None) => whole,
            };
            if self.presentation_start.is_none() {
                self.presentation_start = self.presentation_start_of(&fragment)?;
            }
            // Before the reference track's first key frame there is no segment: other tracks'
            // samples from before it (audio that starts a frame before the video, as mux.js
            // writes it) wait, and go into the first segment with it, not lost.
            let reference = self
                .init
                .as_ref()
                .and_then(|i| i.reference_track())
                .map(|t| t.id);
            let first_key = reference.is_some_and(|r| fragment.starts_with_sync_of(r));
            let of_reference = reference.is_some_and(|r| fragment.run(r).is_some());
            if !self.started && !of_reference {
                self.early.push(fragment);
                continue;
            }
            // A file has no arrival times: every fragment counts as received now.
            let now = (Instant::now(), unix_millis(SystemTime::now()));
            self.window.push(fragment, now.0, now.1);
            if !self.started && first_key {
                self.started = true;
                for early in std::mem::take(&mut self.early) {
                    self.window.push(early, now.0, now.1);
                }
            }
        }
        self.next_to_write = self
            .window
            .write_completed(self.next_to_write, &mut *self.sink)?;
        Ok(())
    }

    /// Where the presentation starts, if `fragment` is the reference track's first key frame.
    fn presentation_start_of(&self, fragment: &Fragment) -> Result<Option<f64>, PackageError> {
        let Some(init) = self.init.as_ref() else {
            return Ok(None);
        };
        let Some(reference) = init.reference_track() else {
            return Ok(None);
        };
        if fragment.runs.len() != 1 || !fragment.starts_with_sync_of(reference.id) {
            return Ok(None);
        }
        let earliest = fmp4::earliest_presentation(fragment, init).map_err(|e| self.broken(e))?;
        // An edit list in the init already starts the presentation later (players that
        // read it, as ffmpeg does): only what it leaves over moves the Period.
        let edit = progressive::edit_start(init, reference.id).map_err(|e| self.broken(e))?;
        Ok(earliest.map(|ticks| {
            let ticks = (ticks as i64).saturating_sub(edit).max(0);
            ticks as f64 / f64::from(reference.timescale.max(1))
        }))
    }

    /// A fragment cut at the first key frame of the reference track (among those pending)
    /// that falls inside it, or left whole.
    fn cut_at_key(&self, fragment: Fragment) -> Result<(Fragment, Option<Fragment>), PackageError> {
        let Some(init) = self.init.as_ref() else {
            return Ok((fragment, None));
        };
        let Some(reference) = init.reference_track().map(|t| t.id) else {
            return Ok((fragment, None));
        };
        let (Some(run), Some(track)) = (
            fragment.runs.first().copied(),
            fragment.runs.first().and_then(|r| init.track(r.track_id)),
        ) else {
            return Ok((fragment, None));
        };
        if run.track_id == reference || fragment.runs.len() != 1 {
            return Ok((fragment, None));
        }
        let scale = f64::from(track.timescale.max(1));
        let (start, end) = (
            run.decode_time as f64 / scale,
            run.end_time() as f64 / scale,
        );
        let key = self
            .pending
            .iter()
            .filter(|(t, _, _)| *t > start && *t < end)
            .find(|(_, _, f)| f.starts_with_sync_of(reference))
            .map(|(t, _, _)| *t);
        let Some(key) = key else {
            return Ok((fragment, None));
        };
        let at = (key * scale).round() as u64;
        match fmp4::split_at(&fragment, at, init).map_err(|e| self.broken(e))? {
            Some((first, rest)) => Ok((first, Some(rest))),
            None => Ok((fragment, None)),
        }
    }

    /// The window's view at the end, and where the presentation starts (seconds).
    fn finish(mut self) -> Result<(Snapshot, f64), PackageError> {
        if let Some(init) = self.init.clone() {
            let held: Vec<Fragment> = self.held.drain().map(|(_, f)| f).collect();
            for fragment in held {
                self.queue(fragment, &init)?;
            }
        }
        self.place(f64::INFINITY)?;
        self.window.finish();
        self.window
            .write_completed(self.next_to_write, &mut *self.sink)?;
        let start = self.presentation_start.unwrap_or(0.0);
        Ok((self.window.snapshot(Status::Ended), start))
    }
}

/// The file cut into segments, each handed to `sink` as it completes; the window's view at
/// the end (segments without their media), the settings that cut it, and where its
/// presentation starts (seconds).
fn cut(
    input: &Path,
    options: Options,
    sink: &mut dyn FnMut(&MediaInit, &Segment) -> Result<(), PackageError>,
) -> Result<(Snapshot, HubConfig, f64), PackageError> {
    let segment_secs = options.segment_secs;
    if !(0.5..=30.0).contains(&segment_secs) {
        return Err(PackageError::SegmentDuration(segment_secs));
    }
    if let Some(secs) = options.fragment_secs
        && !(0.1..=segment_secs).contains(&secs)
    {
        return Err(PackageError::FragmentDuration(secs));
    }
    let config = HubConfig {
        segment_secs,
        window: usize::MAX,
        ..HubConfig::default()
    };
    let mut cutter = Cutter {
        input,
        window: Window::new(config.cutting(), 1),
        init: None,
        held: std::collections::HashMap::new(),
        pending: std::collections::VecDeque::new(),
        newest: f64::NEG_INFINITY,
        next_to_write: 1,
        presentation_start: None,
        started: false,
        early: Vec::new(),
        sink,
    };
    read_units(input, options.fragment_secs, &mut |unit| cutter.take(unit))?;
    let (snapshot, start) = cutter.finish()?;
    Ok((snapshot, config, start))
}

/// Reads an MP4 file, progressive or fragmented, as the units the live splitter would give:
/// the init, then fragments in file order. A progressive file's samples become a fragment
/// per track and cut of [`progressive::plan_fragments`] (video first); a fragmented file's
/// fragments pass as they are (after samples its `moov` may hold). `take` may stop the read
/// early by returning an error, which comes back out.
pub fn read_units(
    input: &Path,
    fragment_secs: Option<f64>,
    take: &mut dyn FnMut(Unit) -> Result<(), PackageError>,
) -> Result<(), PackageError> {
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| PackageError::Io { what, path, source }
    };
    let broken = |source| PackageError::Fmp4 {
        path: input.to_path_buf(),
        source,
    };
    let mut file = File::open(input).map_err(io("read", input))?;
    let file_len = file.metadata().map_err(io("read", input))?.len();
    let boxes = top_level(&mut file, file_len).map_err(broken)?;
    let moov = boxes.iter().find(|b| b.kind == Moov::KIND).copied();
    let Some(moov) = moov else {
        return Err(PackageError::NoInit(input.to_path_buf()));
    };
    let first_moof = boxes
        .iter()
        .find(|b| b.kind == FourCC::new(b"moof"))
        .map(|b| b.offset);
    // The moov's own samples: all of a progressive file's, or the first ones of a file that
    // goes on in fragments (ffmpeg's frag_keyframe without empty_moov).
    if moov.len > MAX_MOOV {
        return Err(PackageError::MoovTooLarge {
            path: input.to_path_buf(),
            size: moov.len,
        });
    }
    let moov_bytes = read_range(&mut file, moov.offset, moov.len).map_err(io("read", input))?;
    let parsed = Moov::decode(&moov_bytes).map_err(|e| broken(at_offset(e, moov.offset)))?;
    let with_samples = progressive::has_samples(&parsed).then_some(parsed);
    let mut init = None;
    if let Some(moov) = &with_samples {
        init = Some(progressive_units(
            &mut file,
            file_len,
            moov,
            fragment_secs,
            take,
            input,
        )?);
    }
    if with_samples.is_none() || first_moof.is_some() {
        // The splitter reads the fragments, the file fed to it a piece at a time; after the
        // moov's samples, from the first moof on, under the init already taken, counting
        // offsets from the file's start.
        let (mut splitter, from) = match (init, first_moof) {
            (Some(init), Some(at)) => (
                Splitter::with_init(fmp4::DEFAULT_MAX_BOX_SIZE, init).starting_at(at),
                at,
            ),
            _ => (Splitter::default(), 0),
        };
        file.seek(SeekFrom::Start(from))
            .map_err(io("read", input))?;
        let mut left = file_len - from;
        while left > 0 {
            let len = left.min(READ_CHUNK as u64) as usize;
            let mut chunk = vec![0u8; len];
            read_in_pieces(&mut file, &mut chunk).map_err(io("read", input))?;
            left -= len as u64;
            splitter.feed(Bytes::from(chunk));
            loop {
                match splitter.poll() {
                    Ok(Some(unit)) => take(unit)?,
                    Ok(None) => break,
                    Err(err) => return Err(broken(err)),
                }
            }
        }
        splitter.finish().map_err(broken)?;
    }
    Ok(())
}

/// Fills `buf` from `file` an [`IO_PIECE`] at a time (large reads are as slow as large
/// writes).
fn read_in_pieces(file: &mut File, buf: &mut [u8]) -> std::io::Result<()> {
    for piece in buf.chunks_mut(IO_PIECE) {
        file.read_exact(piece)?;
    }
    Ok(())
}

/// What the splitter is fed at a time from a fragmented file.
const READ_CHUNK: usize = 4 << 20;

fn write_manifests(
    input: &Path,
    out: &Path,
    snapshot: &Snapshot,
    config: &HubConfig,
    presentation_start: f64,
) -> Result<Packaged, PackageError> {
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| PackageError::Io { what, path, source }
    };
    let init = snapshot
        .init
        .as_ref()
        .ok_or_else(|| PackageError::NoInit(input.to_path_buf()))?;
    if snapshot.segments.is_empty() {
        return Err(PackageError::NoMedia(input.to_path_buf()));
    }
    let write = |path: &Path, bytes: &[u8]| std::fs::write(path, bytes).map_err(io("write", path));
    let mut mpd = manifests::dash_mpd(snapshot, config, Vec::new(), 0, false)
        .ok_or(PackageError::NothingToDescribe)?;
    // Every track's Period starts at the same instant: the reference track's first frame.
    for period in &mut mpd.periods {
        for set in &mut period.adaptation_sets {
            let r = &mut set.representation;
            r.presentation_time_offset =
                (presentation_start * f64::from(r.timescale)).round() as u64;
        }
    }
    write(&out.join("manifest.mpd"), dash::render(&mpd).as_bytes())?;
    let uris = HlsUris {
        map: "init.mp4",
        segment_prefix: "",
        part_prefix: "",
        query: "",
    };
    let playlist = manifests::hls_media(snapshot, config, &uris, hls::PlaylistKind::Finished)
        .ok_or(PackageError::NothingToDescribe)?;
    write(&out.join("index.m3u8"), hls::media(&playlist).as_bytes())?;
    Ok(Packaged {
        segments: snapshot.segments.len(),
        duration_secs: snapshot.segments.iter().map(|s| s.duration_secs()).sum(),
        tracks: init.segment.tracks.len(),
    })
}

/// An error inside a box read on its own, placed at the box's offset in the file.
fn at_offset(err: fmp4::Error, offset: u64) -> fmp4::Error {
    fmp4::Error::new(err.kind, err.offset.saturating_add(offset), err.path)
}

fn read_range(file: &mut File, offset: u64, len: u64) -> std::io::Result<Bytes> {
    let len = usize::try_from(len).map_err(|_| std::io::Error::other("range too large"))?;
    let mut out = vec![0u8; len];
    file.seek(SeekFrom::Start(offset))?;
    read_in_pieces(file, &mut out)?;
    Ok(Bytes::from(out))
}

/// A progressive file as units: its fragmented init, then a fragment per cut of
/// [`progressive::plan_fragments`], each read from the file by the byte ranges of its samples
/// (consecutive samples of a track read at once) into the fragment's own buffer.
fn progressive_units(
    file: &mut File,
    file_len: u64,
    moov: &Moov,
    fragment_secs: Option<f64>,
    take: &mut dyn FnMut(Unit) -> Result<(), PackageError>,
    input: &Path,
) -> Result<Arc<InitSegment>, PackageError> {
    let broken = |source| PackageError::Fmp4 {
        path: input.to_path_buf(),
        source,
    };
    let io = |source| PackageError::Io {
        what: "read",
        path: input.to_path_buf(),
        source,
    };
    let tracks = progressive::sample_tables(moov, file_len).map_err(broken)?;
    let init = Arc::new(InitSegment::parse(progressive::fragmented_init(moov), 0).map_err(broken)?);
    take(Unit::Init(init.clone()))?;
    let plan = progressive::plan_fragments(&tracks, fragment_secs);
    // A fragment per track and cut, video first: each DASH Representation is one track, and
    // its segments are its own fragments (a moof of several tracks would carry the others').
    let mut order: Vec<usize> = (0..tracks.len()).collect();
    order.sort_by_key(|&t| tracks[t].kind != progressive::Kind::Video);
    let mut sequence = 0u32;
    for ranges in &plan {
        for &t in &order {
            let samples = &tracks[t].samples[ranges[t].clone()];
            if samples.is_empty() {
                continue;
            }
            sequence = sequence.wrapping_add(1);
            let run = Run {
                track_id: tracks[t].track_id,
                samples,
            };
            let (mut buf, media) = progressive::fragment_header(sequence, &[run]);
            let start = buf.len();
            let media = usize::try_from(media)
                .map_err(|_| io(std::io::Error::other("fragment too large")))?;
            buf.resize(start + media, 0);
            let mut at = start;
            // Samples that follow each other in the file are read in one go.
            let mut i = 0;
            while i < samples.len() {
                let first = samples[i];
                let mut len = u64::from(first.size);
                let mut j = i + 1;
                while j < samples.len() && samples[j].offset == first.offset + len {
                    len += u64::from(samples[j].size);
                    j += 1;
                }
                let len = len as usize;
                file.seek(SeekFrom::Start(first.offset)).map_err(io)?;
                read_in_pieces(file, &mut buf[at..at + len]).map_err(io)?;
                at += len;
                i = j;
            }
            let fragment = Fragment::parse(buf.freeze(), 0, &init).map_err(broken)?;
            take(Unit::Fragment(fragment))?;
        }
    }
    Ok(init)
}

/// What `package` would do with `input`, for `probe`: its tracks, their length, the video's
/// key-frame spacing, and the segments it would cut (number, start, length, size).
pub fn describe(input: &Path, options: Options) -> Result<String, PackageError> {
    use std::fmt::Write as _;
    let (snapshot, _, _) = cut(input, options, &mut |_, _| Ok(()))?;
    let init = snapshot
        .init
        .as_ref()
        .ok_or_else(|| PackageError::NoInit(input.to_path_buf()))?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "package --segment-duration {}{}:",
        options.segment_secs,
        options
            .fragment_secs
            .map_or(String::new(), |f| format!(" --fragment-duration {f}"))
    );
    for track in &init.segment.tracks {
        let ticks: u64 = snapshot
            .segments
            .iter()
            .flat_map(|s| s.tracks.iter())
            .filter(|t| t.track_id == track.id)
            .map(|t| t.duration)
            .sum();
        let secs = ticks as f64 / f64::from(track.timescale.max(1));
        let size = if track.width > 0 {
            format!(" {}x{}", track.width, track.height)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  track {} {:?} {}{size} timescale {} {secs:.3} s",
            track.id,
            track.kind,
            track.codec.as_deref().unwrap_or("(codec unknown)"),
            track.timescale
        );
    }
    // Key frames: the reference track's decode times of the fragments that start with one.
    let reference = init.reference_track;
    let scale = f64::from(
        init.segment
            .track(reference)
            .map_or(1, |t| t.timescale)
            .max(1),
    );
    let keys: Vec<f64> = snapshot
        .segments
        .iter()
        .flat_map(|s| s.fragments.iter())
        .filter(|f| f.key)
        .filter_map(|f| f.fragment.run(reference))
        .map(|r| r.decode_time as f64 / scale)
        .collect();
    let gaps: Vec<f64> = keys.windows(2).map(|w| w[1] - w[0]).collect();
    if let (Some(min), Some(max)) = (
        gaps.iter().copied().reduce(f64::min),
        gaps.iter().copied().reduce(f64::max),
    ) {
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let _ = writeln!(
            out,
            "  key frames: {} on track {reference}, every {min:.3}–{max:.3} s (mean {mean:.3} s)",
            keys.len()
        );
    } else {
        let _ = writeln!(out, "  key frames: {} on track {reference}", keys.len());
    }
    let _ = writeln!(out, "  segments: {}", snapshot.segments.len());
    for segment in &snapshot.segments {
        let _ = writeln!(
            out,
            "    {:>4}  start {:>9.3} s  {:>6.3} s  {:>4} fragments  {:>9} bytes",
            segment.number,
            segment.start as f64 / f64::from(segment.timescale.max(1)),
            segment.duration_secs(),
            segment.fragments.len(),
            segment.bytes
        );
    }
    Ok(out)
}
