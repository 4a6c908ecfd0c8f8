//! Webcams through nokhwa (V4L2 on Linux, AVFoundation, Media Foundation). The camera handle
//! lives on the "camera" thread; frames are decoded to RGB there. A camera that stops answering
//! ends the source with [`CaptureError::CameraLost`]; the app reports it and keeps running.
use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
    Resolution,
};
use nokhwa::Camera;

use super::threaded::Producer;
use super::{CameraEntry, CameraRequest, CaptureError, SourceFrame};

/// Cameras the system lists; an empty list when there are none (or no camera API).
pub fn list_cameras() -> Vec<CameraEntry> {
    match nokhwa::query(ApiBackend::Auto) {
        Ok(list) => list
            .into_iter()
            .enumerate()
            .map(|(i, info)| CameraEntry {
                index: match info.index() {
                    CameraIndex::Index(n) => *n,
                    CameraIndex::String(_) => i as u32,
                },
                name: info.human_name(),
            })
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "listing cameras failed");
            Vec::new()
        }
    }
}

/// An opened camera (lives on the "camera" thread).
pub struct CameraProducer {
    camera: Camera,
    request: CameraRequest,
    name: String,
}

impl CameraProducer {
    pub fn open(request: CameraRequest) -> Result<CameraProducer, CaptureError> {
        let err = |reason: String| CaptureError::Camera {
            index: request.index,
            reason,
        };
        let wanted = CameraFormat::new(
            Resolution::new(request.width, request.height),
            FrameFormat::MJPEG,
            request.frames_per_s,
        );
        let format = RequestedFormat::new::<RgbFormat>(RequestedFormatType::Closest(wanted));
        let mut camera = Camera::new(CameraIndex::Index(request.index), format)
            .map_err(|e| err(e.to_string()))?;
        camera.open_stream().map_err(|e| err(e.to_string()))?;
        let name = camera.info().human_name();
        Ok(CameraProducer {
            camera,
            request,
            name,
        })
    }
}

impl Producer for CameraProducer {
    fn produce(&mut self) -> Result<Option<SourceFrame>, CaptureError> {
        let lost = |reason: String| CaptureError::CameraLost {
            index: self.request.index,
            reason,
        };
        let buffer = self.camera.frame().map_err(|e| lost(e.to_string()))?;
        let rgb = buffer
            .decode_image::<RgbFormat>()
            .map_err(|e| lost(format!("undecodable frame: {e}")))?;
        Ok(Some(SourceFrame { rgb, time_s: None }))
    }

    fn describe(&self) -> String {
        let f = self.camera.camera_format();
        format!(
            "camera {} \"{}\" ({}×{}, {} fps)",
            self.request.index,
            self.name,
            f.resolution().width(),
            f.resolution().height(),
            f.frame_rate()
        )
    }
}

impl Drop for CameraProducer {
    fn drop(&mut self) {
        if let Err(e) = self.camera.stop_stream() {
            tracing::debug!(error = %e, "stopping the camera stream");
        }
    }
}
