//! Enhanced RTMP (veovera's extension, what OBS 30+ sends for HEVC and Opus): a publisher
//! whose video tags carry the FourCC `hvc1` or `av01` and whose audio tags carry `Opus`. Debian's
//! ffmpeg 5.1 and GStreamer 1.22 cannot send it, so this test is the publisher: rml_rtmp's
//! client session (a different implementation from the server side's) carries tags built from
//! real encoder output, x265 in an MP4 read by the `mp4` crate and libopus in Ogg, and
//! SVT-AV1 in IVF. A viewer's bytes are decoded by ffprobe, which must find every frame sent;
//! a VP9 publisher is refused with a reason that names it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::server::*;
use common::ws::{self, Msg};
use common::*;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;

/// One FLV tag body to publish: audio or video, its timestamp in milliseconds.
struct Tag {
    video: bool,
    ms: u32,
    body: Vec<u8>,
}

fn run_ffmpeg(args: &[&str], out: &Path) {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .arg(out)
        .status()
        .expect("ffmpeg");
    assert!(status.success(), "ffmpeg could not write {}", out.display());
}

/// 90 frames of x265 (a key frame a second, B-frames) as enhanced video tags: the `hvcC`
/// record as SequenceStart, then each sample as CodedFrames with its composition time (or
/// CodedFramesX where that is zero, as OBS does).
fn hevc_tags(dir: &Path) -> Vec<Tag> {
    let path = dir.join("hevc.mp4");
    run_ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30",
            "-frames:v",
            "90",
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-x265-params",
            "keyint=30:min-keyint=30:bframes=2:log-level=none",
            "-tag:v",
            "hev1",
            "-pix_fmt",
            "yuv420p",
        ],
        &path,
    );
    let file = std::fs::read(&path).expect("the HEVC file");
    // The `mp4` crate keeps no `hvcC` body; it is one box in the `moov`, found by its type.
    let at = file
        .windows(4)
        .position(|w| w == b"hvcC")
        .expect("an hvcC box");
    let size = u32::from_be_bytes(file[at - 4..at].try_into().expect("4 bytes")) as usize;
    let record = file[at + 4..at - 4 + size].to_vec();
    let mut reader = mp4::Mp4Reader::read_header(std::io::Cursor::new(&file), file.len() as u64)
        .expect("the mp4 crate reads ffmpeg's file");
    let track = *reader.tracks().keys().next().expect("a track");
    let timescale = u64::from(reader.tracks()[&track].timescale());
    let count = reader.tracks()[&track].sample_count();
    let mut tags = vec![Tag {
        video: true,
        ms: 0,
        body: [b"\x90hvc1".as_slice(), &record].concat(),
    }];
    for id in 1..=count {
        let sample = reader
            .read_sample(track, id)
            .expect("a sample")
            .expect("present");
        let ms = (sample.start_time * 1000 / timescale) as u32;
        let composition = (i64::from(sample.rendering_offset) * 1000 / timescale as i64) as i32;
        let frame_type: u8 = if sample.is_sync { 1 } else { 2 };
        let mut body = Vec::with_capacity(sample.bytes.len() + 8);
        if composition == 0 {
            body.push(0x80 | frame_type << 4 | 3);
            body.extend_from_slice(b"hvc1");
        } else {
            body.push(0x80 | frame_type << 4 | 1);
            body.extend_from_slice(b"hvc1");
            body.extend_from_slice(&composition.to_be_bytes()[1..]);
        }
        body.extend_from_slice(&sample.bytes);
        tags.push(Tag {
            video: true,
            ms,
            body,
        });
    }
    assert_eq!(tags.len(), 91, "ffmpeg wrote 90 frames");
    tags
}

