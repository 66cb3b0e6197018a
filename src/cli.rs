//! The command line and the config file, resolved into settings. Every mistake in either is
//! one clear sentence, returned as an error for `main` to print.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

use crate::server::auth::{Auth, AuthSettings, KeySource};
use crate::server::tls::CertSource;
use crate::server::{Limits, MIN_HEADER_BYTES, ServeSettings};
use crate::source::ffmpeg::Rendition;
use crate::source::{EncoderOptions, Ingest, SourceSpec, ffmpeg};
use crate::stream::record::RecordConfig;
use crate::stream::{Access, HubConfig, StreamDef};

#[derive(Debug, Parser)]
#[command(
    name = "websocketlivestream",
    version,
    about = "Live video to browsers over WebSocket (MSE/WebCodecs), DASH and LL-HLS",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve live streams (the default).
    Serve(Box<ServeArgs>),
    /// Cut an fMP4 file into DASH segments with a static MPD.
    Package(PackageArgs),
    /// Print the box tree of an MP4 file, one box a line.
    Probe(ProbeArgs),
}

// The doc comments are clap's help text, brackets and all, not rustdoc links.
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Debug, Args, Default, Clone)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// A stream, as NAME=SOURCE (testsrc, webcam[:DEVICE], a file, a URL, stdin, sample).
    /// May repeat. Default: live=testsrc.
    #[arg(long = "stream", value_name = "NAME=SOURCE")]
    pub streams: Vec<String>,
    /// A TOML file with the same settings and a [[stream]] table per stream.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Target segment duration in seconds (DASH and HLS).
    #[arg(long, value_name = "SECS")]
    pub segment_duration: Option<f64>,
    /// Segments kept in the live window.
    #[arg(long, value_name = "N")]
    pub window: Option<usize>,
    /// Also keep every segment and manifest on disk under DIR/{name}/.
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// How ffmpeg hands over frames: auto (lowest latency) or fmp4.
    #[arg(long, value_enum)]
    pub ingest: Option<IngestArg>,
    /// Encode a ladder of renditions for the streams given here, top rung first, as
    /// HEIGHT:KBPS (e.g. 720:1500,360:400,180:150): one decode, an encoder a rung, the audio
    /// once; players and the WebSocket pick or switch between them. For a relay
    /// (ws://HOST/ws/NAME) it names the upstream's rungs to carry, one connection each.
    #[arg(long, value_name = "LADDER")]
    pub renditions: Option<String>,
    /// Serve https:// and wss:// with this certificate chain (PEM, leaf first); reloaded when
    /// the file changes.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve https:// and wss:// with a certificate made for this machine, kept in
    /// --state-dir; its fingerprint is logged.
    #[arg(long, conflicts_with = "tls_cert")]
    pub tls_self_signed: bool,
    /// Where the server keeps what it makes (the self-signed certificate). Default:
    /// $XDG_STATE_HOME/websocketlivestream or ~/.local/state/websocketlivestream.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Also listen for plain HTTP here, only to redirect to https (needs TLS).
    #[arg(long, value_name = "ADDR")]
    pub http_redirect: Option<String>,
    /// Serve ACME HTTP-01 challenges (certbot --webroot) from DIR on the --http-redirect
    /// listener.
    #[arg(long, value_name = "DIR")]
    pub acme_dir: Option<PathBuf>,
    /// Trust this CA certificate (PEM) for wss:// relay upstreams, beside the public roots.
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,
    /// Who may watch the streams unless their table says otherwise: public, or token (a JWT
    /// naming the stream and the read action).
    #[arg(long, value_enum, value_name = "ACCESS")]
    pub read: Option<AccessArg>,
    /// The shared secret of HS256 tokens, in a file (or the WSLS_JWT_SECRET variable).
    #[arg(long, value_name = "FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// The public key (PEM, RSA or EC) of RS256/ES256 tokens.
    #[arg(long, value_name = "FILE")]
    pub jwt_public_key: Option<PathBuf>,
    /// A JWKS file of token keys, chosen by their kid.
    #[arg(long, value_name = "FILE")]
    pub jwks: Option<PathBuf>,
    /// The admin token, in a file (or the WSLS_ADMIN_TOKEN variable): /metrics needs it.
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Serve /metrics and the API without a token on this second address (keep it private).
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// Take RTMP publishers here (rtmp://HOST:PORT/live/NAME, stream key NAME or
    /// NAME?token=...), e.g. 0.0.0.0:1935.
    #[arg(long, value_name = "ADDR")]
    pub rtmp_listen: Option<String>,
    /// Take RTMP publishers over TLS here (needs TLS), e.g. 0.0.0.0:1936.
    #[arg(long, value_name = "ADDR")]
    pub rtmps_listen: Option<String>,
}

