//! ffmpeg's command line for a source: the input (test pattern, camera, file, URL), the
//! encoders and the muxer for the ingest. The pieces are public so that a benchmark can lay
//! out ffmpeg as the server does (`examples/ingest_lag.rs`).

use super::super::SourceSpec;

/// How a stream's ffmpeg hands us its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ingest {
    /// Each frame the moment it is encoded (FLV), our own fragments written from it.
    #[default]
    Auto,
    /// Fragmented MP4 from ffmpeg's own muxer, cut by our splitter.
    Fmp4,
}

/// Encoder settings for sources that ffmpeg encodes.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderOptions {
    /// Picture size for the test pattern and cameras; other sources keep theirs unless set.
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: u32,
    pub video_bitrate_kbps: u32,
    /// Seconds between key frames (at most 2 for viewers to join quickly).
    pub keyint_secs: f64,
    /// x264 preset: speed against quality.
    pub preset: String,
    pub audio: bool,
    pub audio_bitrate_kbps: u32,
    /// Extra ffmpeg input options, placed before `-i` (for example `-rtsp_transport udp`).
    pub input_args: Vec<String>,
    /// How ffmpeg hands the frames over.
    pub ingest: Ingest,
    /// The ladder, top rung first: with two or more, ffmpeg encodes each rung from one decode,
    /// the key frames at the same instants on all of them, and the audio once.
    pub renditions: Vec<Rendition>,
}

/// One rung of a ladder: its picture height (the width follows the source's shape) and video
/// bitrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rendition {
    pub height: u32,
    pub video_bitrate_kbps: u32,
}

impl Rendition {
    /// Its name in URLs, the API and the page: the height, `360`.
    pub fn name(&self) -> String {
        self.height.to_string()
    }
}

/// Why a ladder cannot be encoded.
pub fn check_renditions(renditions: &[Rendition]) -> Result<(), String> {
    if renditions.len() == 1 {
        return Err("renditions: give two rungs or more (one is the stream itself)".into());
    }
    if renditions.len() > 6 {
        return Err(format!(
            "renditions: {} rungs; at most 6 are encoded at once",
            renditions.len()
        ));
    }
    for r in renditions {
        if !(16..=4320).contains(&r.height) || r.height % 2 != 0 {
            return Err(format!(
                "renditions: height {} must be even, from 16 to 4320",
                r.height
            ));
        }
        if !(16..=100_000).contains(&r.video_bitrate_kbps) {
            return Err(format!(
                "renditions: video_bitrate_kbps {} is out of range (16 to 100000)",
                r.video_bitrate_kbps
            ));
        }
    }
    if renditions.windows(2).any(|w| w[1].height >= w[0].height) {
        return Err(
            "renditions: list the rungs from the highest to the lowest, each height once".into(),
        );
    }
    Ok(())
}

