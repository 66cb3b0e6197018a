//! The zero-wait ingest: ffmpeg's FLV through our reader and fragment writer, checked by
//! ffprobe against the input itself; and the writer's fragments through our splitter.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use websocketlivestream::flv;
use websocketlivestream::flv::{FlvReader, TagKind};
use websocketlivestream::fmp4::writer::{self, Sample, VideoConfig, VideoTrack};
use websocketlivestream::fmp4::{Fragment, InitSegment, Splitter, Unit};
use websocketlivestream::source::SourceError;
use websocketlivestream::source::flv_ingest::FlvIngest;

/// A few seconds of 320x180 H.264 and AAC as ffmpeg writes FLV for the ingest.
fn flv_clip(audio: bool) -> PathBuf {
    testsrc_clip(
        "clip.flv",
        3,
        audio,
        &["-f", "flv", "-flvflags", "no_duration_filesize"],
    )
}

/// Every unit the ingest makes of `data`, fed in chunks of `chunk` bytes.
fn ingest(data: &Bytes, chunk: usize) -> Result<Vec<Unit>, SourceError> {
    let mut ingest = FlvIngest::default();
    let mut units = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let end = (pos + chunk).min(data.len());
        units.extend(ingest.feed(data.slice(pos..end), SystemTime::now())?);
        pos = end;
    }
    ingest.finish()?;
    Ok(units)
}

/// The init and fragments, written one after another as a file ffmpeg can read.
fn as_file(units: &[Unit], name: &str) -> PathBuf {
    let mut parts: Vec<&[u8]> = Vec::new();
    for unit in units {
        match unit {
            Unit::Init(init) => parts.push(&init.bytes),
            Unit::Fragment(f) => parts.push(&f.bytes),
        }
    }
    temp_media(name, &parts)
}

/// Per stream, `(codec_type, [pts seconds])` as ffprobe reads `path`.
fn packet_times(path: &Path) -> Vec<(String, Vec<f64>)> {
    ffprobe_packets(path, "pts_time")
        .into_iter()
        .map(|(kind, packets)| {
            let times = packets
                .iter()
                .map(|p| p[0].parse().expect("pts_time"))
                .collect();
            (kind, times)
        })
        .collect()
}

#[test]
fn ffmpegs_flv_becomes_fragments_that_decode_with_the_inputs_frames_and_times() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") {
        return;
    }
    let clip = flv_clip(true);
    let data = Bytes::from(std::fs::read(&clip).expect("clip"));
    let units = ingest(&data, data.len()).expect("ingest");
    // Chunked any way, the same fragments (arrival-based prft times aside).
    for chunk in [1, 7, 4096] {
        let chunked = ingest(&data, chunk).expect("ingest in chunks");
        assert_eq!(chunked.len(), units.len(), "chunks of {chunk}");
        for (a, b) in chunked.iter().zip(&units) {
            match (a, b) {
                (Unit::Init(a), Unit::Init(b)) => assert_eq!(a.bytes, b.bytes),
                (Unit::Fragment(a), Unit::Fragment(b)) => {
                    assert_eq!(a.runs, b.runs);
                    assert_eq!(a.bytes[a.moof_start..], b.bytes[b.moof_start..]);
                }
                other => panic!("chunks of {chunk}: {other:?}"),
            }
        }
    }
    let Some(Unit::Init(init)) = units.first() else {
        panic!("the first unit is the init");
    };
    assert_eq!(init.codecs(), "avc1.42c00d,mp4a.40.2");
    let video = init.video().expect("video");
    assert_eq!((video.width, video.height), (320, 180));
    // A prft before every video fragment, none before audio.
    for unit in &units[1..] {
        let Unit::Fragment(f) = unit else {
            panic!("one init only");
        };
        assert_eq!(f.runs.len(), 1, "a track per fragment");
        assert_eq!(f.prft.is_some(), f.runs[0].track_id == video.id);
    }

    let ours = as_file(&units, "from-flv.mp4");
    assert_eq!(
        ffprobe_frames(&ours),
        ffprobe_frames(&clip),
        "frames per stream"
    );
    if let Some(errors) = ffmpeg_decode_errors(&ours) {
        panic!("our fragments do not decode cleanly: {errors}");
    }
    let (theirs, mine) = (packet_times(&clip), packet_times(&ours));
    for ((kind, input), (_, output)) in theirs.iter().zip(&mine) {
        assert_eq!(input.len(), output.len(), "{kind} packets");
        // FLV counts milliseconds: within one of them.
        let worst = input
            .iter()
            .zip(output)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        eprintln!(
            "{kind}: {} packets, times within {:.6} s of the FLV's",
            input.len(),
            worst
        );
        assert!(worst <= 0.001 + 1e-9, "{kind}: a time {worst} s off");
    }
}

