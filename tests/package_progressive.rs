//! `package` on the MP4 files people have: progressive (samples listed in the `moov`, one
//! `mdat`) and fragmented in each of ffmpeg's layouts (every `movflags` fragment option).
//! Files made by ffmpeg (moov at the end and `faststart`, B-frames with their edit list, AAC;
//! `co64` chunk offsets, which ffmpeg writes only past 4 GiB, made here by rewriting a
//! file's `stco`s) and by GStreamer's `mp4mux` and `qtmux`. Every packet of every track comes
//! out (counted by ffprobe through the MPD and in the joined files), the output decodes
//! cleanly, and every segment of the video Representation starts with a key frame as ffprobe
//! reads it. Damaged tables are one-line errors naming the box.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::server::{BIN, temp_dir};
use common::*;

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("running the binary")
}

/// Packets per stream, `(codec_type, packets)`, as ffprobe counts them.
fn packets(path: &Path) -> Vec<(String, u64)> {
    ffprobe_packets(path, "flags")
        .into_iter()
        .map(|(kind, packets)| (kind, packets.len() as u64))
        .collect()
}

fn ffmpeg(name: &str, args: &[&str]) -> PathBuf {
    let path = temp_dir("progressive-in").join(name);
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .arg(&path)
        .status()
        .expect("ffmpeg");
    assert!(status.success(), "ffmpeg could not write {name}");
    path
}

/// Six seconds of 320x240 at 30 fps, x264 with B-frames (so an edit list) and a key frame a
/// second, and AAC, with `extra` output options.
fn ffmpeg_file(name: &str, extra: &[&str]) -> PathBuf {
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=30",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        "6",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "30",
        "-bf",
        "2",
        "-c:a",
        "aac",
    ];
    args.extend_from_slice(extra);
    ffmpeg(name, &args)
}

/// Packages `input` and checks the output against it; returns the output folder.
fn package_and_check(input: &Path, extra: &[&str]) -> PathBuf {
    package_and_check_against(input, input, extra)
}

/// The same, with the frames to decode counted in `reference` (a file ffmpeg cannot decode
/// itself is checked against what it was made from).
fn package_and_check_against(input: &Path, reference: &Path, extra: &[&str]) -> PathBuf {
    let out_dir = temp_dir("progressive-out").join(input.file_stem().expect("a name"));
    let mut args = vec![
        "package",
        input.to_str().expect("utf-8"),
        "--out",
        out_dir.to_str().expect("utf-8"),
        "--segment-duration",
        "2",
    ];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}: {}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let want = packets(input);
    // The joined file (all tracks) has every packet of the input.
    let mut joined = std::fs::read(out_dir.join("init.mp4")).expect("init.mp4");
    let mut segments = 0;
    while let Ok(segment) = std::fs::read(out_dir.join(format!("{}.m4s", segments + 1))) {
        joined.extend_from_slice(&segment);
        segments += 1;
    }
    assert!(segments >= 2, "{} segments", segments);
    let joined_path = out_dir.join("joined.mp4");
    std::fs::write(&joined_path, &joined).expect("write");
    assert_eq!(packets(&joined_path), want, "{}: joined", input.display());
    assert_eq!(ffmpeg_decode_errors(&joined_path), None);
    // Through the MPD, one Representation a track: as many frames as ffprobe decodes from
    // the input (AAC's first, priming, frame may be left out by ffmpeg's DASH reader; and
    // ffmpeg's own frag_every_frame remux of B-frame video and AAC decodes to fewer audio
    // frames than it has packets, in the input as in the output).
    // ffprobe lists a DASH input's streams twice, in its program and on their own.
    let decoded = ffprobe_frames(reference);
    let via_mpd = ffprobe_frames(&out_dir.join("manifest.mpd"));
    assert_eq!(via_mpd.len(), 2 * want.len(), "{via_mpd:?}");
    let mpd = std::fs::read_to_string(out_dir.join("manifest.mpd")).expect("manifest.mpd");
    let sets = parse_mpd(&mpd);
    for ((kind, frames), (want_kind, want_frames)) in via_mpd.iter().zip(&decoded) {
        assert_eq!(kind, want_kind);
        // ffmpeg 5.1's DASH reader ends the Period at its own idea of media time: it does not
        // mind a presentationTimeOffset, shifts pts by the most negative composition offset,
        // and leaves out the last frames of some B-frame layouts (GStreamer's isofmp4mux:
        // two, whose pts are inside the Period), and audio past the video's end (a file
        // without edit lists: up to 40 ms). So through it, within two frames; the exact
        // count is that of each Representation appended, below.
        assert!(
            *frames == *want_frames
                || (kind == "audio" && frames.abs_diff(*want_frames) <= 2)
                || (kind == "video" && *frames < *want_frames && *frames + 2 >= *want_frames),
            "{}: {kind} {frames} frames through the MPD, {want_frames} decoded from the input",
            input.display()
        );
    }
    // Each Representation's init and segments, in the MPD's order, as a player appends them:
    // every frame of its track.
    for set in &sets {
        let init = set
            .initialization
            .replace("$RepresentationID$", &set.representation);
        let mut appended = std::fs::read(out_dir.join(init)).expect("the Representation's init");
        for n in 0..set.timeline.len() as u64 {
            let name = fill_template(&set.media, &set.representation, set.start_number + n);
            appended.extend(std::fs::read(out_dir.join(&name)).expect("a listed segment"));
        }
        let path = out_dir.join(format!("appended-{}.mp4", set.representation));
        std::fs::write(&path, &appended).expect("write");
        let frames = ffprobe_frames(&path).first().map_or(0, |(_, n)| *n);
        let want = decoded
            .iter()
            .find(|(kind, _)| *kind == set.content_type)
            .map_or(0, |(_, n)| *n);
        // AAC's priming frame, which the input's edit list hides, decodes here.
        let priming = u64::from(set.content_type == "audio");
        assert!(
            frames == want || frames == want + priming,
            "{}: Representation {} appended decodes {frames} frames, the input {want}",
            input.display(),
            set.representation
        );
    }
    // Each video segment, read on its own after its init, starts with a key frame.
    let video = sets.into_iter().find(|set| set.content_type == "video");
    if let Some(video) = video {
        let dir = out_dir.join(&video.representation);
        let init = std::fs::read(dir.join("init.mp4")).expect("video init");
        for n in 1..=segments {
            let segment = std::fs::read(dir.join(format!("{n}.m4s"))).expect("video segment");
            let alone = out_dir.join(format!("video-{n}.mp4"));
            std::fs::write(&alone, [init.as_slice(), &segment].concat()).expect("write");
            let first = ffprobe_packets(&alone, "flags")[0].1[0][0].clone();
            assert!(
                first.starts_with('K'),
                "{}: segment {n} starts with {first}",
                input.display()
            );
        }
    }
    out_dir
}

