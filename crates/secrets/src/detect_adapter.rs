//! The rule-based [`Detector`] as the redactor's [`Detect`] stage: converts its detections
//! (offsets and a static rule id) into the redactor's, and reports how many lines a
//! detection may span so a [`crate::redact::DetectingStream`] holds back enough text.

use crate::{
    detect::Detector,
    redact::{Detect, Detection},
};

impl Detect for Detector {
    fn max_lines(&self) -> usize {
        Detector::max_lines(self)
    }

    fn multiline_from(&self, text: &[u8]) -> Option<usize> {
        Detector::multiline_from(self, text)
    }

    fn detect(&self, text: &str) -> Vec<Detection> {
        Detector::detect(self, text)
            .into_iter()
            .map(|d| Detection {
                rule_id: d.rule_id.to_owned(),
                range: d.range(),
            })
            .collect()
    }
}