/// Three seconds of libopus (20 ms packets) as enhanced audio tags: the `OpusHead` as
/// SequenceStart, then each packet as CodedFrames. The Ogg pages are read here (RFC 3533).
fn opus_tags(dir: &Path) -> Vec<Tag> {
    let path = dir.join("opus.ogg");
    run_ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "3",
            "-ac",
            "2",
            "-c:a",
            "libopus",
            "-b:a",
            "64k",
        ],
        &path,
    );
    let file = std::fs::read(&path).expect("the Opus file");
    let mut packets = Vec::new();
    let mut packet = Vec::new();
    let mut at = 0;
    while at + 27 <= file.len() {
        assert_eq!(&file[at..at + 4], b"OggS", "an Ogg page at {at}");
        let segments = usize::from(file[at + 26]);
        let lacing = &file[at + 27..at + 27 + segments];
        let mut data = at + 27 + segments;
        for &len in lacing {
            packet.extend_from_slice(&file[data..data + usize::from(len)]);
            data += usize::from(len);
            if len < 255 {
                packets.push(std::mem::take(&mut packet));
            }
        }
        at = data;
    }
    assert!(packets[0].starts_with(b"OpusHead"), "the ID header first");
    assert!(packets[1].starts_with(b"OpusTags"), "then the comments");
    let mut tags = vec![Tag {
        video: false,
        ms: 0,
        body: [b"\x90Opus".as_slice(), &packets[0]].concat(),
    }];
    for (i, packet) in packets[2..].iter().enumerate() {
        tags.push(Tag {
            video: false,
            ms: (i * 20) as u32,
            body: [b"\x91Opus".as_slice(), packet].concat(),
        });
    }
    tags
}

/// A blocking RTMP publisher on rml_rtmp's client session.
struct Publisher {
    tcp: TcpStream,
    session: ClientSession,
}

impl Publisher {
    /// Handshakes, connects to `app`, publishes `key`; `Err` with what the server said if it
    /// would not.
    fn connect(addr: &str, app: &str, key: &str) -> Result<Self, String> {
        let mut tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut handshake = Handshake::new(PeerType::Client);
        tcp.write_all(&handshake.generate_outbound_p0_and_p1().expect("p0 p1"))
            .expect("send p0 p1");
        let mut buf = vec![0u8; 64 * 1024];
        let leftover = loop {
            let n = tcp.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed during the handshake".into());
            }
            match handshake.process_bytes(&buf[..n]).expect("handshake") {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    tcp.write_all(&response_bytes).expect("send");
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    tcp.write_all(&response_bytes).expect("send");
                    break remaining_bytes;
                }
            }
        };
        let (session, results) = ClientSession::new(ClientSessionConfig::new()).expect("session");
        let mut publisher = Self { tcp, session };
        publisher.send(results);
        let connect = publisher
            .session
            .request_connection(app.to_string())
            .expect("connect");
        publisher.send(vec![connect]);
        publisher.until(leftover, |event| {
            matches!(event, ClientSessionEvent::ConnectionRequestAccepted)
        })?;
        let publish = publisher
            .session
            .request_publishing(key.to_string(), PublishRequestType::Live)
            .expect("publish");
        publisher.send(vec![publish]);
        publisher.until(Vec::new(), |event| {
            matches!(event, ClientSessionEvent::PublishRequestAccepted)
        })?;
        Ok(publisher)
    }

    fn send(&mut self, results: Vec<ClientSessionResult>) {
        for result in results {
            if let ClientSessionResult::OutboundResponse(packet) = result {
                self.tcp.write_all(&packet.bytes).expect("send");
            }
        }
    }

    /// Reads until an event `wanted` says yes to.
    fn until(
        &mut self,
        mut input: Vec<u8>,
        wanted: impl Fn(&ClientSessionEvent) -> bool,
    ) -> Result<(), String> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if !input.is_empty() {
                let results = self
                    .session
                    .handle_input(&input)
                    .map_err(|e| format!("{e:?}"))?;
                let mut done = false;
                let mut outbound = Vec::new();
                for result in results {
                    match result {
                        ClientSessionResult::RaisedEvent(event) if wanted(&event) => done = true,
                        ClientSessionResult::RaisedEvent(other) => {
                            eprintln!("RTMP client event: {other:?}");
                        }
                        other => outbound.push(other),
                    }
                }
                self.send(outbound);
                if done {
                    return Ok(());
                }
            }
            let n = self.tcp.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the server closed the connection".into());
            }
            input = buf[..n].to_vec();
        }
    }

    /// Sends one tag; `false` once the server has closed the connection.
    fn tag(&mut self, tag: &Tag) -> bool {
        let data = Bytes::copy_from_slice(&tag.body);
        let time = RtmpTimestamp::new(tag.ms);
        let result = if tag.video {
            self.session.publish_video_data(data, time, false)
        } else {
            self.session.publish_audio_data(data, time, false)
        };
        match result {
            Ok(ClientSessionResult::OutboundResponse(packet)) => {
                self.tcp.write_all(&packet.bytes).is_ok()
            }
            other => panic!("publishing a tag: {other:?}"),
        }
    }
}

