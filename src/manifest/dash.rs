//! The DASH MPD (ISO/IEC 23009-1), shaped by the DASH-IF live guidelines (IOP part 5): a
//! `dynamic` MPD with `SegmentTemplate`, `SegmentTimeline` and `$Number$`, one media component
//! per Representation, and a `UTCTiming` so players need no time server on the internet.
//! Low-latency signalling follows DASH-IF "Low-latency Modes for DASH": the segment being
//! built may be fetched while it grows (`availabilityTimeOffset`, `availabilityTimeComplete`),
//! and a `ServiceDescription` names the latency to aim at.
//!
//! ```text
//! MPD (type, availabilityStartTime, publishTime, minimumUpdatePeriod, timeShiftBufferDepth…)
//! ├── ServiceDescription > Latency, PlaybackRate     low latency only
//! ├── Period*                                         one per init (a recording may change)
//! │   └── AdaptationSet*   one per track
//! │       └── Representation
//! │           └── SegmentTemplate (timescale, initialization, media, startNumber, …)
//! │               └── SegmentTimeline > S*
//! └── UTCTiming*
//! ```

use std::fmt::Write as _;

use super::{iso8601_duration, xs_datetime};

/// A whole manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Mpd {
    /// `dynamic` while live; `static` for a finished recording or `package` output.
    pub dynamic: bool,
    /// Wall clock (Unix ms) of media time 0.
    pub availability_start_ms: u64,
    pub publish_time_ms: u64,
    pub minimum_update_period_secs: f64,
    pub time_shift_buffer_depth_secs: f64,
    pub suggested_presentation_delay_secs: f64,
    pub min_buffer_time_secs: f64,
    pub max_segment_duration_secs: f64,
    /// The whole length, for a static MPD.
    pub media_presentation_duration_secs: Option<f64>,
    /// URLs answering with the server's time as `xs:dateTime` (`http-xsdate` scheme).
    pub utc_timing_urls: Vec<String>,
    /// Set when the newest segment is served as it grows.
    pub low_latency: Option<LowLatency>,
    pub periods: Vec<Period>,
}

