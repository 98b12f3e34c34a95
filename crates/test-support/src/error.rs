use std::path::PathBuf;

/// Why a piece of the test harness could not do its job. These are failures of the test
/// environment, not of the code under test, and each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The cached Tansu binary is missing: the set-up step has not run on this machine.
    #[error(
        "tansu broker binary not found (looked at {looked:?}); run scripts/test (or scripts/setup) once to build and cache it"
    )]
    TansuMissing { looked: Vec<PathBuf> },
    /// The broker process did not answer ApiVersions within the deadline.
    #[error("tansu broker on port {port} did not become ready in {secs}s; log tail:\n{log_tail}")]
    BrokerNotReady {
        port: u16,
        secs: u64,
        log_tail: String,
    },
    /// The broker hit Tansu 0.6.0's known `idempotent_message_check` panic and answers every
    /// produce with an error. Not a Spillway bug: restart the broker with fresh producers.
    #[error(
        "tansu broker wedged by its known idempotent_message_check panic (a Tansu 0.6.0 bug, not ours); log tail:\n{log_tail}"
    )]
    BrokerWedged { log_tail: String },
    /// A Kafka admin or client call made by the harness failed.
    #[error("kafka call failed during {during}: {source}")]
    Kafka {
        during: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Reading a topic back did not reach the end offsets in time.
    #[error("reading topic {topic} back timed out: {detail}")]
    ReadTimeout { topic: String, detail: String },
    /// An operating-system call of the harness failed (spawn, bind, signal, file).
    #[error("{during}: {source}")]
    Io {
        during: String,
        #[source]
        source: std::io::Error,
    },
    /// The librdkafka mock cluster refused an operation.
    #[error("mock cluster: {0}")]
    Mock(String),
}

impl HarnessError {
    pub(crate) fn io(during: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let during = during.into();
        move |source| HarnessError::Io { during, source }
    }

    pub(crate) fn kafka(
        during: impl Into<String>,
    ) -> impl FnOnce(rdkafka::error::KafkaError) -> Self {
        let during = during.into();
        move |source| HarnessError::Kafka { during, source }
    }
}
