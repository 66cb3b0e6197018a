//! The folder source `dir:PATH`: an external encoder (ffmpeg's `segment` or `dash` muxer,
//! another packager) writes fMP4 files into a folder; each file is streamed once it is
//! complete, in name order, through the same splitter as a pipe.
//!
//! "Complete" is the moment the writer closes the file or renames it into place (inotify and
//! its kin report both); where the platform reports neither, a file whose size has not changed
//! for a second and which ends at a box boundary counts. A half-written file is never read.
//!
//! On start, what the folder already holds is not replayed: the newest init segment and the
//! newest media file are sent, so viewers get a picture at once, then new files as they come.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::{Continuity, SourceContext, SourceError, SourceEvent};
use crate::fmp4::{BoxHeader, DEFAULT_MAX_BOX_SIZE, Splitter, Unit};

/// How often the folder is scanned for files no event announced.
const SCAN_EVERY: Duration = Duration::from_millis(500);
/// A file unchanged this long, ending at a box boundary, is taken as complete.
const QUIET_FOR: Duration = Duration::from_secs(1);

pub async fn run(dir: PathBuf, ctx: SourceContext) {
    let error = match watch(&dir, &ctx).await {
        Ok(()) => return,
        Err(error) => error,
    };
    tracing::error!(stream = %ctx.stream, folder = %dir.display(), "folder source stopped: {error}");
    ctx.send(SourceEvent::Finished { error: Some(error) }).await;
}

/// Sorts file names as people count: `seg-2` before `seg-10`.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, _) => return Ordering::Less,
            (_, None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (&a[..da], &b[..db]);
                let na = trim_zeros(na);
                let nb = trim_zeros(nb);
                let order = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
                if order != Ordering::Equal {
                    return order;
                }
                a = &a[da..];
                b = &b[db..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|c| **c == b'0').count();
    &digits[zeros.min(digits.len().saturating_sub(1))..]
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// What a file holds, from its first box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Starts with `ftyp` or `moov`: an init segment, maybe with media after it.
    Init,
    /// Starts with a media box (`styp`, `sidx`, `moof`, `prft`, `emsg`).
    Media,
    /// Anything else (manifests, temporary files): not ours.
    Other,
}

fn kind_of(data: &[u8]) -> Kind {
    match BoxHeader::parse(data) {
        Ok(Some(header)) => match header.kind.as_bytes() {
            b"ftyp" | b"moov" => Kind::Init,
            b"styp" | b"sidx" | b"moof" | b"prft" | b"emsg" => Kind::Media,
            _ => Kind::Other,
        },
        _ => Kind::Other,
    }
}

/// Whether `data` is whole boxes, the last one ending at the end of the file.
fn ends_at_box_boundary(data: &[u8]) -> bool {
    let mut pos = 0usize;
    while pos < data.len() {
        match BoxHeader::parse(&data[pos..]) {
            Ok(Some(header)) => match header.size {
                Some(size) if size >= 8 => pos = pos.saturating_add(size as usize),
                _ => return false,
            },
            _ => return false,
        }
    }
    pos == data.len()
}

/// Events that say a file is complete: closed after writing, or renamed into place.
fn completes(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
            | EventKind::Create(CreateKind::File)
    )
}

struct Folder<'a> {
    ctx: &'a SourceContext,
    splitter: Splitter,
    continuity: Continuity,
    last_init: Option<Bytes>,
    /// The last file streamed: nothing at or before it in name order is streamed again.
    last_name: Option<String>,
    /// Sizes seen by the scan, for files no event announced.
    sizes: HashMap<PathBuf, (u64, Instant)>,
}

