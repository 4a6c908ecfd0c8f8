//! Video files (mp4, mkv, avi, webm, … whatever the system's FFmpeg decodes) through ffmpeg-next,
//! decoded on the source's own thread. Live viewing paces frames at the file's own rate; batch
//! runs read them as fast as the pipeline takes them. `looped` restarts at the end (the demo).
//! Frames are turned as the stream's display matrix says (phones' portrait videos), follow
//! changes of frame size or pixel format, and damaged data loses only the frames it held.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg::util::frame::video::Video as VideoFrame;
use ffmpeg_next as ffmpeg;
use image::RgbImage;

use super::threaded::Producer;
use super::{CaptureError, SourceFrame, VideoOptions};

/// One opened file: demuxer, decoder and the converter to RGB.
struct Opened {
    input: ffmpeg::format::context::Input,
    stream_index: usize,
    time_base: f64,
    decoder: ffmpeg::decoder::Video,
    scaler: scaling::Context,
    /// How the stream says its frames are to be turned for display (phones record portrait
    /// video sideways and say so).
    turn: Turn,
    eof_sent: bool,
    /// Packets the decoder rejected in this pass (skipped).
    damaged: usize,
}

/// A turn of the decoded picture to show it upright, from the stream's display matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    None,
    Clockwise90,
    Half,
    Clockwise270,
}

impl Turn {
    /// From the counter-clockwise angle FFmpeg reads out of a display matrix (`NaN` when the
    /// matrix is singular), to the nearest quarter; what the `ffmpeg` tool's autorotate does.
    fn from_counterclockwise_degrees(degrees: f64) -> Turn {
        if !degrees.is_finite() {
            return Turn::None;
        }
        // The display matrix turns counter-clockwise by `degrees`: undo it clockwise.
        match ((-degrees / 90.0).round() as i64).rem_euclid(4) {
            1 => Turn::Clockwise90,
            2 => Turn::Half,
            3 => Turn::Clockwise270,
            _ => Turn::None,
        }
    }

    /// The stream's turn: its display matrix if it has one.
    fn of_stream(stream: &ffmpeg::format::stream::Stream) -> Turn {
        use ffmpeg::codec::packet::side_data::Type;
        stream
            .side_data()
            .find(|d| d.kind() == Type::DisplayMatrix && d.data().len() >= 9 * 4)
            .map(|d| {
                let matrix: Vec<i32> = d
                    .data()
                    .chunks_exact(4)
                    .take(9)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                // SAFETY: `matrix` holds the nine 32-bit values the function reads.
                let degrees = unsafe { ffmpeg::ffi::av_display_rotation_get(matrix.as_ptr()) };
                Turn::from_counterclockwise_degrees(degrees)
            })
            .unwrap_or(Turn::None)
    }

    fn apply(self, rgb: RgbImage) -> RgbImage {
        match self {
            Turn::None => rgb,
            Turn::Clockwise90 => image::imageops::rotate90(&rgb),
            Turn::Half => image::imageops::rotate180(&rgb),
            Turn::Clockwise270 => image::imageops::rotate270(&rgb),
        }
    }

    fn swaps_sides(self) -> bool {
        matches!(self, Turn::Clockwise90 | Turn::Clockwise270)
    }
}

pub struct VideoProducer {
    path: PathBuf,
    options: VideoOptions,
    opened: Opened,
    frames_per_s: f64,
    /// Time of the first frame of the current pass, for pacing.
    /// When the current pass started (wall clock) and its first frame's time.
    pass_started: Option<(Instant, f64)>,
    /// Seconds added to timestamps after each loop.
    loop_offset_s: f64,
    last_time_s: f64,
    width: u32,
    height: u32,
    /// The first frame, decoded when opening to prove the file plays.
    pending: Option<(RgbImage, f64)>,
}

