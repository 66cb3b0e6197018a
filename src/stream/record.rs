//! Recording: a stream's init segment and every segment it completes, kept on disk with an MPD
//! and an HLS playlist that describe what is there, under one folder per stream.
//!
//! ```text
//! DIR/{name}/init.mp4            the init segment (init-{n}.mp4 for a later, different one)
//! DIR/{name}/{n}.m4s             each segment, byte for byte what /dash/{name}/{n}.m4s served
//! DIR/{name}/index.m3u8          HLS playlist of those: EVENT while recording, then ENDLIST
//! DIR/{name}/{track}/…           the same per track, as /dash/{name}/{track}/ serves them:
//!                                DASH players (dash.js, ffmpeg) want a track per
//!                                Representation
//! DIR/{name}/manifest.mpd        static MPD of the per-track files, a Period per run
//! DIR/{name}/segments.jsonl       the index of every segment kept (see `archive`)
//! ```
//!
//! A server started again over a recording's folder goes on with it: it reads the index,
//! lists the earlier runs in the manifests, numbers its segments after theirs, and rotates
//! them away in turn.
//!
//! Files are written whole and renamed into place, and the index after every segment, so a
//! recording that is cut off (even by SIGKILL) plays up to its last complete segment. Both
//! manifests are rewritten after every segment while they list up to [`MANIFEST_SEGMENTS`],
//! then after every `listed / MANIFEST_SEGMENTS` segments, so a long recording does not
//! rewrite megabytes every segment; after a crash they may lack that many of the newest,
//! which the index (what a restarted server and the playback routes read) has. A clean end
//! (Ctrl-C, the source ending) also keeps the segment in progress and finishes the playlist.
//! The oldest segments go when a size or age limit is passed. The
//! recorder reads the hub like any viewer and does its file work off the runtime's threads: a
//! slow or full disk costs the recording, never the live stream; errors are logged.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;

use super::archive::{Archive, Entry, EntryTrack};
use super::manifests::{self, Listing};
use super::{Hub, MediaInit, Segment, Status, TrackTiming, concat, unix_millis};
use crate::manifest::dash::{self, Mpd, Period};
use crate::manifest::hls::{self, MediaPlaylist, PlaylistKind};

/// Where and how much to record.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordConfig {
    /// The stream's own folder (`DIR/{name}`).
    pub dir: PathBuf,
    /// Oldest segments are removed while the recording is larger than this.
    pub max_bytes: Option<u64>,
    /// ...or holds segments older than this.
    pub max_age: Option<Duration>,
}

/// An error is logged at most this often, so a full disk does not flood the log.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// One segment on disk.
#[derive(Debug, Clone)]
struct Recorded {
    number: u64,
    bytes: u64,
    /// Reference track time and duration, in its timescale.
    start: u64,
    duration: u64,
    wall_start_ms: u64,
    /// Each track's time and duration, and the size of its copy (none if not kept apart).
    tracks: Vec<(TrackTiming, u64)>,
}

impl Recorded {
    /// Its line in the index.
    fn entry(&self, run: &Run, key: bool) -> Entry {
        Entry {
            number: self.number,
            init: run.init_file.clone(),
            wall_start_ms: self.wall_start_ms,
            start: self.start,
            duration: self.duration,
            timescale: reference_timescale(&run.init),
            bytes: self.bytes,
            key,
            tracks: self
                .tracks
                .iter()
                .map(|(t, bytes)| EntryTrack {
                    id: t.track_id,
                    start: t.start,
                    duration: t.duration,
                    bytes: *bytes,
                })
                .collect(),
        }
    }
}

impl From<&Entry> for Recorded {
    fn from(entry: &Entry) -> Recorded {
        Recorded {
            number: entry.number,
            bytes: entry.bytes,
            start: entry.start,
            duration: entry.duration,
            wall_start_ms: entry.wall_start_ms,
            tracks: entry
                .tracks
                .iter()
                .map(|t| {
                    let timing = TrackTiming {
                        track_id: t.id,
                        start: t.start,
                        duration: t.duration,
                    };
                    (timing, t.bytes)
                })
                .collect(),
        }
    }
}