/// `--renditions 720:1500,360:400,180:150`: HEIGHT:KBPS, top rung first.
pub fn parse_renditions(text: &str) -> Result<Vec<Rendition>, String> {
    let renditions = text
        .split(',')
        .map(|rung| {
            let (height, kbps) = rung.trim().split_once(':').ok_or_else(|| {
                format!("--renditions {text:?}: each rung is HEIGHT:KBPS, e.g. 720:1500,360:400")
            })?;
            let number = |what: &str, v: &str| {
                v.trim()
                    .parse::<u32>()
                    .map_err(|_| format!("--renditions {text:?}: {what} {v:?} is not a number"))
            };
            Ok(Rendition {
                height: number("height", height)?,
                video_bitrate_kbps: number("bitrate", kbps)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    check_renditions(&renditions)?;
    Ok(renditions)
}

impl Default for EncoderOptions {
    fn default() -> Self {
        Self {
            width: None,
            height: None,
            fps: 30,
            video_bitrate_kbps: 1500,
            keyint_secs: 1.0,
            preset: "veryfast".into(),
            audio: true,
            audio_bitrate_kbps: 96,
            input_args: Vec::new(),
            ingest: Ingest::Auto,
            renditions: Vec::new(),
        }
    }
}

impl EncoderOptions {
    fn size(&self) -> (u32, u32) {
        (self.width.unwrap_or(1280), self.height.unwrap_or(720))
    }

    fn keyint_frames(&self) -> u32 {
        ((f64::from(self.fps) * self.keyint_secs).round() as u32).max(1)
    }
}

/// Everything ffmpeg is told, input and output, without the program name.
pub fn arguments(spec: &SourceSpec, opts: &EncoderOptions, ingest: Ingest) -> Vec<String> {
    let Some((mut args, audio_map)) = input_arguments(spec, opts, ingest) else {
        return Vec::new();
    };
    args.extend(["-map".into(), "0:v:0".into()]);
    if opts.audio {
        args.extend(["-map".into(), audio_map.into()]);
    }
    let scale = matches!(spec, SourceSpec::File(_) | SourceSpec::Url(_))
        && (opts.width.is_some() || opts.height.is_some());
    if scale {
        args.extend([
            "-vf".into(),
            format!(
                "scale={}:{}",
                opts.width.map_or("-2".into(), |w| w.to_string()),
                opts.height.map_or("-2".into(), |h| h.to_string())
            ),
        ]);
    }
    args.extend(video_encoder(opts));
    if opts.audio {
        args.extend(audio_encoder(opts));
    }
    args.extend(muxer(ingest));
    args.push("pipe:1".into());
    args
}

/// A ladder's command line: one decode, `split` into a scaler and an encoder per rung, each
/// rung on its own FLV output (`video_outputs`, top rung first), and the audio encoded once on
/// `audio_output`, so no output waits for another. Every rung keeps the same frames and the
/// same key-frame interval in frames, so key frames fall on the same instants everywhere.
pub fn ladder_arguments(
    spec: &SourceSpec,
    opts: &EncoderOptions,
    video_outputs: &[String],
    audio_output: Option<&str>,
) -> Vec<String> {
    let Some((mut args, audio_map)) = input_arguments(spec, opts, Ingest::Auto) else {
        return Vec::new();
    };
    let rungs = opts.renditions.len().min(video_outputs.len());
    let mut graph = format!("[0:v:0]split={rungs}");
    for i in 0..rungs {
        graph.push_str(&format!("[s{i}]"));
    }
    for (i, rung) in opts.renditions.iter().take(rungs).enumerate() {
        graph.push_str(&format!(";[s{i}]scale=-2:{}[v{i}]", rung.height));
    }
    args.extend(["-filter_complex".into(), graph]);
    for (i, (rung, output)) in opts.renditions.iter().zip(video_outputs).enumerate() {
        args.extend(["-map".into(), format!("[v{i}]")]);
        let rung_opts = EncoderOptions {
            video_bitrate_kbps: rung.video_bitrate_kbps,
            ..opts.clone()
        };
        args.extend(video_encoder(&rung_opts));
        args.extend(muxer(Ingest::Auto));
        args.push(output.clone());
    }
    if let Some(output) = audio_output {
        args.extend(["-map".into(), audio_map.into()]);
        args.extend(audio_encoder(opts));
        args.extend(muxer(Ingest::Auto));
        args.push(output.to_string());
    }
    args
}

/// The options up to the inputs, and where the audio comes from (a `-map` argument); `None`
/// for a source that is not ffmpeg's.
fn input_arguments(
    spec: &SourceSpec,
    opts: &EncoderOptions,
    ingest: Ingest,
) -> Option<(Vec<String>, &'static str)> {
    let mut args: Vec<String> = vec!["-hide_banner".into(), "-nostats".into()];
    let (width, height) = opts.size();
    let fps = opts.fps;
    // Where the audio comes from: testsrc's second lavfi output, else the input's first audio
    // stream if it has one.
    let audio_map = match spec {
        SourceSpec::TestSrc => {
            let video = format!("testsrc=size={width}x{height}:rate={fps}");
            let audio = "sine=frequency=440:sample_rate=48000";
            args.extend(["-re".into(), "-f".into(), "lavfi".into()]);
            args.extend(opts.input_args.iter().cloned());
            match ingest {
                // One lavfi graph with both outputs: from two inputs, each paced by `-re`,
                // ffmpeg 5.1 hands over video frames about 8 ms later and twice as unevenly
                // (measured here on FLV: p50 15.5 ms behind the quickest frame, against 6.4).
                Ingest::Auto if opts.audio => {
                    args.extend(["-i".into(), format!("{video}[out0];{audio}[out1]")]);
                    "0:a:0"
                }
                // Two inputs, not one graph: from a single graph, ffmpeg 5.1's fMP4 muxer
                // writes a prft before only a few video fragments and stores zero sample
                // durations (seen here).
                _ => {
                    args.extend(["-i".into(), video]);
                    if opts.audio {
                        args.extend(["-re", "-f", "lavfi", "-i", audio].map(String::from));
                    }
                    "1:a:0"
                }
            }
        }
        SourceSpec::Webcam(device) => {
            args.extend(webcam_input(width, height, fps));
            args.extend(opts.input_args.iter().cloned());
            args.push("-i".into());
            args.push(webcam_device(device.as_deref()));
            "0:a:0?"
        }
        SourceSpec::File(path) => {
            args.extend(["-re".into(), "-stream_loop".into(), "-1".into()]);
            args.extend(opts.input_args.iter().cloned());
            args.extend(["-i".into(), path.display().to_string()]);
            "0:a:0?"
        }
        SourceSpec::Url(url) => {
            if url.starts_with("rtsp") {
                args.extend(["-rtsp_transport".into(), "tcp".into()]);
            }
            args.extend(opts.input_args.iter().cloned());
            args.extend(["-i".into(), url.clone()]);
            "0:a:0?"
        }
        // Not ffmpeg sources; `run` never gets them.
        SourceSpec::Stdin
        | SourceSpec::Sample
        | SourceSpec::Relay(_)
        | SourceSpec::Dir(_)
        | SourceSpec::Publish => {
            return None;
        }
    };
    Some((args, audio_map))
}

fn webcam_input(width: u32, height: u32, fps: u32) -> Vec<String> {
    let size = format!("{width}x{height}");
    let format = if cfg!(target_os = "macos") {
        "avfoundation"
    } else if cfg!(windows) {
        "dshow"
    } else {
        "v4l2"
    };
    vec![
        "-f".into(),
        format.into(),
        "-framerate".into(),
        fps.to_string(),
        "-video_size".into(),
        size,
    ]
}

fn webcam_device(device: Option<&str>) -> String {
    if cfg!(target_os = "macos") {
        // avfoundation names devices "VIDEO:AUDIO"; the default camera and microphone.
        device.unwrap_or("0:0").to_string()
    } else if cfg!(windows) {
        format!("video={}", device.unwrap_or("Integrated Camera"))
    } else {
        device.unwrap_or("/dev/video0").to_string()
    }
}

/// The video encoder: low-latency H.264, a key frame every `keyint_secs` exactly.
pub fn video_encoder(opts: &EncoderOptions) -> Vec<String> {
    let keyint = opts.keyint_frames().to_string();
    let kbps = opts.video_bitrate_kbps;
    [
        "-c:v",
        "libx264",
        "-preset",
        &opts.preset,
        "-tune",
        "zerolatency",
        "-profile:v",
        "high",
        "-pix_fmt",
        "yuv420p",
        // A key frame every `keyint` frames exactly, none elsewhere, no B-frames.
        "-g",
        &keyint,
        "-keyint_min",
        &keyint,
        "-sc_threshold",
        "0",
        "-bf",
        "0",
        "-b:v",
        &format!("{kbps}k"),
        "-maxrate",
        &format!("{kbps}k"),
        "-bufsize",
        &format!("{}k", kbps.max(2) / 2),
    ]
    .map(String::from)
    .to_vec()
}

/// The audio encoder: AAC at 48 kHz, stereo.
pub fn audio_encoder(opts: &EncoderOptions) -> Vec<String> {
    [
        "-c:a",
        "aac",
        "-b:a",
        &format!("{}k", opts.audio_bitrate_kbps),
        "-ar",
        "48000",
        "-ac",
        "2",
    ]
    .map(String::from)
    .to_vec()
}

/// The muxer for `ingest`, up to the output's name.
pub fn muxer(ingest: Ingest) -> Vec<String> {
    let flags: &[&str] = match ingest {
        Ingest::Auto => &[
            "-f",
            "flv",
            // Each packet out as soon as it is muxed; no seeking back to patch the
            // header's duration, which a pipe cannot do.
            "-flush_packets",
            "1",
            "-flvflags",
            "no_duration_filesize",
        ],
        Ingest::Fmp4 => &[
            // The prft wall clock is the encoder's input time, so the latency a player
            // measures includes encoding and the muxer's frame of waiting (without it,
            // ffmpeg stamps the moment it writes the fragment, after both).
            "-export_side_data",
            "prft",
            "-f",
            "mp4",
            // ISO/IEC 23000-19 (CMAF) style: empty moov, moof-relative offsets, a fragment
            // per frame, and the encoder's wall clock in a prft before each video fragment.
            "-movflags",
            "empty_moov+default_base_moof+frag_every_frame",
            "-write_prft",
            "wallclock",
            "-flush_packets",
            "1",
        ],
    };
    flags.iter().map(|f| f.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn testsrc_writes_per_frame_fmp4_with_prft_to_stdout() {
        let args = arguments(
            &SourceSpec::TestSrc,
            &EncoderOptions::default(),
            Ingest::Fmp4,
        );
        let line = args.join(" ");
        for needle in [
            "-re -f lavfi -i testsrc=size=1280x720:rate=30 -re -f lavfi -i sine=frequency=440:sample_rate=48000",
            "-map 0:v:0 -map 1:a:0",
            "-tune zerolatency",
            "-g 30 -keyint_min 30 -sc_threshold 0 -bf 0",
            "-movflags empty_moov+default_base_moof+frag_every_frame",
            "-write_prft wallclock",
            "pipe:1",
        ] {
            assert!(line.contains(needle), "{needle:?} missing from: {line}");
        }
    }

    #[test]
    fn auto_ingest_has_ffmpeg_write_flv_from_one_lavfi_graph() {
        let args = arguments(
            &SourceSpec::TestSrc,
            &EncoderOptions::default(),
            Ingest::Auto,
        );
        let line = args.join(" ");
        for needle in [
            "-re -f lavfi -i testsrc=size=1280x720:rate=30[out0];sine=frequency=440:sample_rate=48000[out1]",
            "-map 0:v:0 -map 0:a:0",
            "-f flv -flush_packets 1 -flvflags no_duration_filesize pipe:1",
        ] {
            assert!(line.contains(needle), "{needle:?} missing from: {line}");
        }
        assert!(!line.contains("-write_prft"), "{line}");
    }

    #[test]
    fn files_loop_in_real_time_and_keep_optional_audio() {
        let spec = SourceSpec::File("in.mp4".into());
        let line = arguments(&spec, &EncoderOptions::default(), Ingest::Fmp4).join(" ");
        assert!(line.contains("-re -stream_loop -1 -i in.mp4"), "{line}");
        assert!(line.contains("-map 0:a:0?"), "{line}");
        assert!(
            !line.contains("-vf"),
            "files keep their size unless asked: {line}"
        );
    }

    #[test]
    fn without_audio_no_audio_is_mapped_or_encoded() {
        let opts = EncoderOptions {
            audio: false,
            ..EncoderOptions::default()
        };
        let line = arguments(&SourceSpec::TestSrc, &opts, Ingest::Fmp4).join(" ");
        assert!(!line.contains("sine"), "{line}");
        assert!(!line.contains("-c:a"), "{line}");
    }
}