/// `--read`, `read =` and `publish =`: who may do it ([`Access`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AccessArg {
    /// Anyone who can reach the server.
    Public,
    /// The bearer of a token for the stream and the action.
    Token,
}

/// The top level's `publish =`: who may publish, and whether to new names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishArg {
    Public,
    Token,
    /// A publish token's bearer may publish to any name it names; a new name makes a stream.
    Any,
}

impl From<AccessArg> for Access {
    fn from(arg: AccessArg) -> Self {
        match arg {
            AccessArg::Public => Access::Public,
            AccessArg::Token => Access::Token,
        }
    }
}

/// `--ingest` and `ingest =`: how ffmpeg hands over its frames ([`Ingest`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum IngestArg {
    /// Each frame the moment it is encoded (FLV), our own fragments written from it.
    Auto,
    /// Fragmented MP4 from ffmpeg's own muxer, cut by our splitter.
    Fmp4,
}

impl From<IngestArg> for Ingest {
    fn from(arg: IngestArg) -> Self {
        match arg {
            IngestArg::Auto => Ingest::Auto,
            IngestArg::Fmp4 => Ingest::Fmp4,
        }
    }
}

#[derive(Debug, Args)]
pub struct PackageArgs {
    /// An MP4 file, progressive (samples in its moov) or fragmented.
    pub input: PathBuf,
    /// Directory to write init.mp4, the numbered segments and manifest.mpd to.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Target segment duration in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub segment_duration: f64,
    /// Fragments of about this many seconds inside each segment (for low-latency players);
    /// default one per group of pictures. Progressive input only.
    #[arg(long, value_name = "SECS")]
    pub fragment_duration: Option<f64>,
    /// DASH profile: live (numbered segments, also HLS) or onDemand (one file per track
    /// with a sidx, byte ranges in the MPD).
    #[arg(long, value_enum, default_value_t = ProfileArg::Live)]
    pub profile: ProfileArg,
}

/// `package --profile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ProfileArg {
    #[default]
    Live,
    #[value(name = "onDemand", alias = "ondemand", alias = "on-demand")]
    OnDemand,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// An MP4 file.
    pub input: PathBuf,
}

/// The config file (`--config`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub segment_duration: Option<f64>,
    pub window: Option<usize>,
    pub record: Option<PathBuf>,
    /// Recordings keep at most this many megabytes per stream, oldest segments going first.
    pub record_max_mb: Option<f64>,
    /// ...and no segment older than this.
    pub record_max_age_secs: Option<f64>,
    pub ingest: Option<IngestArg>,
    /// Viewers the whole server takes at once (default 10000).
    pub max_viewers: Option<u64>,
    /// Seconds a client has to send a request's whole header, and to start its next request
    /// on a kept-alive connection (default 10).
    pub header_timeout_secs: Option<f64>,
    /// Largest request header, in bytes (default 16384, at least 8192); larger is 431.
    pub max_header_bytes: Option<usize>,
    /// Connections one client address may hold at once, viewers included (default: no
    /// limit); more are answered 429.
    pub max_connections_per_address: Option<u32>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    #[serde(default)]
    pub tls_self_signed: bool,
    /// Names (and addresses) the self-signed certificate carries beside the machine's own.
    #[serde(default)]
    pub tls_names: Vec<String>,
    pub state_dir: Option<PathBuf>,
    pub http_redirect: Option<String>,
    pub acme_dir: Option<PathBuf>,
    pub upstream_ca: Option<PathBuf>,
    /// Manifest and playlist requests per second one address may make (default: no limit).
    pub manifest_requests_per_sec: Option<f64>,
    /// Who may watch streams whose table does not say (default public).
    pub read: Option<AccessArg>,
    /// Who may publish to streams whose table does not say (default token); "any": also,
    /// with a publish token, to a new name, which makes a `publish` stream of it.
    pub publish: Option<PublishArg>,
    /// Streams publishers may make with `publish = "any"` (default 64).
    pub max_published_streams: Option<usize>,
    /// The HS256 shared secret, or a file holding it.
    pub jwt_secret: Option<String>,
    pub jwt_secret_file: Option<PathBuf>,
    /// RSA or EC public key (PEM file) for RS256/ES256 tokens.
    pub jwt_public_key: Option<PathBuf>,
    /// A JWKS file.
    pub jwks: Option<PathBuf>,
    /// Tokens must carry this `iss` / `aud`.
    pub token_issuer: Option<String>,
    pub token_audience: Option<String>,
    /// Seconds of clock skew allowed on a token's `exp` (default 0).
    pub token_leeway_secs: Option<u64>,
    pub admin_token: Option<String>,
    pub admin_token_file: Option<PathBuf>,
    pub admin_listen: Option<String>,
    pub rtmp_listen: Option<String>,
    pub rtmps_listen: Option<String>,
    #[serde(default, rename = "stream")]
    pub streams: Vec<StreamConfig>,
}

