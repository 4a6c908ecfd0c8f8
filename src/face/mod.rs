//! Faces: BlazeFace detection (boxes + five landmarks) and the alignment that turns a detected
//! face into the model's 64×64 grey input. Training, evaluation, `infer` and the live app all go
//! through [`align::aligned_from_image`], so they see faces framed exactly alike.
pub mod align;
pub mod blazeface;
pub mod detect;
pub mod subnormal;
pub mod track;

pub use align::{aligned_from_image, AlignedFace, FACE_SIZE, TEMPLATE_64};
pub use detect::{DetectedFace, Detector, DetectorConfig};
pub use track::{FaceTracker, TrackConfig};