/// The FLV's tags with new timestamps, written back as FLV.
fn retimed(data: &Bytes, retime: impl Fn(usize, TagKind, u32) -> u32) -> Bytes {
    let mut reader = FlvReader::default();
    reader.feed(data.clone());
    let mut out = data[..13].to_vec();
    let mut index = 0;
    while let Some(tag) = reader.poll().expect("ffmpeg's FLV reads") {
        let ts = retime(index, tag.kind, tag.timestamp_ms);
        let kind = match tag.kind {
            TagKind::Audio => 8,
            TagKind::Video => 9,
            TagKind::Script => 18,
        };
        let size = tag.data.len() as u32;
        out.push(kind);
        out.extend_from_slice(&size.to_be_bytes()[1..]);
        out.extend_from_slice(&ts.to_be_bytes()[1..]);
        out.push((ts >> 24) as u8);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&tag.data);
        out.extend_from_slice(&(11 + size).to_be_bytes());
        index += 1;
    }
    Bytes::from(out)
}

#[test]
fn repeated_and_backward_timestamps_still_give_increasing_decode_times() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") {
        return;
    }
    let data = Bytes::from(std::fs::read(flv_clip(false)).expect("clip"));
    // Every tenth video frame repeats the time of the one before; every 25th goes 5 ms back.
    let last = std::cell::Cell::new(0u32);
    let jittered = retimed(&data, |i, kind, ts| {
        if kind != TagKind::Video {
            return ts;
        }
        let out = if i % 10 == 0 {
            last.get()
        } else if i % 25 == 0 {
            last.get().saturating_sub(5)
        } else {
            ts
        };
        last.set(ts);
        out
    });
    let units = ingest(&jittered, 4096).expect("ingest");
    let times: Vec<u64> = units
        .iter()
        .filter_map(|u| match u {
            Unit::Fragment(f) => Some(f.runs[0].decode_time),
            Unit::Init(_) => None,
        })
        .collect();
    assert!(times.len() >= 89, "{} frames", times.len());
    assert!(
        times.windows(2).all(|w| w[1] > w[0]),
        "decode times must increase: {times:?}"
    );
    // Decoded frame for frame, at the times we wrote (ffmpeg's default would resample them
    // to a constant rate and complain of the uneven ones, which is no decoding error).
    let ours = as_file(&units, "jittered.mp4");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(&ours)
        .args([
            "-fps_mode",
            "passthrough",
            "-enc_time_base",
            "1/90000",
            "-f",
            "null",
            "-",
        ])
        .output()
        .expect("running ffmpeg");
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && errors.trim().is_empty(),
        "the jittered stream does not decode cleanly: {errors}"
    );
    assert_eq!(
        ffprobe_frames(&ours),
        vec![("video".to_string(), times.len() as u64)]
    );
}

#[test]
fn broken_flv_is_a_clear_error() {
    if !have_tool("ffmpeg") {
        return;
    }
    let data = std::fs::read(flv_clip(true)).expect("clip");
    // Cut inside a tag, then garbage where the next tag should start.
    let mut broken = data[..data.len() / 2].to_vec();
    broken.extend_from_slice(b"\x07garbage that is no FLV tag at all, not even close");
    let Err(err) = ingest(&Bytes::from(broken), 512) else {
        panic!("garbage must fail");
    };
    assert!(matches!(err, SourceError::Flv(_)), "{err}");
    // The last tags are ffmpeg's end of sequence (20 bytes) and a frame: cut into the frame.
    let Err(err) = ingest(&Bytes::from(data[..data.len() - 30].to_vec()), 512) else {
        panic!("a stream cut inside a tag must fail");
    };
    assert!(
        matches!(err, SourceError::Flv(flv::Error::EndsInsideTag(_))),
        "{err}"
    );
}