/// A `[[stream]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    pub name: String,
    pub source: String,
    /// Run the source only while someone watches.
    #[serde(default)]
    pub on_demand: bool,
    /// How long an on-demand source keeps running after its last viewer left (default 10 s).
    pub idle_timeout_secs: Option<f64>,
    /// Viewers this stream takes at once (default: no limit of its own).
    pub max_viewers: Option<u64>,
    /// `true` to record under the server's `record` folder, `false` not to, or a folder.
    pub record: Option<RecordSetting>,
    pub record_max_mb: Option<f64>,
    pub record_max_age_secs: Option<f64>,
    /// How ffmpeg hands this stream's frames over (default: the server's `ingest`).
    pub ingest: Option<IngestArg>,
    /// Who may watch it (default: the server's `read`).
    pub read: Option<AccessArg>,
    /// Who may publish to it (default: the server's `publish`).
    pub publish: Option<AccessArg>,
    /// With `source = "publish"`: a second publisher takes over from the first instead of
    /// being refused.
    #[serde(default)]
    pub takeover: bool,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<u32>,
    pub video_bitrate_kbps: Option<u32>,
    pub keyint_secs: Option<f64>,
    pub preset: Option<String>,
    pub audio: Option<bool>,
    pub audio_bitrate_kbps: Option<u32>,
    #[serde(default)]
    pub input_args: Vec<String>,
    /// A ladder, top rung first: `[{height = 720, video_bitrate_kbps = 1500}, ...]`.
    #[serde(default)]
    pub renditions: Vec<Rendition>,
}

/// A stream's `record`: on, off, or a folder of its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RecordSetting {
    On(bool),
    Folder(PathBuf),
}

/// The server-wide recording settings, from `--record` and the config file.
struct RecordDefaults {
    dir: Option<PathBuf>,
    max_mb: Option<f64>,
    max_age_secs: Option<f64>,
}

impl RecordDefaults {
    /// Where and how stream `name` records, if it does; the folder is made (and tried) now,
    /// so a path that cannot be written is a mistake at start, not a log line later.
    fn for_stream(
        &self,
        name: &str,
        setting: Option<&RecordSetting>,
        max_mb: Option<f64>,
        max_age_secs: Option<f64>,
    ) -> Result<Option<RecordConfig>, String> {
        let base = match setting {
            None | Some(RecordSetting::On(true)) => match (&self.dir, setting) {
                (Some(dir), _) => dir.clone(),
                (None, None) => return Ok(None),
                (None, Some(_)) => {
                    return Err(format!(
                        "stream {name}: record = true needs --record DIR (or record = \"DIR\" at the top of the config)"
                    ));
                }
            },
            Some(RecordSetting::On(false)) => return Ok(None),
            Some(RecordSetting::Folder(dir)) => dir.clone(),
        };
        let max_mb = max_mb.or(self.max_mb);
        let max_age_secs = max_age_secs.or(self.max_age_secs);
        if let Some(mb) = max_mb
            && !(mb > 0.0 && mb.is_finite())
        {
            return Err(format!("stream {name}: record_max_mb {mb} must be above 0"));
        }
        if let Some(secs) = max_age_secs
            && !(secs > 0.0 && secs.is_finite())
        {
            return Err(format!(
                "stream {name}: record_max_age_secs {secs} must be above 0"
            ));
        }
        let dir = base.join(name);
        let probe = dir.join(".write-test");
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&probe, b""))
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| format!("cannot record stream {name} to {}: {e}", dir.display()))?;
        Ok(Some(RecordConfig {
            dir,
            max_bytes: max_mb.map(|mb| (mb * 1_000_000.0) as u64),
            max_age: max_age_secs.map(Duration::from_secs_f64),
        }))
    }
}

