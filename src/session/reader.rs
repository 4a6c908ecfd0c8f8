//! Opening a recorded session: the manifest and every complete row of `frames.csv`. A last row
//! cut off mid-line (a crash while writing) is left out with a warning; anything else that does
//! not parse is an error naming the file and line. Never panics on bad input.
use std::path::{Path, PathBuf};

use super::format::{self, FaceRecord, FrameRow, Manifest};
use crate::labels::{Expression, NUM_CLASSES};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{0} is not a session: it has no session.json")]
    MissingManifest(PathBuf),
    #[error("{path}: {reason}")]
    BadManifest { path: PathBuf, reason: String },
    #[error("{0}: missing (a session has a frames.csv)")]
    MissingFrames(PathBuf),
    #[error("{path}: {reason}")]
    BadHeader { path: PathBuf, reason: String },
    #[error("{path}, line {line}: {reason}")]
    BadRow {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
}

#[derive(Debug, Clone)]
pub struct Session {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub rows: Vec<FrameRow>,
    /// Things that did not stop the session from opening (a cut-off last row).
    pub warnings: Vec<String>,
}

impl Session {
    /// Distinct frame numbers, in order.
    pub fn frames(&self) -> Vec<u64> {
        let mut f: Vec<u64> = self.rows.iter().map(|r| r.frame).collect();
        f.dedup();
        f
    }

    /// Rows with a face and a label: the test set a session makes.
    pub fn labelled_faces(&self) -> impl Iterator<Item = (&FrameRow, &FaceRecord, Expression)> {
        self.rows
            .iter()
            .filter_map(|r| Some((r, r.face.as_ref()?, r.label?)))
    }
}

fn parse_row(record: &csv::StringRecord) -> Result<FrameRow, String> {
    let field = |i: usize| record.get(i).unwrap_or("");
    let num = |i: usize, name: &str| -> Result<f64, String> {
        let v: f64 = field(i)
            .parse()
            .map_err(|_| format!("{name} {:?} is not a number", field(i)))?;
        if v.is_finite() {
            Ok(v)
        } else {
            Err(format!("{name} is not finite"))
        }
    };
    let frame: u64 = field(0)
        .parse()
        .map_err(|_| format!("frame {:?} is not a frame number", field(0)))?;
    let time_s = num(1, "time_s")?;
    let label = match field(2) {
        "" => None,
        l => Some(Expression::parse(l).ok_or_else(|| format!("unknown label {l:?}"))?),
    };
    let face = if field(3).is_empty() {
        None
    } else {
        let index: usize = field(3)
            .parse()
            .map_err(|_| format!("face {:?} is not a face number", field(3)))?;
        let mut bbox = [0f32; 4];
        for (k, b) in bbox.iter_mut().enumerate() {
            *b = num(4 + k, "box")? as f32;
        }
        let mut landmarks = [[0f32; 2]; 5];
        for (k, l) in landmarks.iter_mut().enumerate() {
            *l = [
                num(8 + 2 * k, "landmark")? as f32,
                num(9 + 2 * k, "landmark")? as f32,
            ];
        }
        let mut probs = [0f32; NUM_CLASSES];
        for (k, p) in probs.iter_mut().enumerate() {
            *p = num(18 + k, "probability")? as f32;
        }
        let at = 18 + NUM_CLASSES;
        let predicted = Expression::parse(field(at))
            .ok_or_else(|| format!("unknown predicted label {:?}", field(at)))?;
        let own_reference = match field(at + 1) {
            "own" => true,
            "generated" => false,
            other => return Err(format!("reference {other:?}: expected own or generated")),
        };
        let png = |i: usize| -> Result<String, String> {
            let p = field(i);
            if p.is_empty() || p.contains("..") || Path::new(p).is_absolute() {
                return Err(format!("image path {p:?} is not inside the session"));
            }
            Ok(p.to_string())
        };
        Some(FaceRecord {
            index,
            bbox,
            landmarks,
            probs,
            predicted,
            own_reference,
            query_png: png(at + 2)?,
            reference_png: png(at + 3)?,
            // A later column: older sessions end before it.
            intensity: match field(at + 4) {
                "" => None,
                _ => Some(num(at + 4, "intensity")? as f32),
            },
            // Later still: absent with the generated reference and in older sessions.
            own_frames_png: match field(at + 5) {
                "" => None,
                _ => Some(png(at + 5)?),
            },
        })
    };
    Ok(FrameRow {
        frame,
        time_s,
        label,
        face,
    })
}

