//! The person's own neutral face as the reference (the window's "Use my neutral face", headless
//! `--own-neutral-at`). It is taken from one tracked face and then refined: the crops of that
//! track on the next frames the model runs on join it, and the model compares with their mean
//! embedding, so that one frame's jitter (a pixel of landmark shift, camera noise) does not
//! become the reference every later frame is measured against.
use crate::face::{AlignedFace, DetectedFace};
use crate::frame::FaceResult;
use crate::infer::{OwnFace, Predictor};

/// How many of the model's frames the own neutral face is averaged over unless told otherwise
/// (about a third of a second at 25–30 frames per second when the model runs on every frame;
/// up to four times that when a still face's frames are held).
pub const DEFAULT_OWN_FRAMES: u16 = 8;

/// The person's own neutral face, and the track of the face it was taken from, so that it
/// follows that face from frame to frame (the tracker's id) and is not applied to anyone else.
#[derive(Debug, Clone)]
pub struct OwnReference {
    pub face: AlignedFace,
    pub track: u64,
}

impl OwnReference {
    /// The face of a result as its person's own neutral reference, following its track.
    pub fn of(face: &FaceResult) -> OwnReference {
        OwnReference {
            face: face.aligned.clone(),
            track: face.detected.track,
        }
    }
}

/// The own reference as the inference thread holds it: the face it was taken from and its
/// track's crops on the next frames the model runs on, `frames` crops in all, compared through
/// their mean embedding ([`Predictor::own_face`]).
pub struct OwnNeutral {
    track: u64,
    crops: Vec<AlignedFace>,
    frames: usize,
    face: Option<OwnFace>,
}

impl OwnNeutral {
    /// Starts from `own`; `frames` (at least 1) crops are taken in all.
    pub fn new(own: OwnReference, frames: usize) -> OwnNeutral {
        OwnNeutral {
            track: own.track,
            crops: vec![own.face],
            frames: frames.max(1),
            face: None,
        }
    }

    /// The face of `faces` that continues the own reference's track, with the reference to
    /// compare it with; while fewer than `frames` crops are taken, that face's crop is added
    /// first. None: the track is not among `faces`.
    pub fn reference_for(
        &mut self,
        faces: &[(DetectedFace, AlignedFace)],
        predictor: &Predictor,
    ) -> Result<Option<(usize, &OwnFace)>, tch::TchError> {
        let Some(i) = self.take_crop(faces) else {
            return Ok(None);
        };
        if self.face.is_none() {
            self.face = Some(predictor.own_face(self.crops.clone())?);
        }
        Ok(self.face.as_ref().map(|f| (i, f)))
    }

    /// The index of the track's face in `faces`, its crop kept while fewer than `frames` are.
    fn take_crop(&mut self, faces: &[(DetectedFace, AlignedFace)]) -> Option<usize> {
        let i = faces.iter().position(|(d, _)| d.track == self.track)?;
        if self.crops.len() < self.frames {
            self.crops.extend(faces.get(i).map(|(_, a)| a.clone()));
            self.face = None;
        }
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::FACE_SIZE;

    fn face(track: u64, value: f32) -> (DetectedFace, AlignedFace) {
        let detected = DetectedFace {
            bbox: [0.0, 0.0, 10.0, 10.0],
            landmarks: [[0.0; 2]; 5],
            score: 1.0,
            track,
            held: false,
        };
        let aligned = AlignedFace {
            pixels: vec![value; FACE_SIZE * FACE_SIZE],
        };
        (detected, aligned)
    }

    /// An own reference taken from a face of `track` whose pixels are all `value`.
    fn own_from(track: u64, value: f32, frames: usize) -> OwnNeutral {
        let (_, face) = face(track, value);
        OwnNeutral::new(OwnReference { face, track }, frames)
    }

    fn values(own: &OwnNeutral) -> Vec<f32> {
        own.crops.iter().map(|c| c.pixels[0]).collect()
    }

    #[test]
    fn the_reference_keeps_its_tracks_first_crops_only() {
        let mut own = own_from(7, 0.2, 3);
        // Another person's face (track 9) is neither compared with it nor taken.
        assert_eq!(own.take_crop(&[face(9, 0.9), face(7, 0.4)]), Some(1));
        assert_eq!(own.take_crop(&[face(7, 0.6)]), Some(0));
        assert_eq!(own.take_crop(&[face(7, 1.0)]), Some(0));
        assert_eq!(values(&own), [0.2, 0.4, 0.6]);
        assert_eq!(own.take_crop(&[face(9, 0.5)]), None);
    }

    #[test]
    fn one_frame_keeps_the_face_it_was_taken_from() {
        let mut own = own_from(3, 0.25, 1);
        assert_eq!(own.take_crop(&[face(3, 0.75)]), Some(0));
        assert_eq!(values(&own), [0.25]);
    }
}
