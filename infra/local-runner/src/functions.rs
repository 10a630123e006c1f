//! The functions as the rest of the runner invokes them (the gateway, the queue and stream
//! pollers, the clock): through the local Lambda service, in process.

use std::sync::Arc;

use serde_json::Value;

pub use crate::lambda::InvokeError;
use crate::lambda::Lambda;

#[derive(Clone)]
pub struct Functions {
    lambda: Arc<Lambda>,
}

impl Functions {
    pub fn new(lambda: Arc<Lambda>) -> Self {
        Functions { lambda }
    }

    /// Invokes `binary` with `payload` and returns its response payload.
    #[tracing::instrument(skip(self, payload))]
    pub async fn invoke(&self, binary: &str, payload: &Value) -> Result<Value, InvokeError> {
        self.lambda.invoke_json(binary, payload).await
    }

    /// The binary a deployed function name (or ARN) names.
    pub fn binary_of(&self, name: &str) -> Option<String> {
        self.lambda.binary_of(name)
    }
}