/// Parses the text of a `frames.csv`; `path` is for messages.
pub fn parse_frames(text: &str, path: &Path) -> Result<(Vec<FrameRow>, Vec<String>), SessionError> {
    let mut warnings = Vec::new();
    let complete = match text.rfind('\n') {
        Some(i) => {
            if !text[i + 1..].trim().is_empty() {
                warnings.push(format!(
                    "{}: the last row was cut off (the recording did not end normally) and is left out",
                    path.display()
                ));
            }
            &text[..=i]
        }
        None => {
            return Err(SessionError::BadHeader {
                path: path.to_path_buf(),
                reason: "no complete header line".into(),
            })
        }
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(complete.as_bytes());
    let expected = format::header();
    let header = reader.headers().map_err(|e| SessionError::BadHeader {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    // Sessions recorded before the intensity and own-frames columns end one or two earlier.
    let found: Vec<&str> = header.iter().collect();
    let columns = found.len();
    let known = columns >= 1
        && columns + 2 >= expected.len()
        && columns <= expected.len()
        && found.iter().zip(&expected).all(|(a, b)| a == b);
    if !known {
        return Err(SessionError::BadHeader {
            path: path.to_path_buf(),
            reason: format!("expected the columns {}", expected.join(",")),
        });
    }
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i as u64 + 2;
        let bad = |reason: String| SessionError::BadRow {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let record = record.map_err(|e| bad(e.to_string()))?;
        if record.len() != columns {
            return Err(bad(format!("{} fields, expected {columns}", record.len())));
        }
        rows.push(parse_row(&record).map_err(bad)?);
    }
    Ok((rows, warnings))
}

pub fn open_session(dir: &Path) -> Result<Session, SessionError> {
    let manifest_path = dir.join(format::MANIFEST_FILE);
    if !manifest_path.is_file() {
        return Err(SessionError::MissingManifest(dir.to_path_buf()));
    }
    let manifest_text =
        std::fs::read_to_string(&manifest_path).map_err(|e| SessionError::BadManifest {
            path: manifest_path.clone(),
            reason: e.to_string(),
        })?;
    let manifest: Manifest =
        serde_json::from_str(&manifest_text).map_err(|e| SessionError::BadManifest {
            path: manifest_path.clone(),
            reason: format!("not a session manifest: {e}"),
        })?;
    let frames_path = dir.join(format::FRAMES_FILE);
    if !frames_path.is_file() {
        return Err(SessionError::MissingFrames(frames_path));
    }
    let bytes = std::fs::read(&frames_path).map_err(|e| SessionError::Io {
        path: frames_path.clone(),
        reason: e.to_string(),
    })?;
    let text = String::from_utf8(bytes).map_err(|_| SessionError::BadHeader {
        path: frames_path.clone(),
        reason: "not UTF-8 text".into(),
    })?;
    let (rows, warnings) = parse_frames(&text, &frames_path)?;
    Ok(Session {
        dir: dir.to_path_buf(),
        manifest,
        rows,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_csv() -> String {
        let row = FrameRow {
            frame: 3,
            time_s: 0.1,
            label: Some(Expression::Happy),
            face: Some(FaceRecord {
                index: 0,
                bbox: [1.0, 2.0, 3.0, 4.0],
                landmarks: [[1.0, 1.0]; 5],
                probs: [0.125; NUM_CLASSES],
                predicted: Expression::Sad,
                own_reference: true,
                query_png: "faces/000003_0.png".into(),
                reference_png: "references/000003_0.png".into(),
                intensity: Some(0.25),
                own_frames_png: Some("references/own_000003_0.png".into()),
            }),
        };
        let empty = FrameRow {
            frame: 4,
            time_s: 0.2,
            label: None,
            face: None,
        };
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(format::header()).expect("header");
        w.write_record(row.to_record()).expect("row");
        w.write_record(empty.to_record()).expect("row");
        String::from_utf8(w.into_inner().expect("flush")).expect("utf-8")
    }

    #[test]
    fn rows_round_trip() {
        let (rows, warnings) = parse_frames(&sample_csv(), Path::new("f.csv")).expect("parses");
        assert!(warnings.is_empty());
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].label, Some(Expression::Happy));
        let face = rows[0].face.as_ref().expect("face");
        assert!(face.own_reference);
        assert_eq!(face.predicted, Expression::Sad);
        assert_eq!(face.intensity, Some(0.25));
        assert_eq!(
            face.own_frames_png.as_deref(),
            Some("references/own_000003_0.png")
        );
        assert!(rows[1].face.is_none());
    }

    #[test]
    fn sessions_from_before_the_intensity_and_own_frames_columns_still_open() {
        let drop_last = |text: &str| -> String {
            text.lines()
                .map(|l| format!("{}\n", &l[..l.rfind(',').unwrap_or(l.len())]))
                .collect()
        };
        let before_own_frames = drop_last(&sample_csv());
        assert!(before_own_frames
            .lines()
            .next()
            .is_some_and(|h| h.ends_with("intensity")));
        let (rows, _) = parse_frames(&before_own_frames, Path::new("f.csv")).expect("parses");
        let face = rows[0].face.as_ref().expect("face");
        assert_eq!(
            (face.intensity, face.own_frames_png.as_deref()),
            (Some(0.25), None)
        );
        let old = drop_last(&before_own_frames);
        assert!(old
            .lines()
            .next()
            .is_some_and(|h| h.ends_with("reference_png")));
        let (rows, warnings) = parse_frames(&old, Path::new("f.csv")).expect("parses");
        assert!(warnings.is_empty());
        assert_eq!(rows.len(), 2);
        let face = rows[0].face.as_ref().expect("face");
        assert_eq!(face.intensity, None);
        assert_eq!(face.reference_png, "references/000003_0.png");
        // A header with some other column missing is still refused.
        let broken = sample_csv().replacen("p_happy,", "", 1);
        assert!(parse_frames(&broken, Path::new("f.csv")).is_err());
    }

    #[test]
    fn a_cut_off_last_row_is_left_out_with_a_warning() {
        let text = sample_csv();
        let cut = &text[..text.len() - 5];
        let (rows, warnings) = parse_frames(cut, Path::new("f.csv")).expect("opens");
        assert_eq!(rows.len(), 1);
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn a_malformed_row_names_its_line() {
        let text = sample_csv().replace("0.125000", "x");
        let e = parse_frames(&text, Path::new("f.csv")).expect_err("bad");
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_frames(&text, Path::new("f.csv"));
        }

        #[test]
        fn mutated_sessions_never_panic(cut in 0usize..2000, at in 0usize..2000, byte in any::<u8>()) {
            let mut bytes = sample_csv().into_bytes();
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] = byte;
                bytes.truncate(cut.min(bytes.len()));
            }
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_frames(&text, Path::new("f.csv"));
        }
    }
}
