//! Exit codes (SPEC §5): 0 success, 2 usage or configuration error, 1 runtime failure.

/// A mistake in flags or configuration: exit code 2, message names the field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Exit code for an error coming out of a command.
pub fn exit_code(error: &anyhow::Error) -> i32 {
    if error.downcast_ref::<UsageError>().is_some() {
        2
    } else {
        1
    }
}