/// Consecutive segments with one init: a Period of the MPD, a run between discontinuities of
/// the playlist.
#[derive(Debug)]
struct Run {
    init_file: String,
    init: Arc<MediaInit>,
    /// Each track kept in a folder of its own (every fragment carried one track).
    per_track: bool,
    segments: VecDeque<Recorded>,
}

/// What the recorder knows of its folder.
struct Recording {
    config: RecordConfig,
    archive: Arc<Archive>,
    runs: VecDeque<Run>,
    /// The last segment written (or given up on), so each is taken once.
    last_number: Option<u64>,
    /// Runs rotated away whole: the playlist's discontinuity sequence.
    dropped_runs: u64,
    rotated: bool,
    /// Segments written since the manifests were last rewritten.
    since_manifests: u64,
    last_error_log: Option<Instant>,
}

/// How many segments the on-disk manifests list before they are rewritten less often than
/// every segment: at most about this many entries are written per segment, however long the
/// recording.
const MANIFEST_SEGMENTS: u64 = 1000;

/// Whether manifests listing `listed` segments, `since` of them new since the last rewrite,
/// are due a rewrite: every segment up to [`MANIFEST_SEGMENTS`], then every
/// `listed / MANIFEST_SEGMENTS` (rounded up).
fn manifests_due(listed: u64, since: u64) -> bool {
    since >= listed.div_ceil(MANIFEST_SEGMENTS).max(1)
}

/// A segment to write, taken from the hub.
struct Pending {
    init: Arc<MediaInit>,
    segment: Arc<Segment>,
    per_track: bool,
}

/// Records `hub` until `cancel` or the stream's end, going on from what `archive` (the
/// folder's index) lists.
pub async fn run(
    hub: Arc<Hub>,
    config: RecordConfig,
    archive: Arc<Archive>,
    cancel: CancellationToken,
) {
    tracing::info!(dir = %config.dir.display(), "recording");
    let mut recording =
        match tokio::task::spawn_blocking(move || Recording::resume(config, archive)).await {
            Ok(recording) => recording,
            Err(err) => {
                tracing::error!("recording stopped: {err}");
                return;
            }
        };
    let mut updates = hub.watch();
    loop {
        let stopping = tokio::select! {
            changed = updates.changed() => changed.is_err(),
            _ = cancel.cancelled() => true,
        };
        let snapshot = hub.snapshot();
        let ended = matches!(snapshot.status, Status::Ended | Status::Failed(_));
        let finished = stopping || ended;
        let mut pending = Vec::new();
        if let Some(init) = &snapshot.init {
            let open = snapshot
                .open
                .iter()
                .filter(|s| finished && !s.fragments.is_empty());
            for segment in snapshot.segments.iter().chain(open) {
                if recording.last_number.is_some_and(|n| segment.number <= n) {
                    continue;
                }
                pending.push(Pending {
                    init: init.clone(),
                    segment: segment.clone(),
                    per_track: snapshot.single_track_fragments,
                });
            }
        }
        if pending.is_empty() && !finished {
            continue;
        }
        recording = match tokio::task::spawn_blocking(move || {
            recording.write(pending, finished);
            recording
        })
        .await
        {
            Ok(recording) => recording,
            Err(err) => {
                tracing::error!("recording stopped: {err}");
                return;
            }
        };
        if finished {
            tracing::info!(segments = recording.listed(), "recording finished");
            return;
        }
    }
}

