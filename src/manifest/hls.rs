//! HLS playlists (RFC 8216 and its second edition's low-latency extensions): a multivariant
//! playlist naming the renditions, and a media playlist whose segments are the DASH
//! segments, byte for byte, with parts made of whole fragments. The same media playlist
//! describes a recording: growing while it is made, finished with `EXT-X-ENDLIST`.

use std::fmt::Write as _;

use super::xs_datetime;

/// PART-HOLD-BACK, in part targets.
pub const PART_HOLD_BACK_PARTS: f64 = 2.0;

/// The multivariant playlist: a variant per rendition (each with its codecs, size and
/// bandwidth), and the audio renditions they share as a group (`EXT-X-MEDIA`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Multivariant {
    pub variants: Vec<Variant>,
    /// Audio in playlists of its own, named by the variants' `audio_group`.
    pub audio: Vec<AudioRendition>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// Peak bits per second of everything a player fetches for it (its audio group's too).
    pub bandwidth: u64,
    /// Every codec a player needs for it, its audio group's included.
    pub codecs: String,
    pub resolution: Option<(u16, u16)>,
    pub frame_rate: Option<f64>,
    pub uri: String,
    pub audio_group: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AudioRendition {
    pub group_id: String,
    pub name: String,
    pub uri: String,
    pub channels: Option<u16>,
    pub default: bool,
}

pub fn multivariant(m: &Multivariant) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for audio in &m.audio {
        let yes_no = |b: bool| if b { "YES" } else { "NO" };
        let _ = write!(
            out,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"{}\",NAME=\"{}\",DEFAULT={},AUTOSELECT=YES",
            audio.group_id,
            audio.name,
            yes_no(audio.default)
        );
        if let Some(channels) = audio.channels {
            let _ = write!(out, ",CHANNELS=\"{channels}\"");
        }
        let _ = writeln!(out, ",URI=\"{}\"", audio.uri);
    }
    for v in &m.variants {
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={},CODECS=\"{}\"",
            v.bandwidth.max(1),
            v.codecs
        );
        if let Some((w, h)) = v.resolution {
            let _ = write!(out, ",RESOLUTION={w}x{h}");
        }
        if let Some(fps) = v.frame_rate {
            let _ = write!(out, ",FRAME-RATE={fps:.3}");
        }
        if let Some(group) = &v.audio_group {
            let _ = write!(out, ",AUDIO=\"{group}\"");
        }
        let _ = writeln!(out, "\n{}", v.uri);
    }
    out
}

/// A range of a file's bytes (`EXT-X-BYTERANGE`, `EXT-X-MAP`'s `BYTERANGE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub offset: u64,
    pub len: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub uri: String,
    pub duration_secs: f64,
    pub independent: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub uri: String,
    pub duration_secs: f64,
    /// Wall clock of the first sample (Unix ms), from the encoder's `prft` where it wrote one.
    pub program_date_time_ms: Option<u64>,
    /// Listed for the newest segments only, as low-latency clients need.
    pub parts: Vec<Part>,
    /// The source restarted with a different init before this segment.
    pub discontinuity: bool,
    /// A new init segment from this segment on (`EXT-X-MAP` again, after the discontinuity).
    pub map_uri: Option<String>,
    /// The segment is this range of `uri` (an on-demand file holding them all).
    pub byte_range: Option<ByteRange>,
}

/// What a media playlist is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaylistKind {
    /// The live window: parts, blocking reload, preload hints.
    Live,
    /// A recording being made: segments are only ever added (`EXT-X-PLAYLIST-TYPE:EVENT`),
    /// unless old ones are rotated away, which an EVENT playlist may not do.
    Recording { rotating: bool },
    /// A finished recording or a packaged file: `EXT-X-ENDLIST`.
    Finished,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MediaPlaylist {
    pub target_duration_secs: u64,
    pub part_target_secs: f64,
    pub media_sequence: u64,
    pub discontinuity_sequence: u64,
    pub map_uri: String,
    /// The init is this range of `map_uri`.
    pub map_byte_range: Option<ByteRange>,
    pub segments: Vec<Segment>,
    /// Parts of the segment being built, after the last complete one.
    pub open_parts: Vec<Part>,
    /// Wall clock of the open segment's start, when it has parts but no complete segment
    /// before it carries one.
    pub open_program_date_time_ms: Option<u64>,
    /// The part that will come next, for `EXT-X-PRELOAD-HINT`.
    pub preload_hint_uri: Option<String>,
    pub kind: PlaylistKind,
}

fn write_part(out: &mut String, part: &Part) {
    let _ = write!(
        out,
        "#EXT-X-PART:DURATION={:.5},URI=\"{}\"",
        part.duration_secs, part.uri
    );
    if part.independent {
        out.push_str(",INDEPENDENT=YES");
    }
    out.push('\n');
}

pub fn media(p: &MediaPlaylist) -> String {
    let mut out = String::with_capacity(4096);
    out.push_str("#EXTM3U\n#EXT-X-VERSION:9\n");
    let _ = writeln!(
        out,
        "#EXT-X-TARGETDURATION:{}",
        p.target_duration_secs.max(1)
    );
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", p.media_sequence);
    if p.discontinuity_sequence > 0 {
        let _ = writeln!(
            out,
            "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
            p.discontinuity_sequence
        );
    }
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    let low_latency = p.kind == PlaylistKind::Live && p.part_target_secs > 0.0;
    if low_latency {
        // RFC 8216bis §4.4.3.8: PART-HOLD-BACK must be at least twice the part target (three
        // times is advised for parts that arrive unevenly; ours leave a fragment at a time,
        // as each frame is encoded, so two keep players closer to the live edge).
        let _ = writeln!(
            out,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}",
            p.part_target_secs * PART_HOLD_BACK_PARTS
        );
        // Rounded up: no part may be longer than PART-TARGET.
        let part_target = (p.part_target_secs * 100_000.0).ceil() / 100_000.0;
        let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={part_target:.5}");
    }
    match p.kind {
        PlaylistKind::Recording { rotating: false } => {
            out.push_str("#EXT-X-PLAYLIST-TYPE:EVENT\n");
        }
        PlaylistKind::Finished => out.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n"),
        _ => {}
    }
    match p.map_byte_range {
        Some(r) => {
            let _ = writeln!(
                out,
                "#EXT-X-MAP:URI=\"{}\",BYTERANGE=\"{}@{}\"",
                p.map_uri, r.len, r.offset
            );
        }
        None => {
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", p.map_uri);
        }
    }
    for segment in &p.segments {
        if segment.discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if let Some(uri) = &segment.map_uri {
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{uri}\"");
        }
        if let Some(ms) = segment.program_date_time_ms {
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", xs_datetime(ms));
        }
        if low_latency {
            for part in &segment.parts {
                write_part(&mut out, part);
            }
        }
        let _ = writeln!(out, "#EXTINF:{:.5},", segment.duration_secs);
        if let Some(r) = segment.byte_range {
            let _ = writeln!(out, "#EXT-X-BYTERANGE:{}@{}", r.len, r.offset);
        }
        let _ = writeln!(out, "{}", segment.uri);
    }
    if low_latency {
        if let Some(ms) = p.open_program_date_time_ms
            && !p.open_parts.is_empty()
        {
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", xs_datetime(ms));
        }
        for part in &p.open_parts {
            write_part(&mut out, part);
        }
        if let Some(uri) = &p.preload_hint_uri {
            let _ = writeln!(out, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{uri}\"");
        }
    }
    if p.kind == PlaylistKind::Finished {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}
