//! Live previews: the renderer's progress relayed to the job's events, with a small PNG of the picture
//! forming at most once per `worker.preview_interval_ms` per job, so an app can show it while it
//! renders. The sink runs on the render thread; the PNG is a latent-resolution picture (64×64 for a
//! 512×512 render), a few kilobytes, encoded there.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use crate::render::ProgressSink;

/// One step of one job of a batch, on its way to the events queue.
#[derive(Debug)]
pub struct StepReport {
    pub index: usize,
    pub step: u32,
    pub total: u32,
    pub preview_png: Option<Vec<u8>>,
}

/// Sends every step to the relay and asks the renderer for a preview when a job's last one is at least
/// `interval` old (never when the interval is zero).
pub struct RelaySink {
    reports: UnboundedSender<StepReport>,
    interval: Duration,
    last_preview: Mutex<Vec<Option<Instant>>>,
}

impl RelaySink {
    pub fn new(reports: UnboundedSender<StepReport>, jobs: usize, interval: Duration) -> RelaySink {
        RelaySink {
            reports,
            interval,
            last_preview: Mutex::new(vec![None; jobs]),
        }
    }

    fn send(&self, index: usize, step: u32, total: u32, preview_png: Option<Vec<u8>>) {
        let _ = self.reports.send(StepReport {
            index,
            step,
            total,
            preview_png,
        });
    }
}

impl ProgressSink for RelaySink {
    fn step(&self, index: usize, step: u32, total: u32) {
        self.send(index, step, total, None);
    }

    fn wants_preview(&self, index: usize) -> bool {
        if self.interval.is_zero() {
            return false;
        }
        let last = self
            .last_preview
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match last.get(index) {
            Some(Some(at)) => at.elapsed() >= self.interval,
            Some(None) => true,
            None => false,
        }
    }

    fn step_with_preview(&self, index: usize, step: u32, total: u32, preview: image::RgbImage) {
        if let Some(slot) = self
            .last_preview
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(index)
        {
            *slot = Some(Instant::now());
        }
        self.send(index, step, total, encode_png(&preview));
    }
}

/// The preview as PNG; `None` (a step without a picture) if encoding fails.
pub fn encode_png(picture: &image::RgbImage) -> Option<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    picture
        .write_to(&mut out, image::ImageFormat::Png)
        .ok()
        .map(|()| out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_are_throttled_per_job_and_off_at_zero() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let sink = RelaySink::new(tx, 2, Duration::from_secs(3600));
        assert!(sink.wants_preview(0) && sink.wants_preview(1));
        sink.step_with_preview(0, 1, 10, image::RgbImage::new(8, 8));
        assert!(!sink.wants_preview(0), "job 0 just had one");
        assert!(sink.wants_preview(1), "job 1 has its own clock");
        assert!(!sink.wants_preview(7), "no such job");
        let report = rx.try_recv().unwrap();
        let png = report.preview_png.expect("a PNG");
        assert_eq!(&png[1..4], b"PNG");
        assert_eq!(image::load_from_memory(&png).unwrap().width(), 8);

        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        assert!(!RelaySink::new(tx, 1, Duration::ZERO).wants_preview(0));
    }
}
