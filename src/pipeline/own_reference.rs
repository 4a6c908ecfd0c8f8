//! The person's own neutral face as the reference (the window's "Use my neutral face", headless
//! `--own-neutral-at`). It is taken from one tracked face and then refined: the crops of that
//! track on the next frames the model runs on join it, and the model compares with their mean
//! embedding, so that one frame's jitter (a pixel of landmark shift, camera noise) does not
//! become the reference every later frame is measured against.
//!
//! Unless switched off, it is also taken without being asked ([`AutoNeutral`]): once the model has
//! called a tracked face neutral, confidently, on enough of its runs in a row, those crops become
//! that person's own neutral face. The generated reference of a face nobody has seen lies far
//! from it even when the face is neutral, so the intensity it gives a calm face runs high; the
//! person's own neutral face does not.
use crate::face::{AlignedFace, DetectedFace};
use crate::frame::FaceResult;
use crate::infer::{FacePrediction, OwnFace, Predictor};
use crate::labels::Expression;

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

    /// From crops already taken (by [`AutoNeutral`]): nothing more is added.
    pub fn taken(track: u64, crops: Vec<AlignedFace>) -> OwnNeutral {
        OwnNeutral {
            track,
            frames: crops.len().max(1),
            crops,
            face: None,
        }
    }

    /// The tracker's id of the face it follows.
    pub fn track(&self) -> u64 {
        self.track
    }

    /// Whether the face it follows is among `faces`.
    pub fn in_view(&self, faces: &[(DetectedFace, AlignedFace)]) -> bool {
        faces.iter().any(|(d, _)| d.track == self.track)
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

/// When a face becomes its own neutral reference without being asked: the model, comparing it with
/// its generated reference, gave it at least `min_neutral` probability of neutral on `frames` of
/// its runs in a row (frames whose result was held do not count; a face lost and found again
/// starts over).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoNeutralRule {
    pub min_neutral: f32,
    pub frames: usize,
}

impl AutoNeutralRule {
    /// The rule the app uses unless told otherwise: `frames` runs in a row (the own face's
    /// [`DEFAULT_OWN_FRAMES`]) at a neutral probability of at least [`DEFAULT_MIN_NEUTRAL`].
    pub fn with_frames(frames: usize) -> AutoNeutralRule {
        AutoNeutralRule {
            min_neutral: DEFAULT_MIN_NEUTRAL,
            frames: frames.max(1),
        }
    }
}

impl Default for AutoNeutralRule {
    /// [`DEFAULT_OWN_FRAMES`] runs in a row at [`DEFAULT_MIN_NEUTRAL`].
    fn default() -> AutoNeutralRule {
        AutoNeutralRule::with_frames(usize::from(DEFAULT_OWN_FRAMES))
    }
}

/// The neutral probability (calibrated, against the generated reference) a face must keep to be
/// taken as its own neutral face. With the shipped weights, FER+ Valid's faces given at least 0.8
/// are neutral by the raters' majority 92.7 % of the time (0.9: 96.3 %); the whole rule (8 runs
/// in a row, each face as webcam-like frames, `dgcn eval --auto-neutral-check`) takes 36.6 % of
/// its neutral faces and 0.9 % of its expressive ones. 0.9 was tried first and a calm lab face
/// (0.81–0.93 on the labelled clip) was then never taken (README → The live app).
pub const DEFAULT_MIN_NEUTRAL: f32 = 0.8;

/// Watches the model's results for a face to take as its own neutral reference
/// ([`AutoNeutralRule`]): the crops of each tracked face's current run of confident neutral calls.
#[derive(Debug)]
pub struct AutoNeutral {
    rule: AutoNeutralRule,
    runs: Vec<(u64, Vec<AlignedFace>)>,
}

impl AutoNeutral {
    pub fn new(rule: AutoNeutralRule) -> AutoNeutral {
        AutoNeutral {
            rule,
            runs: Vec::new(),
        }
    }

