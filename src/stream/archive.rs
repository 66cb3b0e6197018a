//! A recording's index: one line per segment kept on disk (its number, the init it follows,
//! its wall-clock start from the encoder's `prft`, its media times, its size, whether it
//! starts at a key frame), written after the segment itself is in place, so that whatever the
//! index lists is on disk, even after a SIGKILL. A server started again over the folder
//! reads it at once: it lists, serves and rotates what earlier runs recorded.
//!
//! ```text
//! DIR/{name}/segments.jsonl   {"number":…,"init":"init.mp4","wall_start_ms":…,…}   a segment
//!                             {"dropped_through":N}   rotation removed every segment to N
//! ```
//!
//! A line cut short by a crash, or one that is not the format, is skipped with a warning. The
//! file is rewritten whole (and renamed into place) when rotated-away lines outnumber the
//! rest, so it stays about as long as the recording.
//!
//! Spans: consecutive segments whose wall-clock times follow on (within [`GAP_MS`]); a source
//! that was down, or a server that was stopped, leaves a gap between two spans.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

use serde::{Deserialize, Serialize};

/// The index's file name in a recording's folder.
pub const INDEX_FILE: &str = "segments.jsonl";

/// Segments whose wall-clock times are further apart than this (end of one to start of the
/// next) are in different spans: the source was down in between.
pub const GAP_MS: u64 = 500;

/// One segment on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub number: u64,
    /// The init segment file it follows (`init.mp4`, `init-N.mp4`).
    pub init: String,
    /// Wall clock of its first sample (Unix ms).
    pub wall_start_ms: u64,
    /// Reference track time and duration, in `timescale`.
    pub start: u64,
    pub duration: u64,
    pub timescale: u32,
    pub bytes: u64,
    /// Starts with a key frame of the reference track (a player may start here).
    pub key: bool,
    /// Each track's time and duration (its own timescale), and the size of its own copy in
    /// `TRACK/N.m4s` (0 when tracks were not kept apart).
    pub tracks: Vec<EntryTrack>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryTrack {
    pub id: u32,
    pub start: u64,
    pub duration: u64,
    pub bytes: u64,
}

impl Entry {
    pub fn duration_ms(&self) -> u64 {
        self.duration.saturating_mul(1000) / u64::from(self.timescale.max(1))
    }

    pub fn wall_end_ms(&self) -> u64 {
        self.wall_start_ms.saturating_add(self.duration_ms())
    }

    /// Whether `next` follows this one with no gap in time.
    pub fn followed_by(&self, next: &Entry) -> bool {
        next.wall_start_ms <= self.wall_end_ms().saturating_add(GAP_MS)
            && next.wall_start_ms + GAP_MS >= self.wall_start_ms
    }
}

#[derive(Serialize, Deserialize)]
struct Dropped {
    dropped_through: u64,
}

/// A stretch recorded without a gap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Span {
    pub start_ms: u64,
    pub end_ms: u64,
    pub segments: u64,
    pub bytes: u64,
    /// Its first and last segment numbers.
    pub first: u64,
    pub last: u64,
}

/// A recording's index, in memory and on disk.
#[derive(Debug)]
pub struct Archive {
    dir: PathBuf,
    entries: RwLock<VecDeque<Entry>>,
    /// Lines on disk that rotation made void, and the open file.
    file: Mutex<IndexFile>,
}

#[derive(Debug, Default)]
struct IndexFile {
    void_lines: u64,
    handle: Option<std::fs::File>,
}