async fn watch(dir: &Path, ctx: &SourceContext) -> Result<(), SourceError> {
    let (tx, mut rx) = mpsc::channel::<(PathBuf, bool)>(1024);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            // A created file may still be being written; only its name is news.
            let complete = completes(&event.kind)
                && !matches!(event.kind, EventKind::Create(CreateKind::File));
            for path in event.paths {
                let _ = tx.blocking_send((path, complete));
            }
        }
    })
    .map_err(|source| SourceError::Watch {
        dir: dir.to_path_buf(),
        source,
    })?;
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|source| SourceError::Watch {
            dir: dir.to_path_buf(),
            source,
        })?;
    tracing::info!(stream = %ctx.stream, folder = %dir.display(), "watching the folder for fMP4 files");

    let mut folder = Folder {
        ctx,
        splitter: Splitter::default(),
        continuity: Continuity::default(),
        last_init: None,
        last_name: None,
        sizes: HashMap::new(),
    };
    if !folder.start_from_existing(dir).await? {
        return Ok(());
    }
    let mut scan = tokio::time::interval(SCAN_EVERY);
    loop {
        tokio::select! {
            _ = ctx.cancel.cancelled() => return Ok(()),
            event = rx.recv() => {
                let Some((path, complete)) = event else {
                    return Err(SourceError::WatcherStopped);
                };
                if complete && !folder.stream_file(&path).await? {
                    return Ok(());
                }
            }
            _ = scan.tick() => {
                if !folder.scan(dir).await? {
                    return Ok(());
                }
            }
        }
    }
}