    /// Takes one frame the model ran on: its faces and their predictions (against the generated
    /// reference), in the same order. Returns the own neutral face of the first track whose run
    /// reaches the rule's length; untracked faces (track 0) are never taken.
    pub fn watch(
        &mut self,
        faces: &[(DetectedFace, AlignedFace)],
        predictions: &[FacePrediction],
    ) -> Option<OwnNeutral> {
        let neutral = Expression::Neutral.index();
        let mut runs = Vec::with_capacity(faces.len());
        for ((detected, aligned), prediction) in faces.iter().zip(predictions) {
            let track = detected.track;
            if track == 0 || prediction.probs[neutral] < self.rule.min_neutral {
                continue;
            }
            let mut crops = self
                .runs
                .iter_mut()
                .find(|(t, _)| *t == track)
                .map(|(_, c)| std::mem::take(c))
                .unwrap_or_default();
            crops.push(aligned.clone());
            if crops.len() >= self.rule.frames {
                self.runs.clear();
                return Some(OwnNeutral::taken(track, crops));
            }
            runs.push((track, crops));
        }
        self.runs = runs;
        None
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

    /// A prediction whose neutral probability is `neutral` (the rest on happy).
    fn called(neutral: f32) -> FacePrediction {
        let mut probs = [0.0; crate::labels::NUM_CLASSES];
        probs[Expression::Neutral.index()] = neutral;
        probs[Expression::Happy.index()] = 1.0 - neutral;
        let blank = AlignedFace {
            pixels: vec![0.0; FACE_SIZE * FACE_SIZE],
        };
        FacePrediction {
            probs,
            label: Expression::Neutral,
            reference: blank.clone(),
            generated: blank,
            own_crops: None,
            intensity: 0.0,
        }
    }

    fn rule(frames: usize) -> AutoNeutralRule {
        AutoNeutralRule {
            min_neutral: 0.8,
            frames,
        }
    }

    #[test]
    fn a_face_called_neutral_on_enough_runs_in_a_row_becomes_its_own_reference() {
        let mut auto = AutoNeutral::new(rule(3));
        assert!(auto.watch(&[face(5, 0.1)], &[called(0.9)]).is_none());
        assert!(auto.watch(&[face(5, 0.2)], &[called(0.85)]).is_none());
        let own = auto
            .watch(&[face(5, 0.3)], &[called(0.95)])
            .expect("taken on the third run");
        assert_eq!(own.track, 5);
        assert_eq!(values(&own), [0.1, 0.2, 0.3]);
        // Nothing more is added to a face taken whole.
        let mut own = own;
        assert_eq!(own.take_crop(&[face(5, 0.9)]), Some(0));
        assert_eq!(values(&own), [0.1, 0.2, 0.3]);
    }

    #[test]
    fn an_unsure_call_a_lost_face_or_an_untracked_one_starts_over() {
        let mut auto = AutoNeutral::new(rule(2));
        // A run broken by a call under the threshold starts again.
        assert!(auto.watch(&[face(5, 0.1)], &[called(0.9)]).is_none());
        assert!(auto.watch(&[face(5, 0.2)], &[called(0.79)]).is_none());
        assert!(auto.watch(&[face(5, 0.3)], &[called(0.9)]).is_none());
        // A frame without the face ends its run.
        assert!(auto.watch(&[face(8, 0.4)], &[called(0.1)]).is_none());
        assert!(auto.watch(&[face(5, 0.5)], &[called(0.9)]).is_none());
        // Two faces: each keeps its own run; the one that reaches it first is taken.
        assert!(auto
            .watch(&[face(8, 0.6), face(5, 0.7)], &[called(0.2), called(0.9)])
            .is_some_and(|own| own.track == 5 && values(&own) == [0.5, 0.7]));
        // Untracked faces (track 0) never are.
        let mut auto = AutoNeutral::new(rule(1));
        assert!(auto.watch(&[face(0, 0.1)], &[called(1.0)]).is_none());
    }

    #[test]
    fn one_frame_keeps_the_face_it_was_taken_from() {
        let mut own = own_from(3, 0.25, 1);
        assert_eq!(own.take_crop(&[face(3, 0.75)]), Some(0));
        assert_eq!(values(&own), [0.25]);
    }
}
