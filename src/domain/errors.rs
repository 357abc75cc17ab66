//! The field errors one request collects, up to a cap.

use crate::error::FieldError;

/// At most this many field errors are reported for one request.
const MAX_ERRORS: usize = 50;

/// Collects field errors up to a cap.
#[derive(Default)]
pub struct Errors(pub Vec<FieldError>);

impl Errors {
    pub fn push(&mut self, pointer: impl Into<String>, message: impl Into<String>) {
        if self.0.len() < MAX_ERRORS {
            self.0.push(FieldError::at(pointer, message));
        }
    }
    pub fn full(&self) -> bool {
        self.0.len() >= MAX_ERRORS
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