impl Folder<'_> {
    /// The files of `dir` after the last one streamed, in name order.
    fn newer_files(&self, dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| SourceError::io(format!("cannot read {}", dir.display()), e))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.path())
            .filter(|p| self.is_newer(p))
            .collect();
        files.sort_by(|a, b| natural_cmp(&name_of(a), &name_of(b)));
        Ok(files)
    }

    fn is_newer(&self, path: &Path) -> bool {
        self.last_name
            .as_deref()
            .is_none_or(|last| natural_cmp(&name_of(path), last) == Ordering::Greater)
    }

    /// Streams the newest init and the newest media file already there; `false` to stop.
    async fn start_from_existing(&mut self, dir: &Path) -> Result<bool, SourceError> {
        let files = self.newer_files(dir)?;
        let mut newest_init = None;
        let mut newest_media = None;
        for path in &files {
            let Ok(data) = std::fs::read(path) else {
                continue;
            };
            if !ends_at_box_boundary(&data) {
                continue;
            }
            match kind_of(&data) {
                Kind::Init => {
                    newest_init = Some(path.clone());
                    newest_media = None;
                }
                Kind::Media => newest_media = Some(path.clone()),
                Kind::Other => {}
            }
        }
        for path in [newest_init, newest_media].into_iter().flatten() {
            if !self.stream_file(&path).await? {
                return Ok(false);
            }
        }
        // What came before is history: from here on, only newer files.
        if let Some(last) = files.last() {
            let name = name_of(last);
            if self
                .last_name
                .as_deref()
                .is_none_or(|l| natural_cmp(&name, l) == Ordering::Greater)
            {
                self.last_name = Some(name);
            }
        }
        Ok(true)
    }

    /// Finds files no event announced (platforms without close events, missed events).
    async fn scan(&mut self, dir: &Path) -> Result<bool, SourceError> {
        let now = Instant::now();
        for path in self.newer_files(dir)? {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let size = meta.len();
            let seen = self.sizes.entry(path.clone()).or_insert((size, now));
            if seen.0 != size {
                *seen = (size, now);
                continue;
            }
            if now.duration_since(seen.1) < QUIET_FOR {
                // Still settling; later files must wait for it, in order.
                break;
            }
            let Ok(data) = std::fs::read(&path) else {
                continue;
            };
            if kind_of(&data) == Kind::Other {
                continue;
            }
            if !ends_at_box_boundary(&data) {
                break;
            }
            if !self.stream_file(&path).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Streams one complete file; `false` when the stream is gone.
    async fn stream_file(&mut self, path: &Path) -> Result<bool, SourceError> {
        if !self.is_newer(path) {
            return Ok(true);
        }
        let data = match std::fs::read(path) {
            Ok(data) => Bytes::from(data),
            // Removed or renamed away since: not ours to stream.
            Err(_) => return Ok(true),
        };
        let kind = kind_of(&data);
        if kind == Kind::Other {
            return Ok(true);
        }
        self.last_name = Some(name_of(path));
        self.sizes.remove(path);
        if !ends_at_box_boundary(&data) {
            tracing::warn!(stream = %self.ctx.stream, file = %path.display(), "skipping a file that does not end at a box boundary");
            return Ok(true);
        }
        tracing::debug!(stream = %self.ctx.stream, file = %path.display(), bytes = data.len(), "streaming file");
        self.splitter.feed(data);
        let mut first_fragment = true;
        loop {
            let unit = match self.splitter.poll() {
                Ok(Some(unit)) => unit,
                Ok(None) => break,
                Err(err) => {
                    tracing::error!(stream = %self.ctx.stream, file = %path.display(), "broken fMP4 file: {err}");
                    // One bad file does not stop the stream: start over with the next one.
                    self.splitter = match self.splitter.init().cloned() {
                        Some(init) => Splitter::with_init(DEFAULT_MAX_BOX_SIZE, init),
                        None => Splitter::default(),
                    };
                    return Ok(true);
                }
            };
            let event = match unit {
                Unit::Init(init) => {
                    // Segment files that each carry the same init are one stream, not restarts.
                    if self.last_init.as_ref() == Some(&init.bytes) {
                        continue;
                    }
                    self.last_init = Some(init.bytes.clone());
                    self.continuity.restart();
                    self.continuity.on_init(&init);
                    SourceEvent::Init(init)
                }
                Unit::Fragment(fragment) => {
                    // A file that starts its timeline over (a segment muxer resetting its
                    // timestamps) is a new run, moved on past the previous one as a whole.
                    if std::mem::take(&mut first_fragment)
                        && fragment.runs.iter().any(|r| {
                            self.continuity
                                .end_of(r.track_id)
                                .is_some_and(|end| r.decode_time < end)
                        })
                    {
                        self.continuity.restart();
                    }
                    match self.continuity.apply(fragment) {
                        Ok(Some(fragment)) => SourceEvent::Fragment(fragment),
                        Ok(None) => continue,
                        Err(err) => return Err(SourceError::Timeline(err)),
                    }
                }
            };
            if !self.ctx.send(event).await {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_as_people_count() {
        let mut names = vec![
            "seg-10.m4s",
            "seg-2.m4s",
            "seg-1.m4s",
            "init.m4s",
            "seg-002b.m4s",
        ];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            [
                "init.m4s",
                "seg-1.m4s",
                "seg-2.m4s",
                "seg-002b.m4s",
                "seg-10.m4s"
            ]
        );
        assert_eq!(natural_cmp("part007.mp4", "part7.mp4"), Ordering::Equal);
        assert_eq!(natural_cmp("a", "a1"), Ordering::Less);
    }

    #[test]
    fn a_file_is_complete_when_it_ends_at_a_box_boundary() {
        let mut data = b"\0\0\0\x10ftypisom\0\0\0\0".to_vec();
        assert!(ends_at_box_boundary(&data));
        data.extend_from_slice(b"\0\0\0\x20moof");
        assert!(!ends_at_box_boundary(&data), "a box cut short");
        assert!(!ends_at_box_boundary(b"\0\0\0"), "a header cut short");
        assert!(ends_at_box_boundary(b""));
        assert_eq!(kind_of(b"\0\0\0\x10ftypisom\0\0\0\0"), Kind::Init);
        assert_eq!(kind_of(b"\0\0\0\x10stypmsdh\0\0\0\0"), Kind::Media);
        assert_eq!(kind_of(b"<?xml version"), Kind::Other);
    }
}
