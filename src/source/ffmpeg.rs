//! Sources that run ffmpeg (through `ffmpeg-sidecar`): the test pattern, a camera, a file
//! looped in real time, a network URL. ffmpeg encodes low-latency H.264 (and AAC) and hands
//! over each frame on its stdout: with `--ingest auto`, as FLV the moment it is encoded, and
//! our FLV ingest writes the fragments; with `--ingest fmp4`, as ffmpeg's own fragmented MP4
//! (one fragment per frame with a `prft`, each a frame late: the muxer waits for the next
//! frame to know the duration), cut by our splitter.
//!
//! ffmpeg-sidecar's API is synchronous: its pipes are handed to tokio so that reading them never
//! blocks the runtime. ffmpeg's log lines become our log lines. A run that ends for any reason
//! but a stop is restarted with back-off, its timeline continued.

use std::collections::VecDeque;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ffmpeg_sidecar::child::FfmpegChild;
use ffmpeg_sidecar::command::FfmpegCommand;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use super::{
    Backoff, Continuity, Demuxer, Restart, RunEnd, SourceContext, SourceEvent, SourceSpec,
    forward_chunk,
};

/// How a stream's ffmpeg hands us its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Ingest {
    /// Each frame the moment it is encoded (FLV), our own fragments written from it.
    #[default]
    Auto,
    /// Fragmented MP4 from ffmpeg's own muxer, cut by our splitter.
    Fmp4,
}

/// Encoder settings for sources that ffmpeg encodes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
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
        SourceSpec::Stdin | SourceSpec::Sample | SourceSpec::Relay(_) | SourceSpec::Dir(_) => {
            return args;
        }
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
    let keyint = opts.keyint_frames().to_string();
    let kbps = opts.video_bitrate_kbps;
    args.extend(
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
        .map(String::from),
    );
    if opts.audio {
        args.extend(
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
            .map(String::from),
        );
    }
    match ingest {
        Ingest::Auto => args.extend(
            [
                "-f",
                "flv",
                // Each packet out as soon as it is muxed; no seeking back to patch the
                // header's duration, which a pipe cannot do.
                "-flush_packets",
                "1",
                "-flvflags",
                "no_duration_filesize",
                "pipe:1",
            ]
            .map(String::from),
        ),
        Ingest::Fmp4 => args.extend(
            [
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
                "pipe:1",
            ]
            .map(String::from),
        ),
    }
    args
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

/// Whether an ffmpeg program can be started (beside our binary, or on PATH).
pub fn ffmpeg_available() -> bool {
    ffmpeg_sidecar::command::ffmpeg_is_installed()
}

pub const FFMPEG_MISSING: &str = "ffmpeg not found: install it (Debian/Ubuntu: `sudo apt install ffmpeg`, \
macOS: `brew install ffmpeg`, Windows: https://ffmpeg.org/download.html) or put it beside this program";

/// Runs ffmpeg for `spec`, restarting it with back-off until cancelled.
pub async fn run(spec: SourceSpec, opts: EncoderOptions, ctx: SourceContext) {
    let args = arguments(&spec, &opts, opts.ingest);
    tracing::info!(stream = %ctx.stream, source = %spec, "starting ffmpeg: ffmpeg {}", args.join(" "));
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    let mut continuity = Continuity::default();
    loop {
        let started = Instant::now();
        let reason = match run_once(&args, opts.ingest, &ctx, &mut continuity).await {
            RunEnd::Stopped => return,
            RunEnd::Fatal(reason) => {
                tracing::error!(stream = %ctx.stream, "{reason}");
                ctx.send(SourceEvent::Finished {
                    reason: Some(reason),
                })
                .await;
                return;
            }
            RunEnd::Failed(reason) => reason,
        };
        if ctx.cancel.is_cancelled() {
            return;
        }
        backoff.succeeded_after(started.elapsed());
        let retry_in = backoff.next_delay();
        tracing::warn!(
            stream = %ctx.stream,
            retry_in_ms = retry_in.as_millis() as u64,
            "ffmpeg stopped: {reason}; restarting"
        );
        let event = SourceEvent::Restarting {
            reason,
            retry_in,
            cause: Restart::Process,
        };
        if !ctx.send(event).await {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(retry_in) => {}
            _ = ctx.cancel.cancelled() => return,
        }
        continuity.restart();
    }
}

