//! The FLV reader fed arbitrary bytes in arbitrary chunks: no panic, no hang; every tag body
//! it hands out is read, and every video or audio frame (legacy or Enhanced RTMP) becomes a fragment through our writer
//! that our own fragment parser reads back with the same sample.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use websocketlivestream::flv::{self, Audio, FlvReader, TagKind, Video, VideoCodec};
use websocketlivestream::fmp4::writer::{
    self, AudioConfig, AudioTrack, Sample, VideoConfig, VideoTrack,
};
use websocketlivestream::fmp4::{Atom, Avcc, Fragment, Hvcc, InitSegment, av1, avc, hevc};

/// An init with both tracks, for the fragments to be read against.
fn init() -> InitSegment {
    // avcC of x264 High 1280x720, as ffmpeg writes it.
    const AVCC: &[u8] = &[
        1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 26, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50,
        0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1,
        0x83, 0x19, 0x60, 1, 0, 4, 0x68, 0xeb, 0xe3, 0xcb,
    ];
    let video = VideoTrack {
        config: VideoConfig::Avc(Bytes::from_static(AVCC)),
        width: 1280,
        height: 720,
        timescale: 90_000,
    };
    let audio = AudioTrack {
        config: AudioConfig::Aac(Bytes::from_static(&[0x11, 0x90])),
        sample_rate: 48_000,
        channels: 2,
        timescale: 48_000,
    };
    let bytes = writer::init_segment(Some(&video), Some(&audio)).expect("our init");
    InitSegment::parse(bytes, 0).expect("our init reads back")
}

fn check(init: &InitSegment, track: u32, timestamp: u32, sync: bool, data: &[u8]) {
    let sample = Sample {
        decode_time: u64::from(timestamp) * 90,
        duration: 3000,
        composition_offset: 0,
        sync,
        data,
    };
    let bytes = writer::fragment(track, 1, &sample, None);
    let fragment = Fragment::parse(bytes, 0, init).expect("our fragment reads back");
    let run = fragment.run(track).expect("its run");
    assert_eq!(run.decode_time, sample.decode_time);
    assert_eq!(run.data_size, data.len() as u64);
    assert_eq!(run.starts_with_sync, sync);
}

fuzz_target!(|input: &[u8]| {
    let (size, data) = match input {
        [a, rest @ ..] => (usize::from(*a).max(1), rest),
        _ => return,
    };
    let init = init();
    let data = Bytes::copy_from_slice(data);
    let mut reader = FlvReader::new(1 << 20);
    for piece in data.chunks(size) {
        reader.feed(data.slice_ref(piece));
        loop {
            let tag = match reader.poll() {
                Ok(Some(tag)) => tag,
                Ok(None) => break,
                Err(_) => return,
            };
            match tag.kind {
                TagKind::Script => {
                    let _ = flv::parse_metadata(&tag.data);
                }
                TagKind::Video => match tag.video() {
                    Ok(Video::Config { codec, record }) => {
                        let kind = match codec {
                            VideoCodec::Avc => b"avcC",
                            VideoCodec::Hevc => b"hvcC",
                            VideoCodec::Av1 => {
                                let _ = (av1::codec(&record), av1::dimensions(&record));
                                continue;
                            }
                        };
                        let mut boxed = ((record.len() + 8) as u32).to_be_bytes().to_vec();
                        boxed.extend_from_slice(kind);
                        boxed.extend_from_slice(&record);
                        let boxed = Bytes::from(boxed);
                        if let Ok(avcc) = Avcc::decode(&boxed) {
                            for sps in &avcc.sequence_parameter_sets {
                                let _ = avc::sps_dimensions(sps);
                            }
                        }
                        if let Ok(hvcc) = Hvcc::decode(&boxed) {
                            for nal in hvcc.arrays.iter().flat_map(|a| &a.nalus) {
                                let _ = hevc::sps_dimensions(nal);
                            }
                        }
                    }
                    Ok(Video::Frame { key, data, .. }) => {
                        check(&init, writer::VIDEO_TRACK_ID, tag.timestamp_ms, key, &data)
                    }
                    _ => {}
                },
                TagKind::Audio => {
                    if let Ok(Audio::Frame { data, .. }) = tag.audio() {
                        check(&init, writer::AUDIO_TRACK_ID, tag.timestamp_ms, true, &data);
                    }
                }
            }
        }
    }
    let _ = reader.finish();
});
