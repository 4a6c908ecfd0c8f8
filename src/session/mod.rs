//! Recorded sessions: what the live app and headless mode write while recording (a folder in
//! open formats), the recorder thread that writes it without ever blocking the pipeline, and the
//! reader the session browser and `dgcn eval --session` use; the manifest of a new recording,
//! labels by frame for recording a labelled video, and re-scoring a session with other weights.
//!
//! ```text
//! SESSION/session.json      manifest: start/end, source, camera, weights hash and classes, app version
//! SESSION/frames.csv        one row per face (one row with empty face fields for a frame without one)
//! SESSION/faces/F_I.png     aligned 64×64 query of face I in frame F (16-bit grey)
//! SESSION/references/F_I.png  the reference it was compared with (16-bit grey)
//! SESSION/frames/F.jpg      the whole frame (only with --record-frames)
//! ```
pub mod format;
pub mod labels;
pub mod reader;
pub mod recorder;
pub mod rescore;

pub use format::{FaceRecord, FrameRow, Manifest};
pub use reader::{open_session, Session, SessionError};
pub use recorder::{new_session_dir, Recorder, RecorderError};