const AVCC: &[u8] = &[
    1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 26, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05,
    0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19,
    0x60, 1, 0, 4, 0x68, 0xeb, 0xe3, 0xcb,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever frames the writer is given come back through our splitter as they were: the
    /// same times, durations, sizes, key flags and bytes, however the stream is cut.
    #[test]
    fn what_the_writer_writes_the_splitter_reads_back(
        frames in prop::collection::vec(
            (1u32..6000, 0usize..3000, any::<bool>(), -3000i32..3000),
            1..40,
        ),
        chunk in 1usize..5000,
    ) {
        let video = VideoTrack {
            config: VideoConfig::Avc(Bytes::from_static(AVCC)),
            width: 1280,
            height: 720,
            timescale: 90_000,
        };
        let init_bytes = writer::init_segment(Some(&video), None).expect("init");
        let init = InitSegment::parse(init_bytes.clone(), 0).expect("init parses");
        let mut stream = init_bytes.to_vec();
        let mut expected = Vec::new();
        let mut time = 0u64;
        for (i, (duration, size, sync, offset)) in frames.iter().enumerate() {
            let data: Vec<u8> = (0..*size).map(|b| (b + i) as u8).collect();
            let sample = Sample {
                decode_time: time,
                duration: *duration,
                composition_offset: *offset,
                sync: *sync,
                data: &data,
            };
            let bytes = writer::fragment(writer::VIDEO_TRACK_ID, i as u32 + 1, &sample, None);
            let parsed = Fragment::parse(bytes.clone(), 0, &init).expect("parses");
            expected.push((bytes.clone(), parsed.runs.clone()));
            prop_assert_eq!(parsed.runs[0].decode_time, time);
            prop_assert_eq!(parsed.runs[0].duration, u64::from(*duration));
            prop_assert_eq!(parsed.runs[0].starts_with_sync, *sync);
            prop_assert_eq!(parsed.runs[0].data_size, *size as u64);
            stream.extend_from_slice(&bytes);
            time += u64::from(*duration);
        }
        let stream = Bytes::from(stream);
        let mut splitter = Splitter::default();
        let mut got = Vec::new();
        let mut pos = 0;
        while pos < stream.len() {
            let end = (pos + chunk).min(stream.len());
            splitter.feed(stream.slice(pos..end));
            pos = end;
            while let Some(unit) = splitter.poll().expect("our stream splits") {
                if let Unit::Fragment(f) = unit {
                    got.push((f.bytes, f.runs));
                }
            }
        }
        prop_assert_eq!(got, expected);
    }
}

#[test]
fn writer_output_is_what_ffprobe_expects() {
    if !have_tool("ffprobe") {
        return;
    }
    // The probe's view of a hand-made stream: one key frame's worth of bytes per sample is
    // not decodable, but the container must be readable with the right count and times.
    let video = VideoTrack {
        config: VideoConfig::Avc(Bytes::from_static(AVCC)),
        width: 1280,
        height: 720,
        timescale: 90_000,
    };
    let mut bytes = writer::init_segment(Some(&video), None)
        .expect("init")
        .to_vec();
    for i in 0..10u64 {
        let data = [0u8, 0, 0, 1, 0x65];
        let sample = Sample {
            decode_time: i * 3000,
            duration: 3000,
            composition_offset: 0,
            sync: i == 0,
            data: &data,
        };
        bytes.extend_from_slice(&writer::fragment(1, i as u32 + 1, &sample, None));
    }
    let path = temp_media("hand-made.mp4", &[&bytes]);
    let times = packet_times(&path);
    assert_eq!(times[0].0, "video");
    let expected: Vec<f64> = (0..10).map(|i| f64::from(i) / 30.0).collect();
    assert_eq!(times[0].1.len(), 10);
    for (a, b) in times[0].1.iter().zip(&expected) {
        assert!((a - b).abs() < 1e-4, "{:?}", times[0].1);
    }
}