impl StreamConfig {
    fn encoder(&self, ingest: Ingest) -> EncoderOptions {
        let d = EncoderOptions::default();
        EncoderOptions {
            ingest: self.ingest.map_or(ingest, Ingest::from),
            width: self.width,
            height: self.height,
            fps: self.fps.unwrap_or(d.fps),
            video_bitrate_kbps: self.video_bitrate_kbps.unwrap_or(d.video_bitrate_kbps),
            keyint_secs: self.keyint_secs.unwrap_or(d.keyint_secs),
            preset: self.preset.clone().unwrap_or(d.preset),
            audio: self.audio.unwrap_or(d.audio),
            audio_bitrate_kbps: self.audio_bitrate_kbps.unwrap_or(d.audio_bitrate_kbps),
            input_args: self.input_args.clone(),
            renditions: self.renditions.clone(),
        }
    }
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_IDLE_TIMEOUT_SECS: f64 = 10.0;
pub const DEFAULT_MAX_VIEWERS: u64 = 10_000;

/// Stream names appear in URLs and file names: keep them plain.
fn check_name(name: &str) -> Result<(), String> {
    if crate::stream::valid_name(name) {
        Ok(())
    } else {
        Err(format!(
            "invalid stream name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.'"
        ))
    }
}

fn parse_source(name: &str, source: &str) -> Result<SourceSpec, String> {
    source.parse().map_err(|e| format!("stream {name}: {e}"))
}

/// Resolves the command line and config file into what `serve` needs. `ffmpeg_found` says
/// whether ffmpeg can run (passed in so tests need not depend on the machine).
pub fn resolve_serve(args: &ServeArgs, ffmpeg_found: bool) -> Result<ServeSettings, String> {
    let file = match &args.config {
        Some(path) => load_config(path)?,
        None => FileConfig::default(),
    };
    let recording = RecordDefaults {
        dir: args.record.clone().or(file.record.clone()),
        max_mb: file.record_max_mb,
        max_age_secs: file.record_max_age_secs,
    };
    let listen_text = args
        .listen
        .clone()
        .or(file.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.into());
    let listen: SocketAddr = listen_text.parse().map_err(|_| {
        format!("invalid --listen address {listen_text:?} (expected IP:PORT, e.g. 0.0.0.0:8080)")
    })?;
    let segment_secs = args
        .segment_duration
        .or(file.segment_duration)
        .unwrap_or(2.0);
    if !(0.5..=30.0).contains(&segment_secs) {
        return Err(format!(
            "--segment-duration {segment_secs} is out of range (0.5 to 30 seconds)"
        ));
    }
    let window = args.window.or(file.window).unwrap_or(6);
    if !(2..=1000).contains(&window) {
        return Err(format!(
            "--window {window} is out of range (2 to 1000 segments)"
        ));
    }
    let ingest = args
        .ingest
        .or(file.ingest)
        .map(Ingest::from)
        .unwrap_or_default();
    let default_encoder = EncoderOptions {
        ingest,
        renditions: match &args.renditions {
            Some(text) => crate::source::ffmpeg::parse_renditions(text)?,
            None => Vec::new(),
        },
        ..EncoderOptions::default()
    };

    let upstream_ca = args.upstream_ca.clone().or(file.upstream_ca.clone());
    if let Some(path) = &upstream_ca {
        std::fs::File::open(path)
            .map_err(|e| format!("cannot read --upstream-ca {}: {e}", path.display()))?;
    }
    let default_read = args.read.or(file.read).map_or(Access::Public, Access::from);
    let default_publish = match file.publish {
        Some(PublishArg::Public) => Access::Public,
        Some(PublishArg::Token | PublishArg::Any) | None => Access::Token,
    };
    let mut streams = Vec::new();
    for entry in &args.streams {
        let (name, source) = entry
            .split_once('=')
            .ok_or_else(|| format!("--stream {entry:?} must be NAME=SOURCE"))?;
        check_name(name)?;
        streams.push(StreamDef {
            name: name.to_string(),
            source: parse_source(name, source)?,
            encoder: default_encoder.clone(),
            on_demand: None,
            max_viewers: None,
            record: recording.for_stream(name, None, None, None)?,
            upstream_ca: upstream_ca.clone(),
            read: default_read,
            publish: default_publish,
            takeover: false,
        });
    }
    for table in &file.streams {
        check_name(&table.name)?;
        let idle = table.idle_timeout_secs.unwrap_or(DEFAULT_IDLE_TIMEOUT_SECS);
        if !(0.0..=86_400.0).contains(&idle) {
            return Err(format!(
                "stream {}: idle_timeout_secs {idle} is out of range (0 to 86400)",
                table.name
            ));
        }
        if table.on_demand && table.source.trim() == "publish" {
            return Err(format!(
                "stream {}: on_demand does not apply to source = \"publish\" (it runs while its publisher does)",
                table.name
            ));
        }
        if table.takeover && table.source.trim() != "publish" {
            return Err(format!(
                "stream {}: takeover only applies to source = \"publish\"",
                table.name
            ));
        }
        if table.idle_timeout_secs.is_some() && !table.on_demand {
            return Err(format!(
                "stream {}: idle_timeout_secs only applies with on_demand = true",
                table.name
            ));
        }
        streams.push(StreamDef {
            name: table.name.clone(),
            source: parse_source(&table.name, &table.source)?,
            encoder: table.encoder(ingest),
            on_demand: table.on_demand.then(|| Duration::from_secs_f64(idle)),
            max_viewers: table.max_viewers,
            record: recording.for_stream(
                &table.name,
                table.record.as_ref(),
                table.record_max_mb,
                table.record_max_age_secs,
            )?,
            upstream_ca: upstream_ca.clone(),
            read: table.read.map_or(default_read, Access::from),
            publish: table.publish.map_or(default_publish, Access::from),
            takeover: table.takeover,
        });
    }
    if streams.is_empty() {
        let source = if ffmpeg_found {
            SourceSpec::TestSrc
        } else {
            tracing::warn!(
                "{}; serving the bundled sample clip as stream 'live' instead",
                ffmpeg::FFMPEG_MISSING
            );
            SourceSpec::Sample
        };
        streams.push(StreamDef {
            name: "live".into(),
            source,
            encoder: default_encoder.clone(),
            on_demand: None,
            max_viewers: None,
            record: recording.for_stream("live", None, None, None)?,
            upstream_ca: None,
            read: default_read,
            publish: default_publish,
            takeover: false,
        });
    }
    for (i, stream) in streams.iter().enumerate() {
        if streams[..i].iter().any(|s| s.name == stream.name) {
            return Err(format!("stream name {} is given twice", stream.name));
        }
        let renditions = &stream.encoder.renditions;
        if !renditions.is_empty() {
            crate::source::ffmpeg::check_renditions(renditions)
                .map_err(|e| format!("stream {}: {e}", stream.name))?;
            if !matches!(
                stream.source,
                SourceSpec::TestSrc
                    | SourceSpec::Webcam(_)
                    | SourceSpec::File(_)
                    | SourceSpec::Url(_)
                    | SourceSpec::Relay(_)
            ) {
                return Err(format!(
                    "stream {}: renditions need a source ffmpeg encodes (testsrc, webcam, a file, a URL) or a relay of a ladder, not {}",
                    stream.name, stream.source
                ));
            }
            if stream.encoder.ingest == Ingest::Fmp4 {
                return Err(format!(
                    "stream {}: renditions are encoded with the zero-wait ingest (ingest = \"auto\")",
                    stream.name
                ));
            }
        }
        // A file plays without ffmpeg when our reader takes it as it is.
        let needs_ffmpeg = match &stream.source {
            SourceSpec::File(path) => matches!(
                crate::source::file::route(path, &stream.encoder),
                crate::source::file::Route::Ffmpeg(_)
            ),
            other => other.needs_ffmpeg(),
        };
        if needs_ffmpeg && !ffmpeg_found {
            return Err(format!(
                "stream {}: {}",
                stream.name,
                ffmpeg::FFMPEG_MISSING
            ));
        }
    }
    if streams
        .iter()
        .filter(|s| s.source == SourceSpec::Stdin)
        .count()
        > 1
    {
        return Err("only one stream can read standard input".into());
    }
    let tls = tls(args, &file)?;
    let redirect_listen = match args.http_redirect.clone().or(file.http_redirect.clone()) {
        None => None,
        Some(_) if tls.is_none() => {
            return Err("--http-redirect sends browsers to https: it needs --tls-cert and --tls-key or --tls-self-signed".into());
        }
        Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
            format!("invalid --http-redirect address {text:?} (expected IP:PORT, e.g. 0.0.0.0:80)")
        })?),
    };
    let admin_listen = match args.admin_listen.clone().or(file.admin_listen.clone()) {
        None => None,
        Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
            format!(
                "invalid --admin-listen address {text:?} (expected IP:PORT, e.g. 127.0.0.1:9090)"
            )
        })?),
    };
    let address = |flag: &str, text: Option<String>| -> Result<Option<SocketAddr>, String> {
        text.map(|text| {
            text.parse::<SocketAddr>().map_err(|_| {
                format!("invalid --{flag} address {text:?} (expected IP:PORT, e.g. 0.0.0.0:1935)")
            })
        })
        .transpose()
    };
    let rtmp_listen = address(
        "rtmp-listen",
        args.rtmp_listen.clone().or(file.rtmp_listen.clone()),
    )?;
    let rtmps_listen = address(
        "rtmps-listen",
        args.rtmps_listen.clone().or(file.rtmps_listen.clone()),
    )?;
    if rtmps_listen.is_some() && tls.is_none() {
        return Err("--rtmps-listen needs --tls-cert and --tls-key or --tls-self-signed".into());
    }
    let acme_dir = args.acme_dir.clone().or(file.acme_dir.clone());
    if let Some(dir) = &acme_dir {
        if redirect_listen.is_none() {
            return Err(
                "--acme-dir is served on the --http-redirect listener: give that too".into(),
            );
        }
        if !dir.is_dir() {
            return Err(format!("--acme-dir {} is not a folder", dir.display()));
        }
    }
    let auth = auth(args, &file)?;
    if let Some(stream) = streams.iter().find(|s| s.read == Access::Token)
        && auth.keys.is_empty()
        && auth.admin_token.is_none()
    {
        return Err(format!(
            "stream {} needs tokens (read = \"token\"), but no key checks them: set jwt_secret, jwt_public_key or jwks",
            stream.name
        ));
    }
    if let Some(stream) = streams
        .iter()
        .find(|s| s.source == SourceSpec::Publish && s.publish == Access::Token)
        && auth.keys.is_empty()
        && auth.admin_token.is_none()
    {
        return Err(format!(
            "stream {} takes publishers with a token (publish = \"token\", the default), but no key checks them: set jwt_secret (or admin_token), or publish = \"public\" on a private network",
            stream.name
        ));
    }
    let on_the_fly = match file.publish {
        Some(PublishArg::Any) => {
            if auth.keys.is_empty() {
                return Err("publish = \"any\" lets the bearer of a publish token make streams: set jwt_secret, jwt_public_key or jwks".into());
            }
            Some(crate::stream::OnTheFly {
                read: default_read,
                max: file.max_published_streams.unwrap_or(64),
            })
        }
        _ => None,
    };
    Ok(ServeSettings {
        listen,
        streams,
        tls,
        auth,
        on_the_fly,
        admin_listen,
        rtmp_listen,
        rtmps_listen,
        redirect_listen,
        acme_dir,
        max_viewers: Some(file.max_viewers.unwrap_or(DEFAULT_MAX_VIEWERS)),
        limits: limits(&file)?,
        hub: HubConfig {
            segment_secs,
            window,
            ..HubConfig::default()
        },
    })
}