impl Recording {
    /// The recorder of `config.dir`, holding the runs its index lists (an earlier server's).
    fn resume(config: RecordConfig, archive: Arc<Archive>) -> Recording {
        let mut recording = Recording {
            config,
            archive: archive.clone(),
            runs: VecDeque::new(),
            last_number: None,
            dropped_runs: 0,
            rotated: false,
            // A resumed recording's manifests are rewritten with its first segment.
            since_manifests: u64::MAX,
            last_error_log: None,
        };
        let dir = recording.config.dir.clone();
        recording.runs = runs_from(&dir, archive.entries().iter(), |what| {
            recording_error(&mut recording.last_error_log, &dir, what)
        });
        // Whatever the new run's init, it does not overwrite the earlier runs'.
        recording.rotated = !recording.runs.is_empty();
        recording
    }

    fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// The segments kept, over every run: what the manifests list.
    fn listed(&self) -> u64 {
        self.runs.iter().map(|r| r.segments.len() as u64).sum()
    }

    fn error(&mut self, what: std::fmt::Arguments<'_>) {
        recording_error(&mut self.last_error_log, &self.config.dir, what);
    }

    /// Writes new segments, drops what is over the limits, and rewrites both manifests.
    fn write(&mut self, pending: Vec<Pending>, finished: bool) {
        if let Err(err) = std::fs::create_dir_all(self.dir()) {
            self.error(format_args!("cannot create the folder: {err}"));
            return;
        }
        let mut entries = Vec::new();
        for Pending {
            init,
            segment,
            per_track,
        } in pending
        {
            if let Some(last) = self.last_number
                && segment.number > last + 1
            {
                tracing::warn!(
                    missed = segment.number - last - 1,
                    "recording fell behind the live window and left segments out"
                );
            }
            self.last_number = Some(segment.number);
            let Some(run) = self.run_for(&init, segment.number, per_track) else {
                continue;
            };
            let data = concat(segment.chunks());
            let name = format!("{}.m4s", segment.number);
            if let Err(err) = write_atomically(&self.dir().join(&name), &data) {
                self.error(format_args!("cannot write {name}: {err}"));
                continue;
            }
            let mut tracks = Vec::new();
            for timing in &segment.tracks {
                let mut size = 0;
                if self.runs[run].per_track {
                    let bytes = concat(segment.track_chunks(timing.track_id));
                    let path = self.dir().join(timing.track_id.to_string()).join(&name);
                    if let Err(err) = write_atomically(&path, &bytes) {
                        self.error(format_args!("cannot write {}: {err}", path.display()));
                    }
                    size = bytes.len() as u64;
                }
                tracks.push((*timing, size));
            }
            let duration = if segment.complete {
                segment.duration
            } else {
                // The segment in progress at a clean stop: as long as its reference track.
                segment
                    .tracks
                    .iter()
                    .find(|t| t.start == segment.start)
                    .map_or(0, |t| t.duration)
            };
            let recorded = Recorded {
                number: segment.number,
                bytes: data.len() as u64,
                start: segment.start,
                duration,
                wall_start_ms: segment.wall_start_ms,
                tracks,
            };
            let key = segment.fragments.first().is_some_and(|f| f.key);
            entries.push(recorded.entry(&self.runs[run], key));
            self.runs[run].segments.push_back(recorded);
        }
        let written = entries.len() as u64;
        if let Err(err) = self.archive.append(entries) {
            self.error(format_args!("cannot write the index: {err}"));
        }
        self.rotate();
        self.since_manifests = self.since_manifests.saturating_add(written);
        if finished || manifests_due(self.listed(), self.since_manifests) {
            self.write_manifests(finished);
            self.since_manifests = 0;
        }
    }