/// What a low-latency client needs to know (DASH-IF low-latency guidelines, §9.X.4).
#[derive(Debug, Clone, PartialEq)]
pub struct LowLatency {
    /// How long before its end a segment may be requested: its duration less its first chunk.
    pub availability_time_offset_secs: f64,
    /// The latency to keep, and the bounds of it, in milliseconds.
    pub target_latency_ms: u64,
    pub min_latency_ms: u64,
    pub max_latency_ms: u64,
    /// The playback rates a client may use to stay at the target.
    pub min_playback_rate: f64,
    pub max_playback_rate: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    pub id: String,
    /// Start on the presentation timeline.
    pub start_secs: f64,
    pub adaptation_sets: Vec<AdaptationSet>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdaptationSet {
    pub id: u32,
    /// `video` or `audio`.
    pub content_type: &'static str,
    pub mime_type: &'static str,
    pub representation: Representation,
    /// Further Representations of the same content (a ladder's lower rungs), after it.
    pub alternatives: Vec<Representation>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Representation {
    pub id: String,
    pub codecs: String,
    pub bandwidth: u64,
    pub width: u16,
    pub height: u16,
    /// As DASH writes it: `30` or `30000/1001`.
    pub frame_rate: Option<String>,
    pub audio_sampling_rate: u32,
    pub audio_channels: u16,
    pub timescale: u32,
    /// Template of the init segment URL, relative to the MPD.
    pub initialization: String,
    /// Template of media segment URLs, with `$Number$`.
    pub media: String,
    pub start_number: u64,
    /// Media time (in `timescale`) at the Period's start; a recording that rotated its oldest
    /// segments away, or a later Period, does not start at zero.
    pub presentation_time_offset: u64,
    /// `(start, duration)` of each segment, in `timescale`.
    pub timeline: Vec<(u64, u64)>,
}

/// XML-escapes an attribute value.
fn attr(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Writes the `S` elements, folding runs of contiguous, equal durations into `r`.
fn write_timeline(out: &mut String, timeline: &[(u64, u64)]) {
    let mut i = 0;
    let mut expected_start = None;
    while let Some(&(start, duration)) = timeline.get(i) {
        let mut repeat = 0;
        while let Some(&(next_start, next_duration)) = timeline.get(i + repeat + 1) {
            let contiguous = next_start == start + duration * (repeat as u64 + 1);
            if next_duration != duration || !contiguous {
                break;
            }
            repeat += 1;
        }
        // `t` is needed on the first S and after any gap.
        let _ = if expected_start == Some(start) {
            write!(out, "            <S d=\"{duration}\"")
        } else {
            write!(out, "            <S t=\"{start}\" d=\"{duration}\"")
        };
        if repeat > 0 {
            let _ = write!(out, " r=\"{repeat}\"");
        }
        out.push_str("/>\n");
        expected_start = Some(start + duration * (repeat as u64 + 1));
        i += repeat + 1;
    }
}

/// The DASH-IF low-latency profile, beside the live one.
const LOW_LATENCY_PROFILE: &str = "http://www.dashif.org/guidelines/low-latency-live-v5";

pub fn render(mpd: &Mpd) -> String {
    let mut out = String::with_capacity(2048);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str("<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\"");
    out.push_str(" profiles=\"urn:mpeg:dash:profile:isoff-live:2011");
    if mpd.low_latency.is_some() {
        let _ = write!(out, ",{LOW_LATENCY_PROFILE}");
    }
    out.push('"');
    if mpd.dynamic {
        let _ = write!(
            out,
            " type=\"dynamic\" availabilityStartTime=\"{}\" publishTime=\"{}\" minimumUpdatePeriod=\"{}\" timeShiftBufferDepth=\"{}\" suggestedPresentationDelay=\"{}\"",
            xs_datetime(mpd.availability_start_ms),
            xs_datetime(mpd.publish_time_ms),
            iso8601_duration(mpd.minimum_update_period_secs),
            iso8601_duration(mpd.time_shift_buffer_depth_secs),
            iso8601_duration(mpd.suggested_presentation_delay_secs),
        );
    } else {
        out.push_str(" type=\"static\"");
        if let Some(duration) = mpd.media_presentation_duration_secs {
            let _ = write!(
                out,
                " mediaPresentationDuration=\"{}\"",
                iso8601_duration(duration)
            );
        }
    }
    let _ = writeln!(
        out,
        " minBufferTime=\"{}\" maxSegmentDuration=\"{}\">",
        iso8601_duration(mpd.min_buffer_time_secs),
        iso8601_duration(mpd.max_segment_duration_secs)
    );
    if let Some(ll) = &mpd.low_latency {
        out.push_str("  <ServiceDescription id=\"0\">\n");
        let _ = writeln!(
            out,
            "    <Latency target=\"{}\" min=\"{}\" max=\"{}\" referenceId=\"0\"/>",
            ll.target_latency_ms, ll.min_latency_ms, ll.max_latency_ms
        );
        let _ = writeln!(
            out,
            "    <PlaybackRate min=\"{}\" max=\"{}\"/>",
            ll.min_playback_rate, ll.max_playback_rate
        );
        out.push_str("  </ServiceDescription>\n");
    }
    for period in &mpd.periods {
        write_period(&mut out, period, mpd.low_latency.as_ref());
    }
    for url in &mpd.utc_timing_urls {
        let _ = writeln!(
            out,
            "  <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-xsdate:2014\" value=\"{}\"/>",
            attr(url)
        );
    }
    out.push_str("</MPD>\n");
    out
}

/// `<Representation …>` with the attributes both profiles give it, and its audio channels.
fn write_representation_start(out: &mut String, r: &Representation) {
    let _ = write!(
        out,
        "      <Representation id=\"{}\" codecs=\"{}\" bandwidth=\"{}\"",
        attr(&r.id),
        attr(&r.codecs),
        r.bandwidth
    );
    if r.width > 0 && r.height > 0 {
        let _ = write!(out, " width=\"{}\" height=\"{}\"", r.width, r.height);
    }
    if let Some(rate) = &r.frame_rate {
        let _ = write!(out, " frameRate=\"{}\"", attr(rate));
    }
    if r.audio_sampling_rate > 0 {
        let _ = write!(out, " audioSamplingRate=\"{}\"", r.audio_sampling_rate);
    }
    out.push_str(">\n");
    if r.audio_channels > 0 {
        let _ = writeln!(
            out,
            "        <AudioChannelConfiguration schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" value=\"{}\"/>",
            r.audio_channels
        );
    }
}

fn write_period(out: &mut String, period: &Period, low_latency: Option<&LowLatency>) {
    let _ = writeln!(
        out,
        "  <Period id=\"{}\" start=\"{}\">",
        attr(&period.id),
        iso8601_duration(period.start_secs)
    );
    for set in &period.adaptation_sets {
        let _ = writeln!(
            out,
            "    <AdaptationSet id=\"{}\" contentType=\"{}\" mimeType=\"{}\" segmentAlignment=\"true\" startWithSAP=\"1\">",
            set.id, set.content_type, set.mime_type
        );
        for r in std::iter::once(&set.representation).chain(&set.alternatives) {
            write_representation_start(out, r);
            let _ = write!(
                out,
                "        <SegmentTemplate timescale=\"{}\" initialization=\"{}\" media=\"{}\" startNumber=\"{}\"",
                r.timescale,
                attr(&r.initialization),
                attr(&r.media),
                r.start_number
            );
            if r.presentation_time_offset > 0 {
                let _ = write!(
                    out,
                    " presentationTimeOffset=\"{}\"",
                    r.presentation_time_offset
                );
            }
            if let Some(ll) = low_latency {
                let _ = write!(
                    out,
                    " availabilityTimeOffset=\"{:.3}\" availabilityTimeComplete=\"false\"",
                    ll.availability_time_offset_secs
                );
            }
            out.push_str(">\n");
            out.push_str("          <SegmentTimeline>\n");
            write_timeline(out, &r.timeline);
            out.push_str("          </SegmentTimeline>\n");
            out.push_str("        </SegmentTemplate>\n");
            out.push_str("      </Representation>\n");
        }
        out.push_str("    </AdaptationSet>\n");
    }
    out.push_str("  </Period>\n");
}

/// Where an on-demand Representation's one file is, and where in it the init and the index
/// (`sidx`) are: inclusive byte ranges, as `SegmentBase` wants them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentBase {
    pub base_url: String,
    pub initialization: (u64, u64),
    pub index: (u64, u64),
}

/// The on-demand profile (ISO/IEC 23009-1 §8.3): a static MPD whose Representations are one
/// file each, found by `BaseURL`, indexed by its `sidx`. `mpd` gives the tracks, rates and
/// duration (its segment templates are not used); `base` says where each Representation is.
pub fn render_on_demand(mpd: &Mpd, base: &dyn Fn(&str) -> Option<SegmentBase>) -> String {
    let mut out = String::with_capacity(2048);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str("<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\"");
    out.push_str(" profiles=\"urn:mpeg:dash:profile:isoff-on-demand:2011\" type=\"static\"");
    if let Some(duration) = mpd.media_presentation_duration_secs {
        let _ = write!(
            out,
            " mediaPresentationDuration=\"{}\"",
            iso8601_duration(duration)
        );
    }
    let _ = writeln!(
        out,
        " minBufferTime=\"{}\">",
        iso8601_duration(mpd.min_buffer_time_secs)
    );
    for period in &mpd.periods {
        let _ = writeln!(out, "  <Period id=\"{}\" start=\"PT0S\">", attr(&period.id));
        for set in &period.adaptation_sets {
            let r = &set.representation;
            let Some(file) = base(&r.id) else {
                continue;
            };
            let _ = writeln!(
                out,
                "    <AdaptationSet id=\"{}\" contentType=\"{}\" mimeType=\"{}\" subsegmentAlignment=\"true\" subsegmentStartsWithSAP=\"1\">",
                set.id, set.content_type, set.mime_type
            );
            write_representation_start(&mut out, r);
            let _ = writeln!(out, "        <BaseURL>{}</BaseURL>", attr(&file.base_url));
            let _ = writeln!(
                out,
                "        <SegmentBase indexRange=\"{}-{}\" timescale=\"{}\">",
                file.index.0, file.index.1, r.timescale
            );
            let _ = writeln!(
                out,
                "          <Initialization range=\"{}-{}\"/>",
                file.initialization.0, file.initialization.1
            );
            out.push_str("        </SegmentBase>\n");
            out.push_str("      </Representation>\n");
            out.push_str("    </AdaptationSet>\n");
        }
        out.push_str("  </Period>\n");
    }
    out.push_str("</MPD>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_folds_repeats_and_marks_gaps() {
        let mut out = String::new();
        write_timeline(
            &mut out,
            &[(0, 10), (10, 10), (20, 10), (30, 7), (50, 10), (60, 10)],
        );
        assert_eq!(
            out,
            "            <S t=\"0\" d=\"10\" r=\"2\"/>\n            <S d=\"7\"/>\n            <S t=\"50\" d=\"10\" r=\"1\"/>\n"
        );
    }
}