impl Archive {
    /// The index of the recording in `dir`, read from disk if there is one. Segments whose
    /// file is gone (removed by hand) are left out.
    pub fn open(dir: &Path) -> Archive {
        let path = dir.join(INDEX_FILE);
        let mut entries: VecDeque<Entry> = VecDeque::new();
        let mut void_lines = 0u64;
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mut skipped = 0usize;
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    if let Ok(entry) = serde_json::from_str::<Entry>(line) {
                        entries.push_back(entry);
                    } else if let Ok(dropped) = serde_json::from_str::<Dropped>(line) {
                        while entries
                            .front()
                            .is_some_and(|e| e.number <= dropped.dropped_through)
                        {
                            entries.pop_front();
                            void_lines += 1;
                        }
                        void_lines += 1;
                    } else {
                        skipped += 1;
                    }
                }
                if skipped > 0 {
                    tracing::warn!(
                        index = %path.display(),
                        skipped,
                        "recording index: lines that are not the format (cut short by a crash?) skipped"
                    );
                }
                let before = entries.len();
                // One pass over the folder rather than a look per segment (a year of 2 s
                // segments is 15 million of them).
                let on_disk = segment_files(dir);
                entries.retain(|e| on_disk.contains(&e.number));
                if entries.len() < before {
                    tracing::warn!(
                        index = %path.display(),
                        missing = before - entries.len(),
                        "recording index: segments listed but no longer on disk left out"
                    );
                    void_lines += (before - entries.len()) as u64;
                }
                tracing::info!(
                    dir = %dir.display(),
                    segments = entries.len(),
                    "recording index read"
                );
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                tracing::error!(index = %path.display(), "cannot read the recording index: {err}")
            }
        }
        Archive {
            dir: dir.to_path_buf(),
            entries: RwLock::new(entries),
            file: Mutex::new(IndexFile {
                void_lines,
                handle: None,
            }),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every segment kept, oldest first.
    pub fn entries(&self) -> RwLockReadGuard<'_, VecDeque<Entry>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The number after the newest segment kept, if any.
    pub fn next_number(&self) -> Option<u64> {
        self.entries().back().map(|e| e.number + 1)
    }

    /// Adds segments just written (their files in place).
    pub(crate) fn append(&self, new: Vec<Entry>) -> std::io::Result<()> {
        if new.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for entry in &new {
            // An Entry always serializes.
            text.push_str(&serde_json::to_string(entry).unwrap_or_default());
            text.push('\n');
        }
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .extend(new);
        self.write_lines(&text)
    }

    /// Forgets every segment up to `number` (rotation removed their files).
    pub(crate) fn drop_through(&self, number: u64) -> std::io::Result<()> {
        let mut gone = 0u64;
        {
            let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
            while entries.front().is_some_and(|e| e.number <= number) {
                entries.pop_front();
                gone += 1;
            }
        }
        if gone == 0 {
            return Ok(());
        }
        let line = serde_json::to_string(&Dropped {
            dropped_through: number,
        })
        .unwrap_or_default();
        self.write_lines(&format!("{line}\n"))?;
        let compact = {
            let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
            file.void_lines += gone + 1;
            file.void_lines > 1000 && file.void_lines as usize > self.entries().len()
        };
        if compact { self.rewrite() } else { Ok(()) }
    }

    fn write_lines(&self, text: &str) -> std::io::Result<()> {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if file.handle.is_none() {
            let path = self.dir.join(INDEX_FILE);
            // A line a crash cut short is ended first, so the next one is whole.
            let torn = ends_torn(&path);
            let mut handle = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            if torn {
                handle.write_all(b"\n")?;
            }
            file.handle = Some(handle);
        }
        let result = file
            .handle
            .as_mut()
            .map_or(Ok(()), |h| h.write_all(text.as_bytes()));
        if result.is_err() {
            // Opened again next time; a line cut short is skipped when read.
            file.handle = None;
        }
        result
    }

    /// The index written again with only what is kept, renamed into place.
    fn rewrite(&self) -> std::io::Result<()> {
        let mut text = String::new();
        for entry in self.entries().iter() {
            text.push_str(&serde_json::to_string(entry).unwrap_or_default());
            text.push('\n');
        }
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.dir.join(INDEX_FILE);
        let temp = self.dir.join(format!("{INDEX_FILE}.part"));
        super::write_file(&temp, text.as_bytes())?;
        std::fs::rename(&temp, &path)?;
        file.handle = None;
        file.void_lines = 0;
        Ok(())
    }

    /// The stretches recorded without a gap, oldest first.
    pub fn spans(&self) -> Vec<Span> {
        spans(self.entries().iter())
    }
}