    /// The run a segment with `init` and `number` belongs to, starting one (and writing its
    /// inits) at a new init or after a gap in the numbers; `None` if its init cannot be
    /// written.
    fn run_for(&mut self, init: &Arc<MediaInit>, number: u64, per_track: bool) -> Option<usize> {
        if let Some(run) = self.runs.back() {
            let same_init = run.init.segment.bytes == init.segment.bytes;
            let follows = run.segments.back().is_none_or(|s| s.number + 1 == number);
            if same_init && follows && run.per_track == per_track {
                return Some(self.runs.len() - 1);
            }
            if same_init {
                // A gap: a new Period, the same init files.
                let init_file = run.init_file.clone();
                self.runs.push_back(Run {
                    init_file,
                    init: init.clone(),
                    per_track: per_track && run.per_track,
                    segments: VecDeque::new(),
                });
                return Some(self.runs.len() - 1);
            }
        }
        let init_file = if self.runs.is_empty() && !self.rotated {
            "init.mp4".to_string()
        } else {
            format!("init-{number}.mp4")
        };
        let mut files = vec![(self.dir().join(&init_file), init.segment.bytes.clone())];
        if per_track {
            for (track, bytes) in &init.track_inits {
                let dir = self.dir().join(track.to_string());
                if let Err(err) = std::fs::create_dir_all(&dir) {
                    self.error(format_args!("cannot create {}: {err}", dir.display()));
                    return None;
                }
                files.push((dir.join(&init_file), bytes.clone()));
            }
        }
        for (path, bytes) in files {
            if let Err(err) = write_atomically(&path, &bytes) {
                self.error(format_args!("cannot write {}: {err}", path.display()));
                return None;
            }
        }
        self.runs.push_back(Run {
            init_file,
            init: init.clone(),
            per_track,
            segments: VecDeque::new(),
        });
        Some(self.runs.len() - 1)
    }

    /// Removes a file that may already be gone.
    fn remove(&mut self, path: &Path) {
        if let Err(err) = std::fs::remove_file(path)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            self.error(format_args!("cannot remove {}: {err}", path.display()));
        }
    }

    /// Removes the oldest segments while the recording is over its size or age limit; the
    /// newest one always stays.
    fn rotate(&mut self) {
        let now_ms = unix_millis(SystemTime::now());
        let mut dropped = None;
        loop {
            let total: u64 = self
                .runs
                .iter()
                .flat_map(|r| &r.segments)
                .map(|s| s.bytes)
                .sum();
            let count: usize = self.runs.iter().map(|r| r.segments.len()).sum();
            let Some(oldest) = self.runs.front().and_then(|r| r.segments.front()) else {
                break;
            };
            let too_big = self.config.max_bytes.is_some_and(|max| total > max);
            let too_old = self.config.max_age.is_some_and(|age| {
                now_ms.saturating_sub(oldest.wall_start_ms) > age.as_millis() as u64
            });
            if count <= 1 || !(too_big || too_old) {
                break;
            }
            let name = format!("{}.m4s", oldest.number);
            dropped = Some(oldest.number);
            let mut paths = vec![self.dir().join(&name)];
            paths.extend(
                oldest
                    .tracks
                    .iter()
                    .filter(|(_, size)| *size > 0)
                    .map(|(t, _)| self.dir().join(t.track_id.to_string()).join(&name)),
            );
            for path in paths {
                self.remove(&path);
            }
            self.rotated = true;
            if let Some(run) = self.runs.front_mut() {
                run.segments.pop_front();
            }
            if self.runs.front().is_some_and(|r| r.segments.is_empty())
                && let Some(run) = self.runs.pop_front()
            {
                self.dropped_runs += 1;
                if !self.runs.iter().any(|r| r.init_file == run.init_file) {
                    let mut paths = vec![self.dir().join(&run.init_file)];
                    paths.extend(
                        run.init.track_inits.iter().map(|(track, _)| {
                            self.dir().join(track.to_string()).join(&run.init_file)
                        }),
                    );
                    for path in paths {
                        self.remove(&path);
                    }
                }
            }
        }
        if let Some(number) = dropped
            && let Err(err) = self.archive.drop_through(number)
        {
            self.error(format_args!("cannot write the index: {err}"));
        }
    }

    fn write_manifests(&mut self, finished: bool) {
        if self.runs.iter().all(|r| r.segments.is_empty()) {
            return;
        }
        let kind = if finished {
            PlaylistKind::Finished
        } else {
            PlaylistKind::Recording {
                rotating: self.config.max_bytes.is_some() || self.config.max_age.is_some(),
            }
        };
        let playlist = hls::media(&self.playlist(kind));
        if let Err(err) = write_atomically(&self.dir().join("index.m3u8"), playlist.as_bytes()) {
            self.error(format_args!("cannot write index.m3u8: {err}"));
        }
        let mpd = dash::render(&self.mpd());
        if let Err(err) = write_atomically(&self.dir().join("manifest.mpd"), mpd.as_bytes()) {
            self.error(format_args!("cannot write manifest.mpd: {err}"));
        }
    }

    fn playlist(&self, kind: PlaylistKind) -> MediaPlaylist {
        playlist_of(&self.runs, kind, self.dropped_runs, "")
    }

    fn mpd(&self) -> Mpd {
        mpd_of(&self.runs, "")
    }
}