fn video_err(path: &Path, reason: impl std::fmt::Display) -> CaptureError {
    CaptureError::Video {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn open_file(path: &Path) -> Result<(Opened, f64), CaptureError> {
    ffmpeg::init().map_err(|e| video_err(path, e))?;
    // FFmpeg's own log lines would repeat what the error we return says.
    ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
    if !path.is_file() {
        return Err(video_err(path, "no such file"));
    }
    let input = ffmpeg::format::input(path).map_err(|e| video_err(path, e))?;
    let stream = input
        .streams()
        .best(ffmpeg::media::Type::Video)
        .ok_or_else(|| video_err(path, "no video stream in this file"))?;
    let stream_index = stream.index();
    let turn = Turn::of_stream(&stream);
    let tb = stream.time_base();
    let time_base = if tb.denominator() != 0 {
        tb.numerator() as f64 / tb.denominator() as f64
    } else {
        0.0
    };
    let rate = stream.avg_frame_rate();
    let frames_per_s = if rate.denominator() != 0 && rate.numerator() > 0 {
        rate.numerator() as f64 / rate.denominator() as f64
    } else {
        30.0
    };
    let decoder = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
        .and_then(|c| c.decoder().video())
        .map_err(|e| video_err(path, format!("no decoder: {e}")))?;
    if decoder.width() == 0 || decoder.height() == 0 {
        return Err(video_err(path, "the video stream has no frame size"));
    }
    let scaler = rgb_converter(decoder.format(), decoder.width(), decoder.height())
        .map_err(|e| video_err(path, e))?;
    Ok((
        Opened {
            input,
            stream_index,
            time_base,
            decoder,
            scaler,
            turn,
            eof_sent: false,
            damaged: 0,
        },
        frames_per_s,
    ))
}

impl VideoProducer {
    pub fn open(path: &Path, options: VideoOptions) -> Result<VideoProducer, CaptureError> {
        let (opened, frames_per_s) = open_file(path)?;
        let (mut width, mut height) = (opened.decoder.width(), opened.decoder.height());
        if opened.turn.swaps_sides() {
            std::mem::swap(&mut width, &mut height);
        }
        let mut producer = VideoProducer {
            path: path.to_path_buf(),
            options,
            opened,
            frames_per_s,
            pass_started: None,
            loop_offset_s: 0.0,
            last_time_s: 0.0,
            width,
            height,
            pending: None,
        };
        producer.pending = Some(
            producer
                .decode_next()?
                .ok_or_else(|| video_err(path, "no frame could be decoded"))?,
        );
        Ok(producer)
    }

    /// The next decoded frame of this pass, `None` at the end of the file.
    fn decode_next(&mut self) -> Result<Option<(RgbImage, f64)>, CaptureError> {
        let o = &mut self.opened;
        let mut decoded = VideoFrame::empty();
        loop {
            if o.decoder.receive_frame(&mut decoded).is_ok() {
                // A stream may change its frame size or pixel format on the way (a browser's
                // webcam recording, joined clips): the converter follows it.
                let expected = o.scaler.input();
                if (decoded.format(), decoded.width(), decoded.height())
                    != (expected.format, expected.width, expected.height)
                {
                    o.scaler = rgb_converter(decoded.format(), decoded.width(), decoded.height())
                        .map_err(|e| video_err(&self.path, e))?;
                }
                let mut rgb = VideoFrame::empty();
                o.scaler
                    .run(&decoded, &mut rgb)
                    .map_err(|e| video_err(&self.path, e))?;
                let time_s = decoded
                    .timestamp()
                    .or(decoded.pts())
                    .map(|t| t as f64 * o.time_base)
                    .unwrap_or(self.last_time_s + 1.0 / self.frames_per_s);
                return Ok(Some((o.turn.apply(rgb_from_frame(&rgb)), time_s)));
            }
            if o.eof_sent {
                return Ok(None);
            }
            // Feed the decoder the next packet of our stream, or the end of the stream.
            let mut fed = false;
            for (stream, packet) in o.input.packets() {
                if stream.index() == o.stream_index {
                    // Damaged data (a bad sector, a cut download) loses the frames it held, not
                    // the rest of the video.
                    if let Err(e) = o.decoder.send_packet(&packet) {
                        o.damaged += 1;
                        if o.damaged == 1 {
                            tracing::warn!(path = %self.path.display(), error = %e,
                                "damaged video data skipped; the frames after it play on");
                        }
                    }
                    fed = true;
                    break;
                }
            }
            if !fed {
                o.decoder.send_eof().map_err(|e| video_err(&self.path, e))?;
                o.eof_sent = true;
                if o.damaged > 0 {
                    tracing::warn!(path = %self.path.display(), packets = o.damaged,
                        "video packets skipped as damaged in this pass");
                }
            }
        }
    }
}

/// The converter of decoded frames of this format and size to RGB24 of the same size.
fn rgb_converter(
    format: Pixel,
    width: u32,
    height: u32,
) -> Result<scaling::Context, ffmpeg::Error> {
    scaling::Context::get(
        format,
        width,
        height,
        Pixel::RGB24,
        width,
        height,
        scaling::Flags::BILINEAR,
    )
}

/// Copies FFmpeg's RGB24 rows (which may be padded) into a tight image.
fn rgb_from_frame(frame: &VideoFrame) -> RgbImage {
    let (w, h) = (frame.width(), frame.height());
    let stride = frame.stride(0);
    let data = frame.data(0);
    let row = 3 * w as usize;
    let mut buf = Vec::with_capacity(row * h as usize);
    for y in 0..h as usize {
        match data.get(y * stride..y * stride + row) {
            Some(line) => buf.extend_from_slice(line),
            None => buf.resize(buf.len() + row, 0), // a short buffer: black rather than a panic
        }
    }
    RgbImage::from_raw(w, h, buf).unwrap_or_else(|| RgbImage::new(w, h))
}

/// How far into a pass a frame is due, for times that make sense: none for a negative or
/// non-finite offset, at most a day.
fn pacing_offset(seconds: f64) -> Option<Duration> {
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(86_400.0)))
}