/// Kills ffmpeg when dropped, so no path out of a run (a panic, a cancelled task) leaves it
/// running.
struct ChildGuard(Option<FfmpegChild>);

impl ChildGuard {
    fn kill(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
        }
    }

    /// Waits for the exit without blocking the runtime.
    async fn wait(&mut self) -> Option<ExitStatus> {
        let mut child = self.0.take()?;
        tokio::task::spawn_blocking(move || child.wait().ok())
            .await
            .ok()
            .flatten()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn run_once(
    args: &[String],
    ingest: Ingest,
    ctx: &SourceContext,
    continuity: &mut Continuity,
) -> RunEnd {
    let mut command = FfmpegCommand::new();
    command.args(args);
    let child = match command.spawn() {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return RunEnd::Fatal(FFMPEG_MISSING.into());
        }
        Err(err) => return RunEnd::Failed(format!("cannot start ffmpeg: {err}")),
    };
    let mut child = ChildGuard(Some(child));
    let Some(inner) = child.0.as_mut() else {
        return RunEnd::Failed("ffmpeg child vanished".into());
    };
    let (Some(stdout), Some(stderr)) = (inner.take_stdout(), inner.take_stderr()) else {
        return RunEnd::Failed("ffmpeg started without pipes".into());
    };
    let (mut stdout, stderr) = match (
        tokio::process::ChildStdout::from_std(stdout),
        tokio::process::ChildStderr::from_std(stderr),
    ) {
        (Ok(out), Ok(err)) => (out, err),
        (Err(e), _) | (_, Err(e)) => return RunEnd::Failed(format!("cannot read ffmpeg: {e}")),
    };
    let log = tokio::spawn(log_stderr(ctx.stream.clone(), stderr));

    let mut demuxer = Demuxer::new(ingest);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let end = loop {
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        tokio::select! {
            _ = ctx.cancel.cancelled() => break RunEnd::Stopped,
            read = stdout.read_buf(&mut buf) => match read {
                Ok(0) => break RunEnd::Failed(String::new()),
                Ok(_) => {
                    match forward_chunk(&mut demuxer, buf.split().freeze(), continuity, ctx).await {
                        Ok(true) => {}
                        Ok(false) => break RunEnd::Stopped,
                        // ffmpeg wrote something we cannot read: restart it.
                        Err(reason) => break RunEnd::Failed(reason),
                    }
                }
                Err(err) => break RunEnd::Failed(format!("reading ffmpeg's output: {err}")),
            },
        }
    };
    child.kill();
    let status = child.wait().await;
    let last_lines = log.await.unwrap_or_default();
    match end {
        RunEnd::Failed(reason) if reason.is_empty() => {
            let status = status.map_or("unknown status".into(), |s| s.to_string());
            let detail = last_lines.into_iter().collect::<Vec<_>>().join(" | ");
            RunEnd::Failed(if detail.is_empty() {
                format!("ffmpeg exited ({status})")
            } else {
                format!("ffmpeg exited ({status}): {detail}")
            })
        }
        other => other,
    }
}

/// Logs ffmpeg's stderr at matching levels and returns its last warning and error lines.
async fn log_stderr(stream: String, stderr: tokio::process::ChildStderr) -> VecDeque<String> {
    let mut lines = BufReader::new(stderr).lines();
    let mut last = VecDeque::new();
    while let Ok(Some(line)) = lines.next_line().await {
        // `-loglevel level+info` prefixes every line with its level.
        let (level, text) = match line.split_once("] ") {
            Some((prefix, text)) if prefix.starts_with('[') => {
                let level = prefix.rsplit('[').next().unwrap_or_default();
                (level.to_string(), text.to_string())
            }
            _ => (String::new(), line.clone()),
        };
        match level.as_str() {
            "fatal" | "error" | "panic" => {
                tracing::error!(stream = %stream, "ffmpeg: {text}");
            }
            "warning" => tracing::warn!(stream = %stream, "ffmpeg: {text}"),
            _ => {
                tracing::debug!(stream = %stream, "ffmpeg: {text}");
                continue;
            }
        }
        last.push_back(text);
        if last.len() > 3 {
            last.pop_front();
        }
    }
    last
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