fn playlist_of(
    runs: &VecDeque<Run>,
    kind: PlaylistKind,
    dropped_runs: u64,
    prefix: &str,
) -> MediaPlaylist {
    let mut segments = Vec::new();
    let mut longest: f64 = 0.0;
    for (index, run) in runs.iter().enumerate() {
        let timescale = f64::from(reference_timescale(&run.init).max(1));
        for (i, s) in run.segments.iter().enumerate() {
            let duration_secs = s.duration as f64 / timescale;
            longest = longest.max(duration_secs);
            let starts_run = i == 0 && index > 0;
            segments.push(hls::Segment {
                uri: format!("{prefix}{}.m4s", s.number),
                duration_secs,
                program_date_time_ms: Some(s.wall_start_ms),
                parts: Vec::new(),
                discontinuity: starts_run,
                map_uri: starts_run.then(|| format!("{prefix}{}", run.init_file)),
                byte_range: None,
            });
        }
    }
    MediaPlaylist {
        target_duration_secs: longest.round().max(1.0) as u64,
        part_target_secs: 0.0,
        media_sequence: runs
            .front()
            .and_then(|r| r.segments.front())
            .map_or(0, |s| s.number),
        discontinuity_sequence: dropped_runs,
        map_uri: runs.front().map_or_else(
            || format!("{prefix}init.mp4"),
            |r| format!("{prefix}{}", r.init_file),
        ),
        map_byte_range: None,
        segments,
        open_parts: Vec::new(),
        open_program_date_time_ms: None,
        preload_hint_uri: None,
        kind,
    }
}

