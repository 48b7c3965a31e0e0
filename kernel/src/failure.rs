//! The one place that decides what a failure means to a request's caller:
//! a stage's failure, an embedding engine's error and the embed path's
//! [`spindle_scheduler::Error`] all become a [`Failure`] with a
//! [`FailureClass`] here, located at the stage and script line when a stage
//! failed. Front ends only render the result.

use spindle_embed::EmbedError;
use spindle_scheduler::{Error, Failure, FailureClass, FailureSite};
use spindle_scripting::{HostEmbedError, StageFailure};

/// A pipeline stage's failure as the request's answer. A failure of the
/// script itself is permanent; an embed stage's failure takes the class of
/// the kernel error behind it.
pub fn from_stage(stage_failure: StageFailure) -> Failure {
    let class = match &stage_failure.cause {
        None => FailureClass::Permanent,
        Some(cause) => match (cause.get::<Error>(), cause.get::<HostEmbedError>()) {
            (Some(error), _) => error.class(),
            // The embed call never reached the kernel's embed path (the
            // host lost its reply): the engine went away mid-call.
            (None, Some(_)) => FailureClass::Transient,
            (None, None) => FailureClass::Permanent,
        },
    };
    Failure {
        message: stage_failure.message,
        class,
        site: Some(Box::new(FailureSite {
            pipeline: stage_failure.pipeline,
            stage: stage_failure.stage,
            file: stage_failure.file,
            line: stage_failure.line,
        })),
    }
}

/// An engine's error on a batch, as the batcher's backend reports it.
pub fn from_engine(service: &str, error: &EmbedError) -> Failure {
    let class = match error {
        // The engine stopped under the batch: the service is restarting or
        // stopping, which says nothing about its health.
        EmbedError::EngineStopped => FailureClass::Unavailable { retry_after: None },
        // ONNX Runtime failed on this batch; another may pass.
        EmbedError::Inference(_) => FailureClass::Transient,
        _ => FailureClass::Permanent,
    };
    Failure::new(format!("embedding service `{service}`: {error}"), class)
}

/// The embedding service is not in the engine directory right now.
pub fn engine_not_running(service: &str) -> Failure {
    Failure::unavailable(
        format!("embedding service `{service}` is not running"),
        None,
    )
}

/// An injected engine fault (`Kernel::inject`): what an ONNX Runtime error
/// on a batch would be.
pub fn injected(service: &str) -> Failure {
    Failure::transient(format!(
        "embedding service `{service}`: the batch failed (injected fault)"
    ))
}
