//! Ingest lag: how long after ffmpeg's encoder takes a frame does the frame reach us, through
//! each ingest, with and without sound, with ffmpeg's inputs laid out as our server lays them
//! out for the test pattern. One ffmpeg runs the picture into two x264 encoders set up as the
//! server sets them up: one writes fMP4 (`--ingest fmp4`, the encoder's input time in each
//! `prft`), the other FLV (`--ingest auto`). Each frame's arrival here, read by our own FLV
//! reader and splitter, minus the encoder-input wall clock of the same frame (from the fMP4
//! side's `prft`) is its lag.
//!
//! With sound the two ingests need runs of their own. The fMP4 ingest takes picture and sound
//! from two inputs (as the server does) and is timed by its own `prft`. The FLV ingest takes
//! them from one lavfi graph (as the server does), and from such an input ffmpeg 5.1's fMP4
//! muxer writes almost no `prft`, so there is no clock to hold it against: its lag is taken as
//! the quickest frame's lag without sound (measured in the first run) plus how much later than
//! its own quickest frame each frame came.
//!
//! ```sh
//! cargo run --release --example ingest_lag -- [--seconds 20]
//! ```
//!
//! The fMP4 encoder is the first of the two, so the FLV frame's own encoder starts a moment
//! later (by the other's encoding time) than the clock it is held against: its figure is, if
//! anything, too high.

use std::collections::HashMap;
use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use websocketlivestream::flv::{FlvReader, TagKind, Video};
use websocketlivestream::fmp4::{Splitter, Unit};
use websocketlivestream::source::{EncoderOptions, Ingest, ffmpeg};

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// `(media ms, arrival ms, encoder-input wall ms)` of each fMP4 video fragment with a prft.
type Stamped = Vec<(i64, f64, f64)>;

fn read_fmp4(mut input: impl Read, out: Arc<Mutex<Stamped>>) {
    let mut splitter = Splitter::default();
    let mut timescale = 1;
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = input.read(&mut buf) {
        if n == 0 {
            return;
        }
        let arrived = now_ms();
        splitter.feed(Bytes::copy_from_slice(&buf[..n]));
        while let Ok(Some(unit)) = splitter.poll() {
            match unit {
                Unit::Init(init) => {
                    timescale = init.video().map_or(1, |v| v.timescale.max(1));
                }
                Unit::Fragment(f) => {
                    if let Some(wall) = f.prft.and_then(|p| p.unix_millis()) {
                        let media = f.prft.map_or(0, |p| p.media_time);
                        let media_ms = (media as f64 * 1000.0 / f64::from(timescale)).round();
                        let mut stamped = out.lock().unwrap_or_else(|e| e.into_inner());
                        stamped.push((media_ms as i64, arrived, wall as f64));
                    }
                }
            }
        }
    }
}

/// `(timestamp ms, arrival ms)` of each FLV video frame.
fn read_flv(mut input: impl Read, out: Arc<Mutex<Vec<(i64, f64)>>>) {
    let mut reader = FlvReader::default();
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = input.read(&mut buf) {
        if n == 0 {
            return;
        }
        let arrived = now_ms();
        reader.feed(Bytes::copy_from_slice(&buf[..n]));
        while let Ok(Some(tag)) = reader.poll() {
            if tag.kind == TagKind::Video && matches!(tag.video(), Ok(Video::Frame { .. })) {
                let mut frames = out.lock().unwrap_or_else(|e| e.into_inner());
                frames.push((i64::from(tag.timestamp_ms), arrived));
            }
        }
    }
}

fn quantiles(mut values: Vec<f64>) -> String {
    if values.is_empty() {
        return "no frames".into();
    }
    values.sort_by(f64::total_cmp);
    let q = |p: f64| values[((values.len() - 1) as f64 * p).round() as usize];
    format!(
        "p50 {:5.1}  p95 {:5.1}  p99 {:5.1} ms ({} frames)",
        q(0.5),
        q(0.95),
        q(0.99),
        values.len()
    )
}

/// How one ffmpeg run is laid out.
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// Picture only: both ingests at once.
    VideoOnly,
    /// One lavfi graph with sound, as `--ingest auto` runs it: the FLV side, with sound.
    FlvWithSound,
    /// Two inputs, as `--ingest fmp4` runs it: the fMP4 side, with sound, alone.
    Fmp4WithSound,
}