/// A static MPD of `runs`: a Period per run, an AdaptationSet per track where the tracks
/// were kept apart, else one muxed Representation; file names after `prefix`.
fn mpd_of(runs: &VecDeque<Run>, prefix: &str) -> Mpd {
    let mut periods = Vec::new();
    let mut start_secs = 0.0;
    let mut longest: f64 = 0.0;
    for (index, run) in runs.iter().enumerate() {
        let Some(first) = run.segments.front() else {
            continue;
        };
        let timescale = reference_timescale(&run.init);
        let secs = run.segments.iter().map(|s| s.duration).sum::<u64>() as f64
            / f64::from(timescale.max(1));
        longest = run
            .segments
            .iter()
            .map(|s| s.duration as f64 / f64::from(timescale.max(1)))
            .fold(longest, f64::max);
        let bandwidth = |bytes: u64| {
            if secs > 0.0 {
                ((bytes * 8) as f64 / secs) as u64
            } else {
                0
            }
        };
        let init = &run.init.segment;
        let adaptation_sets = if run.per_track {
            init.tracks
                .iter()
                .enumerate()
                .filter_map(|(i, track)| {
                    let own = || {
                        run.segments
                            .iter()
                            .filter_map(|s| s.tracks.iter().find(|(t, _)| t.track_id == track.id))
                    };
                    let timeline: Vec<(u64, u64)> =
                        own().map(|(t, _)| (t.start, t.duration)).collect();
                    manifests::track_set(
                        i,
                        track,
                        bandwidth(own().map(|(_, size)| size).sum()),
                        None,
                        Listing {
                            initialization: format!("{prefix}$RepresentationID$/{}", run.init_file),
                            media: format!("{prefix}$RepresentationID$/$Number$.m4s"),
                            start_number: first.number,
                            presentation_time_offset: timeline.first().map_or(0, |t| t.0),
                            timeline,
                        },
                    )
                })
                .collect()
        } else {
            vec![manifests::muxed_set(
                init,
                bandwidth(run.segments.iter().map(|s| s.bytes).sum()),
                None,
                timescale,
                Listing {
                    initialization: format!("{prefix}{}", run.init_file),
                    media: format!("{prefix}$Number$.m4s"),
                    start_number: first.number,
                    presentation_time_offset: first.start,
                    timeline: run.segments.iter().map(|s| (s.start, s.duration)).collect(),
                },
            )]
        };
        periods.push(Period {
            id: index.to_string(),
            start_secs,
            adaptation_sets,
        });
        start_secs += secs;
    }
    Mpd {
        dynamic: false,
        availability_start_ms: 0,
        publish_time_ms: 0,
        minimum_update_period_secs: 0.0,
        time_shift_buffer_depth_secs: 0.0,
        suggested_presentation_delay_secs: 0.0,
        min_buffer_time_secs: longest.max(1.0),
        max_segment_duration_secs: longest.max(1.0),
        media_presentation_duration_secs: Some(start_secs),
        utc_timing_urls: Vec::new(),
        low_latency: None,
        periods,
    }
}

/// Logs a recording's error at most every [`ERROR_LOG_INTERVAL`].
fn recording_error(last: &mut Option<Instant>, dir: &Path, what: std::fmt::Arguments<'_>) {
    let now = Instant::now();
    if last.is_none_or(|t| now.duration_since(t) >= ERROR_LOG_INTERVAL) {
        tracing::error!(dir = %dir.display(), "recording: {what}");
        *last = Some(now);
    }
}

/// An init segment of a recording, read back from its folder.
fn load_init(path: &Path) -> Result<Arc<MediaInit>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let init = crate::fmp4::InitSegment::parse(bytes.into(), 0).map_err(|e| e.to_string())?;
    MediaInit::new(Arc::new(init), 0)
        .map(Arc::new)
        .ok_or_else(|| "it has no track to time segments by".to_string())
}

/// The runs of the segments `entries` lists (in order), their inits read from `dir`; the
/// segments of an init that cannot be read are left out, said through `error`.
fn runs_from<'a>(
    dir: &Path,
    entries: impl Iterator<Item = &'a Entry>,
    mut error: impl FnMut(std::fmt::Arguments<'_>),
) -> VecDeque<Run> {
    let mut runs: VecDeque<Run> = VecDeque::new();
    let mut inits: Vec<(String, Option<Arc<MediaInit>>)> = Vec::new();
    for entry in entries {
        let init = match inits.iter().find(|(name, _)| *name == entry.init) {
            Some((_, init)) => init.clone(),
            None => {
                let path = dir.join(&entry.init);
                let init = match load_init(&path) {
                    Ok(init) => Some(init),
                    Err(err) => {
                        error(format_args!(
                            "cannot read {} back ({err}): the segments that follow it are left out of the manifests",
                            path.display()
                        ));
                        None
                    }
                };
                inits.push((entry.init.clone(), init.clone()));
                init
            }
        };
        let Some(init) = init else {
            continue;
        };
        let per_track = !entry.tracks.is_empty() && entry.tracks.iter().all(|t| t.bytes > 0);
        let follows = runs.back().is_some_and(|run| {
            run.init_file == entry.init
                && run.per_track == per_track
                && run
                    .segments
                    .back()
                    .is_some_and(|s| s.number + 1 == entry.number)
        });
        if !follows {
            runs.push_back(Run {
                init_file: entry.init.clone(),
                init,
                per_track,
                segments: VecDeque::new(),
            });
        }
        if let Some(run) = runs.back_mut() {
            run.segments.push_back(Recorded::from(entry));
        }
    }
    runs
}