/// TLS from the command line or the config file: files that can be read now, or a
/// self-signed certificate in the state folder.
fn tls(args: &ServeArgs, file: &FileConfig) -> Result<Option<CertSource>, String> {
    let cert = args.tls_cert.clone().or(file.tls_cert.clone());
    let key = args.tls_key.clone().or(file.tls_key.clone());
    let self_signed = args.tls_self_signed || file.tls_self_signed;
    match (cert, key) {
        (Some(_), Some(_)) if self_signed => {
            Err("give either --tls-cert and --tls-key or --tls-self-signed, not both".into())
        }
        (Some(cert), Some(key)) => {
            for (what, path) in [("--tls-cert", &cert), ("--tls-key", &key)] {
                std::fs::File::open(path)
                    .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
            }
            Ok(Some(CertSource::Files { cert, key }))
        }
        (Some(_), None) => Err("--tls-cert needs --tls-key (the certificate's private key)".into()),
        (None, Some(_)) => Err("--tls-key needs --tls-cert (the certificate chain)".into()),
        (None, None) if self_signed => Ok(Some(CertSource::SelfSigned {
            dir: args
                .state_dir
                .clone()
                .or(file.state_dir.clone())
                .unwrap_or_else(crate::server::tls::default_state_dir),
            names: file.tls_names.clone(),
        })),
        (None, None) => Ok(None),
    }
}