impl Producer for VideoProducer {
    fn produce(&mut self) -> Result<Option<SourceFrame>, CaptureError> {
        let next = match self.pending.take() {
            Some(f) => Some(f),
            None => self.decode_next()?,
        };
        let (rgb, pts_s) = match next {
            Some(f) => f,
            None if self.options.looped => {
                self.loop_offset_s = self.last_time_s + 1.0 / self.frames_per_s;
                self.opened = open_file(&self.path)?.0;
                self.pass_started = None;
                match self.decode_next()? {
                    Some(f) => f,
                    None => return Ok(None),
                }
            }
            None => return Ok(None),
        };
        let pass_time_s = pts_s.max(0.0);
        let time_s = self.loop_offset_s + pass_time_s;
        if self.options.realtime {
            // Paced from the pass's first frame: a stream whose clock starts at an hour, or
            // a corrupt timestamp, neither overflows nor sleeps for ever.
            let (started, first_s) = *self
                .pass_started
                .get_or_insert_with(|| (Instant::now(), pass_time_s));
            if let Some(due) =
                pacing_offset(pass_time_s - first_s).and_then(|offset| started.checked_add(offset))
            {
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        }
        self.last_time_s = time_s;
        Ok(Some(SourceFrame {
            rgb,
            time_s: Some(time_s),
        }))
    }

    fn describe(&self) -> String {
        format!(
            "{} ({}×{}, {:.0} fps{})",
            self.path.display(),
            self.width,
            self.height,
            self.frames_per_s,
            if self.options.looped { ", looped" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_offsets_are_bounded_and_bad_times_are_not_waited_for() {
        assert_eq!(pacing_offset(0.5), Some(Duration::from_millis(500)));
        assert_eq!(pacing_offset(-1.0), None);
        assert_eq!(pacing_offset(f64::NAN), None);
        assert_eq!(pacing_offset(f64::INFINITY), None);
        assert_eq!(pacing_offset(1e30), Some(Duration::from_secs(86_400)));
        // Far-off offsets do not overflow the clock either.
        assert!(pacing_offset(1e30)
            .and_then(|d| Instant::now().checked_add(d))
            .is_some());
    }

    #[test]
    fn a_display_matrix_angle_becomes_the_quarter_turn_that_undoes_it() {
        // A phone's portrait video: the matrix turns a quarter clockwise (−90° counter-clockwise).
        assert_eq!(
            Turn::from_counterclockwise_degrees(-90.0),
            Turn::Clockwise90
        );
        assert_eq!(
            Turn::from_counterclockwise_degrees(90.0),
            Turn::Clockwise270
        );
        assert_eq!(Turn::from_counterclockwise_degrees(180.0), Turn::Half);
        assert_eq!(Turn::from_counterclockwise_degrees(-180.0), Turn::Half);
        assert_eq!(
            Turn::from_counterclockwise_degrees(-89.6),
            Turn::Clockwise90
        );
        assert_eq!(Turn::from_counterclockwise_degrees(0.0), Turn::None);
        assert_eq!(Turn::from_counterclockwise_degrees(f64::NAN), Turn::None);
    }
}