/// A stretch of a recording (the segments an index lists), as manifests for players: the
/// playback of `/dash/{name}/manifest.mpd?start=…` and `/hls/{name}/index.m3u8?start=…`.
pub struct Stretch {
    runs: VecDeque<Run>,
}

impl Stretch {
    /// The stretch of `entries` (in order) of the recording in `dir`; `Err` says why there is
    /// nothing to play (an init that cannot be read back).
    pub fn new(dir: &Path, entries: &[Entry]) -> Result<Stretch, String> {
        let mut problem = None;
        let runs = runs_from(dir, entries.iter(), |what| {
            problem.get_or_insert_with(|| what.to_string());
        });
        if runs.is_empty() {
            return Err(problem.unwrap_or_else(|| "no segments".into()));
        }
        Ok(Stretch { runs })
    }

    /// A static MPD of the stretch, its files named after `prefix` (`/recordings/cam/`).
    pub fn mpd(&self, prefix: &str) -> Mpd {
        mpd_of(&self.runs, prefix)
    }

    /// An HLS media playlist of the stretch: `EVENT` while `open` (more is being recorded),
    /// else finished.
    pub fn playlist(&self, prefix: &str, open: bool) -> MediaPlaylist {
        let kind = if open {
            PlaylistKind::Recording { rotating: false }
        } else {
            PlaylistKind::Finished
        };
        playlist_of(&self.runs, kind, 0, prefix)
    }
}

/// The timescale segments are timed in: the reference track's (video where there is video).
fn reference_timescale(init: &MediaInit) -> u32 {
    init.segment
        .track(init.reference_track)
        .map_or(1, |t| t.timescale)
}

/// Writes `path` whole or not at all: a reader never sees half a file.
fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".part");
    let temp = PathBuf::from(temp);
    super::write_file(&temp, data)?;
    std::fs::rename(&temp, path)
}

#[cfg(test)]
mod tests {
    use super::{MANIFEST_SEGMENTS, manifests_due};

    #[test]
    fn manifests_are_rewritten_every_segment_until_long_then_less_often() {
        for listed in [1, 2, 500, MANIFEST_SEGMENTS] {
            assert!(manifests_due(listed, 1), "{listed} listed");
            assert!(!manifests_due(listed, 0), "{listed} listed, none new");
        }
        // Just past the threshold: every second segment.
        assert!(!manifests_due(MANIFEST_SEGMENTS + 1, 1));
        assert!(manifests_due(MANIFEST_SEGMENTS + 1, 2));
        // A year of 2 s segments: every 500th, so some 1,000 entries written a segment.
        assert!(!manifests_due(500_000, 499));
        assert!(manifests_due(500_000, 500));
        // A resumed recording (nothing written yet) is due with its first segment.
        assert!(manifests_due(500_000, u64::MAX));
        // Averaged over a long recording, the entries written per segment stay bounded.
        let (mut since, mut entries) = (0u64, 0u64);
        for listed in 1..=200_000u64 {
            since += 1;
            if manifests_due(listed, since) {
                entries += listed;
                since = 0;
            }
        }
        let per_segment = entries / 200_000;
        assert!(
            (MANIFEST_SEGMENTS / 2..=MANIFEST_SEGMENTS * 2).contains(&per_segment),
            "{per_segment} entries written a segment"
        );
    }
}