/// A secret from the config, a file, or the environment; trailing whitespace (a file's
/// newline) is not part of it.
fn secret(
    inline: Option<&String>,
    file: Option<&PathBuf>,
    variable: &str,
    what: &str,
) -> Result<Option<String>, String> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the {what} file {}: {e}", path.display()))?;
        let text = text.trim_end().to_string();
        if text.is_empty() {
            return Err(format!("the {what} file {} is empty", path.display()));
        }
        return Ok(Some(text));
    }
    if let Some(text) = inline {
        return Ok(Some(text.clone()));
    }
    Ok(std::env::var(variable).ok().filter(|v| !v.is_empty()))
}

/// Token keys and the admin token, read and checked now.
fn auth(args: &ServeArgs, file: &FileConfig) -> Result<AuthSettings, String> {
    let mut keys = Vec::new();
    let jwt_secret = secret(
        file.jwt_secret.as_ref(),
        args.jwt_secret_file
            .as_ref()
            .or(file.jwt_secret_file.as_ref()),
        "WSLS_JWT_SECRET",
        "JWT secret",
    )?;
    if let Some(secret) = jwt_secret {
        if secret.len() < 32 {
            return Err("the JWT secret is shorter than 32 bytes: HS256 needs at least 256 bits (openssl rand -base64 32)".into());
        }
        keys.push(KeySource::Secret(secret.into_bytes()));
    }
    if let Some(path) = args
        .jwt_public_key
        .as_ref()
        .or(file.jwt_public_key.as_ref())
    {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read the JWT public key {}: {e}", path.display()))?;
        keys.push(KeySource::PublicKeyPem(pem));
    }
    if let Some(path) = args.jwks.as_ref().or(file.jwks.as_ref()) {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the JWKS {}: {e}", path.display()))?;
        keys.push(KeySource::Jwks(text));
    }
    let admin_token = secret(
        file.admin_token.as_ref(),
        args.admin_token_file
            .as_ref()
            .or(file.admin_token_file.as_ref()),
        "WSLS_ADMIN_TOKEN",
        "admin token",
    )?;
    if admin_token.as_ref().is_some_and(|t| t.len() < 16) {
        return Err("the admin token is shorter than 16 characters: use a long random one (openssl rand -hex 32)".into());
    }
    let settings = AuthSettings {
        keys,
        admin_token,
        issuer: file.token_issuer.clone(),
        audience: file.token_audience.clone(),
        leeway_secs: file.token_leeway_secs.unwrap_or(0),
    };
    // The keys are parsed here too, so a bad one is a mistake at start.
    Auth::new(&settings).map_err(|e| format!("tokens: {e}"))?;
    Ok(settings)
}