fn have_ffmpeg() -> bool {
    have_tool("ffmpeg") && have_tool("ffprobe")
}

#[test]
fn ffmpeg_files_with_the_moov_last_or_first_package_frame_exact() {
    if !have_ffmpeg() {
        return;
    }
    let last = ffmpeg_file("moov-last.mp4", &[]);
    package_and_check(&last, &[]);
    let first = ffmpeg_file("faststart.mp4", &["-movflags", "+faststart"]);
    package_and_check(&first, &[]);
    // Video only, and audio only.
    let video = ffmpeg_file("video-only.mp4", &["-an"]);
    package_and_check(&video, &[]);
    let audio = ffmpeg_file("audio-only.mp4", &["-vn"]);
    package_and_check(&audio, &[]);
}

#[test]
fn fragments_inside_segments_for_low_latency_players() {
    if !have_ffmpeg() {
        return;
    }
    let input = ffmpeg_file("fragments.mp4", &[]);
    let out = package_and_check(&input, &["--fragment-duration", "0.5"]);
    // A two-second segment of one-second groups cut every half second: four video fragments.
    let segment = std::fs::read(out.join("1.m4s")).expect("segment 1");
    let moofs = segment.windows(4).filter(|w| w == b"moof").count();
    assert_eq!(moofs, 8, "four fragments each of video and audio");
    let bad = run(&[
        "package",
        input.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
        "--fragment-duration",
        "5",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--fragment-duration 5"));
}

/// The boxes one after another in `data` (a file, or a box's body), each whole.
fn boxes(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= data.len() {
        let size = u32::from_be_bytes(data[at..at + 4].try_into().expect("4")) as usize;
        out.push(&data[at..at + size]);
        at += size;
    }
    out
}

/// `stco` boxes rewritten as `co64` (64-bit chunk offsets) in a file whose `moov` is last, so
/// no offset into the `mdat` moves; the containers on the way grow with them.
fn with_co64(input: &Path, name: &str) -> PathBuf {
    fn rebuild(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 8 <= data.len() {
            let size = u32::from_be_bytes(data[at..at + 4].try_into().expect("4")) as usize;
            let kind = &data[at + 4..at + 8];
            let body = &data[at + 8..at + size];
            let new_body = match kind {
                b"moov" | b"trak" | b"mdia" | b"minf" | b"stbl" => rebuild(body),
                b"stco" => {
                    let count = u32::from_be_bytes(body[4..8].try_into().expect("4")) as usize;
                    let mut wide = body[..8].to_vec();
                    for i in 0..count {
                        let offset =
                            u32::from_be_bytes(body[8 + 4 * i..12 + 4 * i].try_into().expect("4"));
                        wide.extend_from_slice(&u64::from(offset).to_be_bytes());
                    }
                    wide
                }
                _ => body.to_vec(),
            };
            let new_kind: &[u8] = if kind == b"stco" { b"co64" } else { kind };
            out.extend_from_slice(&((new_body.len() + 8) as u32).to_be_bytes());
            out.extend_from_slice(new_kind);
            out.extend_from_slice(&new_body);
            at += size;
        }
        out
    }
    let data = std::fs::read(input).expect("input");
    let moov = data.windows(4).rposition(|w| w == b"moov").expect("a moov") - 4;
    let mut out = data[..moov].to_vec();
    out.extend_from_slice(&rebuild(&data[moov..]));
    let path = temp_dir("progressive-in").join(name);
    std::fs::write(&path, out).expect("write");
    path
}

#[test]
fn sixty_four_bit_chunk_offsets_package_the_same() {
    if !have_ffmpeg() {
        return;
    }
    let input = ffmpeg_file("co64-source.mp4", &[]);
    let wide = with_co64(&input, "co64.mp4");
    let probe = run(&["probe", wide.to_str().expect("utf-8")]);
    let tree = String::from_utf8_lossy(&probe.stdout);
    assert!(
        tree.contains("co64") && !tree.contains("stco"),
        "the rewrite: {tree}"
    );
    // ffprobe reads the rewritten file as the original.
    assert_eq!(packets(&wide), packets(&input));
    package_and_check(&wide, &[]);
}

#[test]
fn gstreamer_mp4mux_and_qtmux_files_progressive_and_fragmented_package_frame_exact() {
    if !have_ffmpeg() || !have_tool_with("gst-launch-1.0", "--version") {
        return;
    }
    // Progressive, and mp4mux's fragmented form: a second of each track a moof, the audio's
    // running across the video's key frames.
    for (name, muxer) in [
        ("mp4mux", "mp4mux"),
        ("qtmux", "qtmux"),
        ("mp4mux-fragmented", "mp4mux fragment-duration=1000"),
    ] {
        let path = temp_dir("progressive-in").join(format!("gst-{name}.mp4"));
        let pipeline = format!(
            "videotestsrc num-buffers=150 ! video/x-raw,width=320,height=240,framerate=30/1 ! \
             x264enc key-int-max=30 bframes=2 ! h264parse ! {muxer} name=mux ! filesink \
             location={} audiotestsrc num-buffers=235 ! audio/x-raw,rate=48000 ! voaacenc ! \
             aacparse ! mux.",
            path.display()
        );
        let out = Command::new("gst-launch-1.0")
            .arg("-q")
            .args(pipeline.split_whitespace())
            .output()
            .expect("gst-launch-1.0");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        package_and_check(&path, &[]);
    }
}

/// `input` with the 4 bytes at the first `needle` plus `skip` replaced by `value`.
fn patched(input: &Path, name: &str, needle: &[u8], skip: usize, value: u32) -> PathBuf {
    let mut data = std::fs::read(input).expect("input");
    let at = data
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the box")
        + skip;
    data[at..at + 4].copy_from_slice(&value.to_be_bytes());
    let path = temp_dir("progressive-in").join(name);
    std::fs::write(&path, data).expect("write");
    path
}

#[test]
fn damaged_sample_tables_are_one_line_errors_naming_the_box() {
    if !have_ffmpeg() {
        return;
    }
    let input = ffmpeg_file("damage-source.mp4", &["-an"]);
    // stco body: version and flags, count, then the first offset.
    let offset_past_end = patched(&input, "offset-past-end.mp4", b"stco", 12, 0xffff_ff00);
    // stsz body: version and flags, constant size, count.
    let huge_count = patched(&input, "huge-count.mp4", b"stsz", 12, u32::MAX);
    let huge_size = patched(&input, "huge-size.mp4", b"stsz", 16, 0x7fff_ffff);
    for (file, names) in [
        (&offset_past_end, "past the end of the file"),
        (&huge_count, "stsz"),
        (&huge_size, "past the end of the file"),
    ] {
        let out_dir = temp_dir("progressive-damaged");
        let out = run(&[
            "package",
            file.to_str().expect("utf-8"),
            "--out",
            out_dir.to_str().expect("utf-8"),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", file.display());
        assert!(err.contains(names), "{}: {err}", file.display());
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
}

#[test]
fn ffmpeg_fragmented_files_of_each_movflags_package_frame_exact() {
    if !have_ffmpeg() {
        return;
    }
    // B-frames and AAC, as above, then remuxed with -c copy into each fragmented layout.
    let source = ffmpeg_file("fragmented-source.mp4", &[]);
    for (name, flags) in [
        // Every track in one moof a group of pictures: split per track for the MPD.
        ("frag-keyframe", "frag_keyframe+empty_moov"),
        (
            "frag-keyframe-moof-base",
            "frag_keyframe+empty_moov+default_base_moof",
        ),
        ("separate-moof", "frag_keyframe+empty_moov+separate_moof"),
        (
            "frag-every-frame",
            "frag_every_frame+empty_moov+default_base_moof",
        ),
        // A sidx before each fragment, and one sidx for the file.
        ("dash", "dash"),
        ("global-sidx", "frag_keyframe+empty_moov+global_sidx"),
        ("cmaf", "cmaf"),
        // Without empty_moov the first group's samples are in the moov, the rest in
        // fragments.
        ("samples-in-moov", "frag_keyframe"),
    ] {
        let path = ffmpeg(
            &format!("{name}.mp4"),
            &[
                "-i",
                source.to_str().expect("utf-8"),
                "-c",
                "copy",
                "-movflags",
                flags,
            ],
        );
        assert_eq!(packets(&path), packets(&source), "{name}: ffmpeg's remux");
        // ffmpeg 5.1 moves the fragments to put the global sidx before them and leaves their
        // base_data_offsets behind: ffmpeg cannot decode that file's video, we can.
        let reference = if name == "global-sidx" {
            &source
        } else {
            &path
        };
        package_and_check_against(&path, reference, &[]);
    }
}

/// The `sidx` of an on-demand file, read here byte by byte: (where it starts, its end, and per
/// reference (size, duration, starts with SAP)).
fn read_sidx(file: &[u8]) -> (usize, usize, u32, Vec<(u64, u32, bool)>) {
    let at = file.windows(4).position(|w| w == b"sidx").expect("a sidx") - 4;
    let size = u32::from_be_bytes(file[at..at + 4].try_into().expect("4")) as usize;
    let version = file[at + 8];
    let timescale = u32::from_be_bytes(file[at + 16..at + 20].try_into().expect("4"));
    let mut p = at + 20 + if version == 1 { 16 } else { 8 };
    p += 2;
    let count = u16::from_be_bytes(file[p..p + 2].try_into().expect("2")) as usize;
    p += 2;
    let refs = (0..count)
        .map(|i| {
            let q = p + 12 * i;
            let word = |o: usize| u32::from_be_bytes(file[q + o..q + o + 4].try_into().expect("4"));
            (
                u64::from(word(0) & 0x7fff_ffff),
                word(4),
                word(8) & 0x8000_0000 != 0,
            )
        })
        .collect();
    (at, at + size, timescale, refs)
}

#[test]
fn the_on_demand_profile_writes_one_indexed_file_per_track() {
    if !have_ffmpeg() {
        return;
    }
    let input = ffmpeg_file("on-demand.mp4", &[]);
    let out_dir = temp_dir("progressive-out").join("on-demand");
    let out = run(&[
        "package",
        input.to_str().expect("utf-8"),
        "--out",
        out_dir.to_str().expect("utf-8"),
        "--profile",
        "onDemand",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mpd = std::fs::read_to_string(out_dir.join("manifest.mpd")).expect("manifest.mpd");
    assert!(
        mpd.contains("urn:mpeg:dash:profile:isoff-on-demand:2011"),
        "{mpd}"
    );
    let want = packets(&input);
    for (index, (kind, packets_in)) in want.iter().enumerate() {
        let track = index + 1;
        let path = out_dir.join(format!("{track}.mp4"));
        let file = std::fs::read(&path).expect("the track's file");
        // The MPD's ranges are where the init and the index are.
        let (sidx_start, sidx_end, timescale, refs) = read_sidx(&file);
        assert!(
            mpd.contains(&format!("<BaseURL>{track}.mp4</BaseURL>"))
                && mpd.contains(&format!("indexRange=\"{sidx_start}-{}\"", sidx_end - 1))
                && mpd.contains(&format!("<Initialization range=\"0-{}\"/>", sidx_start - 1)),
            "{mpd}"
        );
        // The references cover the rest of the file exactly, each starting with a moof, and
        // last as long as the track.
        let mut at = sidx_end as u64;
        for (size, _, _) in &refs {
            assert_eq!(
                &file[at as usize + 4..at as usize + 8],
                b"moof",
                "a reference at {at}"
            );
            at += size;
        }
        assert_eq!(at, file.len() as u64, "{kind}: the references' sizes");
        let secs = refs.iter().map(|r| u64::from(r.1)).sum::<u64>() as f64 / f64::from(timescale);
        assert!((secs - 6.0).abs() < 0.1, "{kind}: {secs} s indexed");
        if kind == "video" {
            assert!(
                refs.iter().all(|r| r.2),
                "every video reference starts with a SAP"
            );
            assert_eq!(refs.len(), 3, "three two-second segments");
        }
        // The file on its own: every packet of its track, decoding cleanly.
        assert_eq!(packets(&path), vec![(kind.clone(), *packets_in)], "{kind}");
        assert_eq!(ffmpeg_decode_errors(&path), None);
    }
    // And ffmpeg's DASH reader plays the MPD.
    let via_mpd = ffprobe_frames(&out_dir.join("manifest.mpd"));
    assert!(
        via_mpd.iter().any(|(k, n)| k == "video" && *n == want[0].1),
        "{via_mpd:?}"
    );
    // HLS over the same files by byte ranges: each track's playlist lists the init and the
    // segments where the sidx says, and the multivariant playlist joins video and audio.
    let index = std::fs::read_to_string(out_dir.join("index.m3u8")).expect("index.m3u8");
    assert!(index.contains("GROUP-ID=\"audio\""), "{index}");
    assert!(index.contains(",AUDIO=\"audio\""), "{index}");
    for (index, (kind, _)) in want.iter().enumerate() {
        let playlist = std::fs::read_to_string(out_dir.join(format!("{}.m3u8", index + 1)))
            .expect("a track's playlist");
        assert!(playlist.contains(",BYTERANGE=\""), "{playlist}");
        let ranges = playlist.matches("#EXT-X-BYTERANGE:").count();
        assert!(ranges >= 3, "{kind}: {ranges} ranges\n{playlist}");
    }
    let decoded = ffprobe_frames(&input);
    let via_hls = ffprobe_frames(&out_dir.join("index.m3u8"));
    for (kind, n) in &decoded {
        assert!(
            via_hls
                .iter()
                .any(|(k, m)| k == kind && (m == n || (kind == "audio" && m.abs_diff(*n) == 1))),
            "{kind}: {via_hls:?} through HLS, {decoded:?} in the input"
        );
    }
}

/// `moof` with its `tfdt`s taken out and its `trun` data offsets (counted from the moof,
/// `default_base_moof`) moved back by what was taken.
fn strip_tfdt(moof: &[u8]) -> Vec<u8> {
    let removed: usize = boxes(&moof[8..])
        .iter()
        .filter(|b| &b[4..8] == b"traf")
        .flat_map(|traf| boxes(&traf[8..]))
        .filter(|b| &b[4..8] == b"tfdt")
        .map(<[u8]>::len)
        .sum();
    let mut body = Vec::new();
    for child in boxes(&moof[8..]) {
        if &child[4..8] != b"traf" {
            body.extend_from_slice(child);
            continue;
        }
        let mut traf = Vec::new();
        for part in boxes(&child[8..]) {
            match &part[4..8] {
                b"tfdt" => {}
                b"trun" if part[11] & 1 != 0 => {
                    let mut trun = part.to_vec();
                    let offset = i32::from_be_bytes(trun[16..20].try_into().expect("4"));
                    trun[16..20].copy_from_slice(&(offset - removed as i32).to_be_bytes());
                    traf.extend_from_slice(&trun);
                }
                _ => traf.extend_from_slice(part),
            }
        }
        body.extend_from_slice(&((traf.len() + 8) as u32).to_be_bytes());
        body.extend_from_slice(b"traf");
        body.extend_from_slice(&traf);
    }
    let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(b"moof");
    out.extend_from_slice(&body);
    out
}

#[test]
fn fragments_without_tfdt_are_timed_from_the_end_of_the_one_before() {
    if !have_ffmpeg() {
        return;
    }
    let source = ffmpeg_file("tfdt-source.mp4", &[]);
    let timed = ffmpeg(
        "with-tfdt.mp4",
        &[
            "-i",
            source.to_str().expect("utf-8"),
            "-c",
            "copy",
            "-movflags",
            "frag_keyframe+empty_moov+default_base_moof",
        ],
    );
    let data = std::fs::read(&timed).expect("the fragmented file");
    let mut stripped = Vec::new();
    for this in boxes(&data) {
        if &this[4..8] == b"moof" {
            stripped.extend_from_slice(&strip_tfdt(this));
        } else {
            stripped.extend_from_slice(this);
        }
    }
    assert!(
        !stripped.windows(4).any(|w| w == b"tfdt"),
        "every tfdt taken out"
    );
    let untimed = temp_dir("progressive-in").join("without-tfdt.mp4");
    std::fs::write(&untimed, &stripped).expect("write");
    // ffmpeg reads the stripped file as the timed one (it times fragments by order too).
    assert_eq!(packets(&untimed), packets(&timed));
    let with = package_and_check(&timed, &[]);
    let without = package_and_check(&untimed, &[]);
    // The same timeline as where every fragment said its time.
    let timelines = |dir: &Path| {
        parse_mpd(&std::fs::read_to_string(dir.join("manifest.mpd")).expect("mpd"))
            .into_iter()
            .map(|set| set.timeline)
            .collect::<Vec<_>>()
    };
    assert_eq!(timelines(&without), timelines(&with));
}

#[test]
fn smooth_streaming_fragments_are_timed_by_their_tfxd() {
    if !have_ffmpeg() {
        return;
    }
    // ffmpeg's Smooth Streaming muxer: a moof per track, no tfdt, each track fragment timed
    // by a tfxd uuid box, 10 MHz timescales.
    let source = ffmpeg_file("smooth-source.mp4", &[]);
    let smooth = ffmpeg(
        "smooth.ismv",
        &[
            "-i",
            source.to_str().expect("utf-8"),
            "-c",
            "copy",
            "-f",
            "ismv",
        ],
    );
    let data = std::fs::read(&smooth).expect("the ismv file");
    let top = boxes(&data);
    assert!(
        top.iter()
            .filter(|b| &b[4..8] == b"moof")
            .all(|moof| !moof.windows(4).any(|w| w == b"tfdt")),
        "ffmpeg's ismv has no tfdt"
    );
    let whole = package_and_check(&smooth, &[]);
    // Without its first second (a moof and mdat per track), the file starts a second in: the
    // tfxd says so, where timing by order would start it at zero.
    let first_moofs: Vec<usize> = top
        .iter()
        .enumerate()
        .filter(|(_, b)| &b[4..8] == b"moof")
        .map(|(i, _)| i)
        .take(2)
        .collect();
    let later: Vec<u8> = top
        .iter()
        .enumerate()
        .filter(|(i, _)| !first_moofs.iter().any(|m| *i == *m || *i == *m + 1))
        .flat_map(|(_, b)| b.iter().copied())
        .collect();
    let late = temp_dir("progressive-in").join("smooth-late.ismv");
    std::fs::write(&late, &later).expect("write");
    let out = temp_dir("progressive-out").join("smooth-late");
    let packaged = run(&[
        "package",
        late.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(
        packaged.status.success(),
        "{}",
        String::from_utf8_lossy(&packaged.stderr)
    );
    let starts = |dir: &Path| {
        parse_mpd(&std::fs::read_to_string(dir.join("manifest.mpd")).expect("mpd"))
            .into_iter()
            .map(|set| set.timeline[0].0 as f64 / set.timescale as f64)
            .collect::<Vec<f64>>()
    };
    let (from_zero, from_one) = (starts(&whole), starts(&out));
    assert_eq!(from_zero.len(), 2);
    assert_eq!(from_zero.len(), from_one.len());
    // Video a second later exactly; audio with it, from its first fragment that runs into
    // that second (its tfxd time, whose track is no longer moved: its first time is not
    // negative now), kept rather than cut off before the first segment.
    assert!(
        (from_one[0] - from_zero[0] - 1.0).abs() < 0.001,
        "{from_zero:?} then {from_one:?}"
    );
    assert!(
        (0.9..=1.0).contains(&(from_one[1] - from_zero[1])),
        "{from_zero:?} then {from_one:?}"
    );
}

#[test]
fn files_from_npm_muxers_package_frame_exact() {
    if !have_ffmpeg() || !node_modules_ready() {
        return;
    }
    for (name, extra) in [("b-frames", &[][..]), ("no-b-frames", &["-bf", "0"][..])] {
        npm_muxers_package_frame_exact(name, extra);
    }
}

fn npm_muxers_package_frame_exact(name: &str, extra: &[&str]) {
    // The same six seconds as MP4 (for mp4box.js and mediabunny) and MPEG-TS (for mux.js).
    let mp4 = ffmpeg_file(&format!("npm-{name}.mp4"), extra);
    let ts = ffmpeg(
        &format!("npm-{name}.ts"),
        &[
            "-i",
            mp4.to_str().expect("utf-8"),
            "-c",
            "copy",
            "-f",
            "mpegts",
        ],
    );
    let dir = temp_dir("npm-muxers").join(name);
    std::fs::create_dir_all(&dir).expect("a folder");
    let script = browser_dir().join("muxers.mjs");
    let out = Command::new("node")
        .arg(&script)
        .args(["--input-mp4", mp4.to_str().expect("utf-8")])
        .args(["--input-ts", ts.to_str().expect("utf-8")])
        .args(["--out", dir.to_str().expect("utf-8")])
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "muxers.mjs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("muxers.mjs prints JSON");
    let files = files.as_array().expect("a list of files");
    let muxers: std::collections::BTreeSet<&str> =
        files.iter().filter_map(|f| f["muxer"].as_str()).collect();
    assert_eq!(
        muxers.into_iter().collect::<Vec<_>>(),
        ["mediabunny", "mp4box.js", "mux.js"],
        "{files:?}"
    );
    let input_frames = ffprobe_frames(&mp4);
    for file in files {
        let path = Path::new(file["file"].as_str().expect("file"));
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            dir.join(path)
        };
        let what = format!("{} {} ({name})", file["muxer"], file["layout"]);
        let b_frames = file["bframes"].as_bool().expect("bframes");
        assert_eq!(b_frames, extra.is_empty(), "{what}: B-frames as given");
        // The muxer wrote every frame it was given, and ffmpeg reads them back.
        let frames = ffprobe_frames(&path);
        for (kind, key) in [("video", "video_frames"), ("audio", "audio_frames")] {
            let given = file[key].as_u64().expect("frame count");
            let read = frames
                .iter()
                .find(|(k, _)| k == kind)
                .map_or(0, |(_, n)| *n);
            let source = input_frames
                .iter()
                .find(|(k, _)| k == kind)
                .map_or(0, |(_, n)| *n);
            assert!(
                read.abs_diff(given) <= 1 && given.abs_diff(source) <= 1,
                "{what}: {kind} given {given}, read {read}, source {source}"
            );
        }
        eprintln!("packaging {what}: {}", path.display());
        package_and_check(&path, &[]);
    }
}

/// Where `scripts/gst-fmp4.sh` builds GStreamer's fragmented-MP4 muxers; `None` (with a loud
/// skip, or a failure in CI) when GStreamer has none.
fn gst_fmp4_plugin_path() -> Option<String> {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/gst-plugin-fmp4/release");
    let path = built.to_string_lossy().to_string();
    let has = |plugin_path: Option<&str>| {
        let mut inspect = Command::new("gst-inspect-1.0");
        inspect.arg("isofmp4mux");
        if let Some(p) = plugin_path {
            inspect.env("GST_PLUGIN_PATH", p);
        }
        inspect.output().is_ok_and(|o| o.status.success())
    };
    if has(None) {
        return Some(String::new());
    }
    if has(Some(&path)) {
        return Some(path);
    }
    if in_ci() {
        panic!("GStreamer's isofmp4mux is required in CI: run scripts/gst-fmp4.sh");
    }
    eprintln!("\n*** SKIPPING: no isofmp4mux/cmafmux; scripts/gst-fmp4.sh builds them ***\n");
    None
}

#[test]
fn gstreamer_isofmp4mux_and_cmafmux_files_package_frame_exact() {
    if !have_ffmpeg() || !have_tool_with("gst-launch-1.0", "--version") {
        return;
    }
    let Some(plugin_path) = gst_fmp4_plugin_path() else {
        return;
    };
    let video = "videotestsrc num-buffers=150 ! video/x-raw,width=320,height=240,framerate=30/1 ! \
                 x264enc key-int-max=30 bframes=2 ! h264parse";
    let audio = "audiotestsrc num-buffers=235 ! audio/x-raw,rate=48000 ! voaacenc ! aacparse";
    // A second a fragment: isofmp4mux with both tracks, cmafmux one track a file (CMAF).
    for (name, pipeline) in [
        (
            "isofmp4mux",
            format!(
                "{video} ! isofmp4mux fragment-duration=1000000000 name=mux ! filesink location=OUT {audio} ! mux."
            ),
        ),
        (
            "cmafmux-video",
            format!("{video} ! cmafmux fragment-duration=1000000000 ! filesink location=OUT"),
        ),
        (
            "cmafmux-audio",
            format!("{audio} ! cmafmux fragment-duration=1000000000 ! filesink location=OUT"),
        ),
    ] {
        let path = temp_dir("progressive-in").join(format!("gst-{name}.mp4"));
        let pipeline = pipeline.replace("OUT", &path.to_string_lossy());
        let mut launch = Command::new("gst-launch-1.0");
        launch.arg("-q").args(pipeline.split_whitespace());
        if !plugin_path.is_empty() {
            launch.env("GST_PLUGIN_PATH", &plugin_path);
        }
        let out = launch.output().expect("gst-launch-1.0");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if name == "cmafmux-audio" {
            // Audio alone: segments cut by time, every frame kept.
            package_audio_only(&path);
        } else {
            package_and_check(&path, &[]);
        }
    }
}

/// Packages an audio-only file and checks that its one Representation has every frame.
fn package_audio_only(input: &Path) {
    let out_dir = temp_dir("progressive-out").join(input.file_stem().expect("a name"));
    let out = run(&[
        "package",
        input.to_str().expect("utf-8"),
        "--out",
        out_dir.to_str().expect("utf-8"),
        "--segment-duration",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}: {}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mpd = std::fs::read_to_string(out_dir.join("manifest.mpd")).expect("manifest.mpd");
    let sets = parse_mpd(&mpd);
    assert_eq!(sets.len(), 1, "{mpd}");
    let set = &sets[0];
    assert!(set.timeline.len() >= 2, "{mpd}");
    let init = set
        .initialization
        .replace("$RepresentationID$", &set.representation);
    let mut appended = std::fs::read(out_dir.join(init)).expect("init");
    for n in 0..set.timeline.len() as u64 {
        let name = fill_template(&set.media, &set.representation, set.start_number + n);
        appended.extend(std::fs::read(out_dir.join(&name)).expect("a listed segment"));
    }
    let path = out_dir.join("appended.mp4");
    std::fs::write(&path, &appended).expect("write");
    assert_eq!(packets(&path), packets(input), "{}", input.display());
    assert_eq!(ffmpeg_decode_errors(&path), None);
}

/// `moof` (at `new_start` in the rewritten file) with each `trun`'s data offset taken out and
/// its `tfhd`'s absolute `base_data_offset` pointing at the run's data instead: runs placed
/// by the base alone (ISO/IEC 14496-12 §8.8.8: a run without a data offset starts at the
/// base). Each traf must have one trun and a base_data_offset (ffmpeg without
/// default_base_moof).
fn place_by_base_only(moof: &[u8], new_start: u64) -> Vec<u8> {
    let boxed = |kind: &[u8], body: &[u8]| {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    };
    let old_len = moof.len();
    let trafs = boxes(&moof[8..])
        .iter()
        .filter(|b| &b[4..8] == b"traf")
        .count();
    let new_len = (old_len - 4 * trafs) as u64;
    let mut body = Vec::new();
    for child in boxes(&moof[8..]) {
        if &child[4..8] != b"traf" {
            body.extend_from_slice(child);
            continue;
        }
        let parts = boxes(&child[8..]);
        let trun = parts.iter().find(|p| &p[4..8] == b"trun").expect("a trun");
        assert!(trun[11] & 1 != 0, "the trun has a data offset");
        let data_offset = i32::from_be_bytes(trun[16..20].try_into().expect("4"));
        // Where the run's data starts in the mdat's body, then in the new file.
        let in_mdat = data_offset as u64 - old_len as u64 - 8;
        let base = new_start + new_len + 8 + in_mdat;
        let mut traf = Vec::new();
        for part in parts {
            match &part[4..8] {
                b"tfhd" => {
                    assert!(part[11] & 1 != 0, "tfhd has a base_data_offset");
                    let mut tfhd = part.to_vec();
                    tfhd[16..24].copy_from_slice(&base.to_be_bytes());
                    traf.extend_from_slice(&tfhd);
                }
                b"trun" => {
                    let mut trun = part[8..].to_vec();
                    trun[3] &= !1;
                    trun.drain(8..12);
                    traf.extend(boxed(b"trun", &trun));
                }
                _ => traf.extend_from_slice(part),
            }
        }
        body.extend(boxed(b"traf", &traf));
    }
    let out = boxed(b"moof", &body);
    assert_eq!(out.len() as u64, new_len);
    out
}

#[test]
fn runs_placed_by_the_base_data_offset_alone_package_frame_exact() {
    if !have_ffmpeg() {
        return;
    }
    // ffmpeg without default_base_moof: absolute base_data_offsets in every tfhd.
    let source = ffmpeg_file("base-source.mp4", &[]);
    let absolute = ffmpeg(
        "absolute-base.mp4",
        &[
            "-i",
            source.to_str().expect("utf-8"),
            "-c",
            "copy",
            "-movflags",
            "frag_keyframe+empty_moov",
        ],
    );
    let data = std::fs::read(&absolute).expect("the fragmented file");
    let mut out = Vec::new();
    let mut moofs = 0;
    for this in boxes(&data) {
        if &this[4..8] == b"moof" {
            out.extend(place_by_base_only(this, out.len() as u64));
            moofs += 1;
        } else {
            out.extend_from_slice(this);
        }
    }
    assert!(moofs >= 6, "{moofs} fragments");
    let rewritten = temp_dir("progressive-in").join("base-only.mp4");
    std::fs::write(&rewritten, &out).expect("write");
    // ffmpeg reads the rewritten file as the original; so must package.
    assert_eq!(packets(&rewritten), packets(&absolute));
    assert_eq!(ffmpeg_decode_errors(&rewritten), None);
    package_and_check(&rewritten, &[]);
}