/// The numbers of the segment files (`N.m4s`) in `dir`.
fn segment_files(dir: &Path) -> std::collections::HashSet<u64> {
    std::fs::read_dir(dir)
        .map(|list| {
            list.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".m4s")?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the file at `path` ends inside a line.
fn ends_torn(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut last = [0u8; 1];
    file.seek(SeekFrom::End(-1)).is_ok() && file.read_exact(&mut last).is_ok() && last[0] != b'\n'
}

/// `entries` (oldest first) as the stretches they cover without a gap.
pub fn spans<'a>(entries: impl Iterator<Item = &'a Entry>) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    let mut last: Option<&Entry> = None;
    for entry in entries {
        let follows = last.is_some_and(|l| l.followed_by(entry));
        match spans.last_mut() {
            Some(span) if follows => {
                span.end_ms = span.end_ms.max(entry.wall_end_ms());
                span.segments += 1;
                span.bytes += entry.bytes;
                span.last = entry.number;
            }
            _ => spans.push(Span {
                start_ms: entry.wall_start_ms,
                end_ms: entry.wall_end_ms(),
                segments: 1,
                bytes: entry.bytes,
                first: entry.number,
                last: entry.number,
            }),
        }
        last = Some(entry);
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(number: u64, wall_start_ms: u64) -> Entry {
        Entry {
            number,
            init: "init.mp4".into(),
            wall_start_ms,
            start: number * 90_000,
            duration: 90_000,
            timescale: 90_000,
            bytes: 100,
            key: true,
            tracks: Vec::new(),
        }
    }

    #[test]
    fn spans_break_where_the_wall_clock_jumps() {
        let entries = [
            entry(1, 10_000),
            entry(2, 11_000),
            entry(3, 12_010),
            entry(4, 16_000),
            entry(5, 17_000),
        ];
        let found = spans(entries.iter());
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!((found[0].start_ms, found[0].end_ms), (10_000, 13_010));
        assert_eq!(
            (found[0].first, found[0].last, found[0].segments),
            (1, 3, 3)
        );
        assert_eq!((found[1].start_ms, found[1].end_ms), (16_000, 18_000));
        assert_eq!(found[1].bytes, 200);
    }

    #[test]
    fn the_index_survives_a_restart_a_torn_line_and_rotation() {
        let dir = std::env::temp_dir().join(format!("wsls-archive-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        for n in 1..=4 {
            std::fs::write(dir.join(format!("{n}.m4s")), b"x").expect("segment");
        }
        let archive = Archive::open(&dir);
        assert!(archive.entries().is_empty());
        archive
            .append((1..=4).map(|n| entry(n, n * 1000)).collect())
            .expect("append");
        archive.drop_through(1).expect("drop");
        drop(archive);
        // A crash in the middle of a line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join(INDEX_FILE))
            .and_then(|mut f| f.write_all(b"{\"number\":5,\"ini"))
            .expect("torn line");
        std::fs::remove_file(dir.join("4.m4s")).expect("remove");
        let archive = Archive::open(&dir);
        let numbers: Vec<u64> = archive.entries().iter().map(|e| e.number).collect();
        assert_eq!(numbers, [2, 3]);
        assert_eq!(archive.next_number(), Some(4));
        // What comes after the torn line is read whole.
        std::fs::write(dir.join("6.m4s"), b"x").expect("segment");
        archive.append(vec![entry(6, 6000)]).expect("append");
        drop(archive);
        let archive = Archive::open(&dir);
        let numbers: Vec<u64> = archive.entries().iter().map(|e| e.number).collect();
        assert_eq!(numbers, [2, 3, 6]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