/// The limits at the door, from the config file, checked.
fn limits(file: &FileConfig) -> Result<Limits, String> {
    let defaults = Limits::default();
    let header_timeout = match file.header_timeout_secs {
        None => defaults.header_timeout,
        Some(secs) if secs > 0.0 && secs <= 3600.0 => Duration::from_secs_f64(secs),
        Some(secs) => {
            return Err(format!(
                "header_timeout_secs {secs} is out of range (above 0, at most 3600)"
            ));
        }
    };
    let max_header_bytes = file.max_header_bytes.unwrap_or(defaults.max_header_bytes);
    if max_header_bytes < MIN_HEADER_BYTES {
        return Err(format!(
            "max_header_bytes {max_header_bytes} is below the least of {MIN_HEADER_BYTES}"
        ));
    }
    if file.max_connections_per_address == Some(0) {
        return Err("max_connections_per_address 0 would refuse everyone".into());
    }
    if let Some(rate) = file.manifest_requests_per_sec
        && !(rate > 0.0 && rate.is_finite())
    {
        return Err(format!(
            "manifest_requests_per_sec {rate} must be above 0 (leave it out for no limit)"
        ));
    }
    Ok(Limits {
        header_timeout,
        max_header_bytes,
        max_connections_per_address: file.max_connections_per_address,
        manifest_requests_per_sec: file.manifest_requests_per_sec,
    })
}