/// Runs one layout; returns the FLV side's quickest lag, where it has a clock.
fn run(layout: Layout, seconds: f64, quickest: Option<f64>) -> std::io::Result<Option<f64>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let picture = "testsrc=size=1280x720:rate=30";
    let sound = "sine=frequency=440:sample_rate=48000";
    // The encoders and muxers exactly as the server sets them up for the test pattern.
    let opts = EncoderOptions::default();
    let video = ffmpeg::video_encoder(&opts);
    let aac = ffmpeg::audio_encoder(&opts);
    let mut command = Command::new("ffmpeg");
    command.args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
    ]);
    match layout {
        Layout::VideoOnly => command.arg(picture),
        Layout::FlvWithSound => command.arg(format!("{picture}[out0];{sound}[out1]")),
        Layout::Fmp4WithSound => command
            .arg(picture)
            .args(["-re", "-f", "lavfi", "-i", sound]),
    };
    if layout == Layout::Fmp4WithSound {
        command
            .args(["-map", "0:v"])
            .args(&video)
            .args(["-map", "1:a"])
            .args(&aac);
    } else {
        command
            .args([
                "-filter_complex",
                "[0:v]split=2[fmp4][flv]",
                "-map",
                "[fmp4]",
            ])
            .args(&video);
    }
    command
        .args(ffmpeg::muxer(Ingest::Fmp4))
        .arg(format!("tcp://127.0.0.1:{port}"));
    let with_flv = layout != Layout::Fmp4WithSound;
    if with_flv {
        command.args(["-map", "[flv]"]).args(&video);
        if layout == Layout::FlvWithSound {
            command.args(["-map", "0:a"]).args(&aac);
        }
        command.args(ffmpeg::muxer(Ingest::Auto)).arg("pipe:1");
    }
    command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = command.spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or(std::io::Error::other("no stdout"))?;
    let flv = Arc::new(Mutex::new(Vec::new()));
    let fmp4 = Arc::new(Mutex::new(Vec::new()));
    let flv_reader = {
        let flv = flv.clone();
        std::thread::spawn(move || read_flv(stdout, flv))
    };
    let (socket, _) = listener.accept()?;
    let fmp4_reader = {
        let fmp4 = fmp4.clone();
        std::thread::spawn(move || read_fmp4(socket, fmp4))
    };
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs_f64(seconds) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = flv_reader.join();
    let _ = fmp4_reader.join();

    // The first second is start-up.
    let stamped = fmp4.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let skip = stamped.first().map_or(0, |s| s.0) + 1000;
    let clock: HashMap<i64, f64> = stamped.iter().map(|&(ms, _, wall)| (ms, wall)).collect();
    let label = if layout == Layout::VideoOnly {
        "video only"
    } else {
        "with sound"
    };
    if layout != Layout::FlvWithSound {
        let lags: Vec<f64> = stamped
            .iter()
            .filter(|s| s.0 >= skip)
            .map(|&(_, arrived, wall)| arrived - wall)
            .collect();
        println!("{label}: fMP4 (--ingest fmp4) {}", quantiles(lags));
    }
    let mut quickest_here = None;
    if with_flv {
        let frames = flv.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let skip = frames.first().map_or(0, |f| f.0) + 1000;
        let frames: Vec<(i64, f64)> = frames.into_iter().filter(|f| f.0 >= skip).collect();
        let lags: Vec<f64> = if layout == Layout::FlvWithSound {
            let offsets: Vec<f64> = frames.iter().map(|&(ms, at)| at - ms as f64).collect();
            let least = offsets.iter().copied().fold(f64::INFINITY, f64::min);
            let base = quickest.unwrap_or(0.0);
            offsets.iter().map(|o| o - least + base).collect()
        } else {
            frames
                .iter()
                .filter_map(|&(ms, arrived)| {
                    // FLV counts whole milliseconds; the fMP4 side may round the other way.
                    let wall = [ms, ms - 1, ms + 1].iter().find_map(|m| clock.get(m))?;
                    Some(arrived - wall)
                })
                .collect()
        };
        quickest_here = lags.iter().copied().reduce(f64::min);
        println!("{label}: FLV  (--ingest auto) {}", quantiles(lags));
    }
    Ok(quickest_here)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(20.0);
    println!(
        "ingest lag: a frame's arrival minus its encoder-input wall clock, 1280x720 at 30 fps, {seconds} s each"
    );
    let mut quickest = None;
    for layout in [
        Layout::VideoOnly,
        Layout::FlvWithSound,
        Layout::Fmp4WithSound,
    ] {
        match run(layout, seconds, quickest) {
            Ok(q) if layout == Layout::VideoOnly => quickest = q,
            Ok(_) => {}
            Err(err) => {
                eprintln!("error: {err}");
                std::process::exit(1);
            }
        }
    }
}