/// A server with one `publish` stream `cam` anyone may publish to, and an RTMP listener.
fn publish_server(name: &str) -> TestServer {
    let config = temp_file(
        &format!("{name}.toml"),
        "[[stream]]\nname = \"cam\"\nsource = \"publish\"\npublish = \"public\"\n",
    );
    TestServer::start(&[
        "--config",
        config.to_str().expect("utf-8"),
        "--rtmp-listen",
        "127.0.0.1:0",
    ])
}

/// Publishes `tags` in real time, as an encoder would, to such a server, while a viewer
/// connected before reads until the stream goes quiet; the server, and the viewer's bytes as
/// the file `name`.mp4.
async fn publish_and_watch(name: &str, tags: Vec<Tag>) -> (TestServer, std::path::PathBuf) {
    let server = publish_server(name);
    let addr = rtmp_address(&server);
    let url = server.ws_url("/ws/cam");
    let viewer = tokio::spawn(async move {
        let mut socket = ws::connect(&url).await;
        let (_, init) = ws::expect_init(&mut socket).await;
        let mut media = Vec::new();
        while let Some(Msg::Binary(bytes)) = ws::next(&mut socket, Duration::from_secs(3)).await {
            media.push(bytes);
        }
        (init, media)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::spawn_blocking(move || {
        let mut publisher = Publisher::connect(&addr, "live", "cam").expect("publishing");
        let start = Instant::now();
        for tag in &tags {
            let due = Duration::from_millis(u64::from(tag.ms));
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
            assert!(publisher.tag(tag), "the server hung up");
        }
    })
    .await
    .expect("publisher");
    let (init, media) = viewer.await.expect("viewer");
    let path = temp_media(&format!("{name}.mp4"), &[&init, &media.concat()]);
    (server, path)
}

/// `codec_name,width,height` of each stream, as ffprobe reads `path`.
fn codec_names(path: &Path) -> String {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height",
        ])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe");
    String::from_utf8(out.stdout).expect("utf-8")
}

#[tokio::test]
async fn an_enhanced_rtmp_publisher_sends_hevc_and_opus_and_a_viewer_decodes_every_frame() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") {
        return;
    }
    let dir = temp_dir("enhanced-rtmp");
    let mut tags = hevc_tags(&dir);
    let video_frames = tags.len() as u64 - 1;
    let audio = opus_tags(&dir);
    let audio_packets = audio.len() as u64 - 1;
    tags.extend(audio);
    // Interleaved as a muxer would: by time, the sequence headers first.
    tags.sort_by_key(|t| (t.ms, t.body[0] & 0x0f != 0));

    let (server, path) = publish_and_watch("enhanced-rtmp", tags).await;
    let codecs = ffprobe_packets(&path, "flags")
        .into_iter()
        .map(|(kind, packets)| (kind, packets.len() as u64))
        .collect::<Vec<_>>();
    let names = codec_names(&path);
    assert!(names.contains("hevc,320,240"), "{names}");
    assert!(names.contains("opus"), "{names}");
    assert_eq!(
        codecs,
        vec![
            ("video".to_string(), video_frames),
            ("audio".to_string(), audio_packets)
        ],
        "packets per track"
    );
    assert_eq!(
        ffprobe_frames(&path),
        vec![
            ("video".to_string(), video_frames),
            ("audio".to_string(), audio_packets)
        ],
        "every frame decodes\n{}",
        server.log()
    );
    assert_eq!(ffmpeg_decode_errors(&path), None);
    // Every key frame the publisher marked starts a fragment flagged as a sync sample.
    let packets = ffprobe_packets(&path, "flags");
    let keys = packets[0]
        .1
        .iter()
        .filter(|f| f[0].starts_with('K'))
        .count();
    assert_eq!(keys, 3, "one key frame a second");
    // The B-frames' composition times came through: some pictures show after later ones.
    let times = ffprobe_packets(&path, "pts,dts");
    let reordered = times[0].1.iter().filter(|t| t[0] != t[1]).count();
    assert!(reordered > 30, "{reordered} packets with pts != dts");
}