fn load_config(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        let message = e.message().to_string();
        let line = e
            .span()
            .map(|span| 1 + text[..span.start.min(text.len())].matches('\n').count());
        match line {
            Some(line) => format!("config {} line {line}: {message}", path.display()),
            None => format!("config {}: {message}", path.display()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> ServeArgs {
        let mut all = vec!["websocketlivestream"];
        all.extend_from_slice(list);
        Cli::try_parse_from(all).expect("valid arguments").serve
    }

    #[test]
    fn no_arguments_serve_testsrc_on_8080() {
        let settings = resolve_serve(&args(&[]), true).expect("defaults");
        assert_eq!(settings.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.streams.len(), 1);
        assert_eq!(settings.streams[0].name, "live");
        assert_eq!(settings.streams[0].source, SourceSpec::TestSrc);
    }

    #[test]
    fn without_ffmpeg_the_default_falls_back_to_the_sample() {
        let settings = resolve_serve(&args(&[]), false).expect("fallback");
        assert_eq!(settings.streams[0].source, SourceSpec::Sample);
        let err =
            resolve_serve(&args(&["--stream", "cam=testsrc"]), false).expect_err("needs ffmpeg");
        assert!(err.contains("ffmpeg not found"), "{err}");
    }

    #[test]
    fn bad_arguments_are_one_clear_sentence() {
        for (list, expect) in [
            (vec!["--listen", "nowhere"], "invalid --listen address"),
            (vec!["--stream", "novalue"], "must be NAME=SOURCE"),
            (vec!["--stream", "a b=testsrc"], "invalid stream name"),
            (vec!["--stream", "x=/no/such.mp4"], "no such file"),
            (
                vec!["--stream", "x=testsrc", "--stream", "x=sample"],
                "given twice",
            ),
            (vec!["--segment-duration", "0.1"], "out of range"),
            (vec!["--window", "1"], "out of range"),
            (
                vec!["--stream", "a=stdin", "--stream", "b=stdin"],
                "one stream",
            ),
            (
                vec!["--tls-cert", "/no/such.pem", "--tls-key", "/no/such.key"],
                "cannot read --tls-cert /no/such.pem",
            ),
            (vec!["--http-redirect", "0.0.0.0:80"], "needs --tls-cert"),
            (
                vec!["--tls-self-signed", "--http-redirect", "nowhere"],
                "invalid --http-redirect",
            ),
            (
                vec!["--upstream-ca", "/no/ca.pem"],
                "cannot read --upstream-ca",
            ),
        ] {
            let err = resolve_serve(&args(&list), true).expect_err("must be refused");
            assert!(err.contains(expect), "{list:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn serve_is_the_default_subcommand() {
        let cli = Cli::try_parse_from(["websocketlivestream", "--listen", "127.0.0.1:0"])
            .expect("parses");
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.listen.as_deref(), Some("127.0.0.1:0"));
        let cli =
            Cli::try_parse_from(["websocketlivestream", "serve", "--window", "3"]).expect("parses");
        assert!(matches!(
            cli.command,
            Some(Command::Serve(args)) if args.window == Some(3)
        ));
    }

    #[test]
    fn the_config_file_sets_streams_and_encoder_options() {
        let dir = std::env::temp_dir().join(format!("wsls-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("config.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:0\"\nsegment_duration = 1.0\n\n[[stream]]\nname = \"small\"\nsource = \"testsrc\"\nwidth = 320\nheight = 180\nfps = 15\n",
        )
        .expect("write config");
        let settings = resolve_serve(&args(&["--config", path.to_str().expect("utf-8")]), true)
            .expect("config");
        assert_eq!(settings.hub.segment_secs, 1.0);
        assert_eq!(settings.streams[0].name, "small");
        assert_eq!(settings.streams[0].encoder.width, Some(320));
        assert_eq!(settings.streams[0].encoder.fps, 15);

        std::fs::write(
            &path,
            "[[stream]]\nname = \"x\"\nsource = \"testsrc\"\ncolour = 3\n",
        )
        .expect("write config");
        let err = resolve_serve(&args(&["--config", path.to_str().expect("utf-8")]), true)
            .expect_err("unknown key");
        assert!(err.contains("line 4") && err.contains("colour"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
