//! Small encodings used at the edges.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

pub fn base64_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub fn base64_decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    STANDARD.decode(text)
}
