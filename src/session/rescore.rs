//! Sessions as test sets: (other) weights run over a recorded session's faces (with the reference
//! each was compared with: the person's own neutral face where one was used, else the
//! generator's), compared with the session's labels and recorded predictions.
use anyhow::Result;

use super::format;
use crate::infer::Predictor;
use crate::learn::metrics::Confusion;

/// What re-scoring found.
pub struct Rescored {
    pub faces: usize,
    pub confusion: Confusion,
    /// Faces whose new prediction equals the recorded one.
    pub same_as_recorded: usize,
    /// Largest difference of any probability from the recorded one.
    pub max_prob_change: f32,
}

pub fn rescore(session: &crate::session::Session, predictor: &Predictor) -> Result<Rescored> {
    let mut out = Rescored {
        faces: 0,
        confusion: Confusion::default(),
        same_as_recorded: 0,
        max_prob_change: 0.0,
    };
    let mut own: Option<(String, crate::infer::OwnFace)> = None;
    for row in &session.rows {
        let Some(face) = &row.face else { continue };
        let query = format::load_face_png(&session.dir.join(&face.query_png))
            .map_err(anyhow::Error::msg)?;
        // The own neutral face's frames where they were recorded, else (older sessions) the one
        // reference image; rows in a row share them.
        if face.own_reference {
            let file = face.own_frames_png.as_ref().unwrap_or(&face.reference_png);
            if own.as_ref().is_none_or(|(f, _)| f != file) {
                let path = session.dir.join(file);
                let crops = match &face.own_frames_png {
                    Some(_) => format::load_faces_png(&path),
                    None => format::load_face_png(&path).map(|f| vec![f]),
                }
                .map_err(anyhow::Error::msg)?;
                own = Some((file.clone(), predictor.own_face(crops)?));
            }
        }
        let own_face = own.as_ref().filter(|_| face.own_reference);
        let pred = predictor
            .predict(std::slice::from_ref(&query), own_face.map(|(_, o)| (0, o)))?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("the model returned no prediction"))?;
        out.faces += 1;
        if pred.label == face.predicted {
            out.same_as_recorded += 1;
        }
        for (a, b) in pred.probs.iter().zip(&face.probs) {
            out.max_prob_change = out.max_prob_change.max((a - b).abs());
        }
        if let Some(label) = row.label {
            out.confusion.add(label.index(), pred.label.index());
        }
    }
    Ok(out)
}