/// 90 frames of SVT-AV1 (a key frame a second) as enhanced video tags: the `av1C` (from
/// ffmpeg's MP4 of the same stream) as SequenceStart, then each temporal unit from the IVF
/// file as CodedFrames, key frames as ffprobe flags them.
fn av1_tags(dir: &Path) -> Vec<Tag> {
    let ivf = dir.join("av1.ivf");
    run_ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30",
            "-frames:v",
            "90",
            "-c:v",
            "libsvtav1",
            "-preset",
            "12",
            "-g",
            "30",
            "-pix_fmt",
            "yuv420p",
        ],
        &ivf,
    );
    let mp4 = dir.join("av1.mp4");
    run_ffmpeg(&["-i", ivf.to_str().expect("utf-8"), "-c", "copy"], &mp4);
    let file = std::fs::read(&mp4).expect("the AV1 MP4");
    let at = file
        .windows(4)
        .position(|w| w == b"av1C")
        .expect("an av1C box");
    let size = u32::from_be_bytes(file[at - 4..at].try_into().expect("4 bytes")) as usize;
    let record = file[at + 4..at - 4 + size].to_vec();
    let keys: Vec<bool> = ffprobe_packets(&ivf, "flags")[0]
        .1
        .iter()
        .map(|f| f[0].starts_with('K'))
        .collect();
    let data = std::fs::read(&ivf).expect("the IVF file");
    assert_eq!(&data[..4], b"DKIF");
    let header = usize::from(u16::from_le_bytes([data[6], data[7]]));
    let mut tags = vec![Tag {
        video: true,
        ms: 0,
        body: [b"\x90av01".as_slice(), &record].concat(),
    }];
    let mut pos = header;
    let mut n = 0;
    while pos + 12 <= data.len() {
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().expect("4")) as usize;
        let frame = &data[pos + 12..pos + 12 + len];
        let frame_type: u8 = if keys[n] { 1 } else { 2 };
        tags.push(Tag {
            video: true,
            ms: (n * 1000 / 30) as u32,
            body: [&[0x80 | frame_type << 4 | 1][..], b"av01", frame].concat(),
        });
        pos += 12 + len;
        n += 1;
    }
    assert_eq!(n, 90, "SVT-AV1 wrote 90 frames");
    tags
}

#[tokio::test]
async fn an_enhanced_rtmp_publisher_sends_av1_and_a_viewer_decodes_every_frame() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") {
        return;
    }
    let dir = temp_dir("enhanced-rtmp-av1");
    let tags = av1_tags(&dir);
    let (server, path) = publish_and_watch("enhanced-rtmp-av1", tags).await;
    let names = codec_names(&path);
    assert!(names.contains("av1,320,240"), "{names}\n{}", server.log());
    assert_eq!(
        ffprobe_frames(&path),
        vec![("video".to_string(), 90)],
        "every frame decodes\n{}",
        server.log()
    );
    assert_eq!(ffmpeg_decode_errors(&path), None);
    let keys = ffprobe_packets(&path, "flags")[0]
        .1
        .iter()
        .filter(|f| f[0].starts_with('K'))
        .count();
    assert_eq!(keys, 3, "one key frame a second");
    // The codecs parameter players are told, from the av1C.
    assert!(
        strip_ansi(&server.log()).contains("av01.0."),
        "{}",
        server.log()
    );
}

#[test]
fn a_vp9_publisher_is_refused_with_a_reason_that_names_it() {
    let server = publish_server("enhanced-rtmp-vp9");
    let addr = rtmp_address(&server);
    let mut publisher = Publisher::connect(&addr, "live", "cam").expect("publishing");
    // A VP9 SequenceStart: a vpcC record's first bytes.
    let start = Tag {
        video: true,
        ms: 0,
        body: b"\x90vp09\x01\x00\x00\x00".to_vec(),
    };
    let mut refused = false;
    for i in 0..50u32 {
        let frame = Tag {
            video: true,
            ms: i * 33,
            body: b"\x91vp09\x12\x00".to_vec(),
        };
        if !publisher.tag(if i == 0 { &start } else { &frame }) {
            refused = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains("vp09") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = strip_ansi(&server.log());
    assert!(
        log.contains("RTMP publisher cut off") && log.contains("FourCC 'vp09'"),
        "refused={refused}\n{log}"
    );
    // The stream waits for the next publisher.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", &server.url("/api/streams")])
        .output()
        .expect("curl");
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let cam = state
        .as_array()
        .and_then(|streams| streams.iter().find(|s| s["name"] == "cam"))
        .expect("cam listed");
    assert_eq!(cam["state"], "waiting", "{state}");
}
