//! What a delivery error means for the record: try again later, never, or with a new producer.
//!
//! librdkafka's delivery reports carry an error code but no "retriable" flag (`is_retriable`
//! exists only on transactional errors), and by the time a report arrives librdkafka has already
//! retried retriable errors until `message.timeout.ms`. So we classify every code ourselves, in
//! one table, for the produce path:
//! - [`ErrorClass::Transient`]: the record is fine and the cluster is not (outage, election,
//!   under-replication, throttling, cluster-wide credentials). Keep it: spool it, resend later.
//! - [`ErrorClass::Permanent`]: Kafka refuses this record for what it is (too large, invalid,
//!   not authorised for its topic). Resending the same bytes cannot succeed: dead-letter it with
//!   the reason (DESIGN G2's one exception).
//! - [`ErrorClass::Fatal`]: the producer instance is unusable (idempotence state broken). The
//!   record is fine: recreate the producer and resend.
//!
//! Codes that the produce path never raises (consumer, group, admin) are classed transient, so a
//! record is never dead-lettered for an error that does not concern it. A code this table does
//! not know (a newer librdkafka) is transient for the same reason.

use rdkafka::types::RDKafkaErrorCode;

/// What a delivery error means for the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The record is fine; the cluster is not, for now. Keep it and resend.
    Transient,
    /// Kafka refuses this record for what it is. Dead-letter it with the reason.
    Permanent,
    /// The producer instance is unusable. Recreate it and resend the record.
    Fatal,
}

/// Classifies a librdkafka error code for the produce path. One arm per code, each with why.
pub fn classify(code: RDKafkaErrorCode) -> ErrorClass {
    use ErrorClass::{Fatal, Permanent, Transient};
    use RDKafkaErrorCode as C;
    match code {
        // -200: marker, never reported
        C::Begin => Transient,
        // -199: a malformed response from the broker, not a fault of the record; retried
        C::BadMessage => Transient,
        // -198: the client could not (de)compress; a configuration or broker issue, not the record
        C::BadCompression => Transient,
        // -197: the client is shutting down; the record was not refused
        C::BrokerDestroy => Transient,
        // -196: generic local failure; nothing says the record is at fault
        C::Fail => Transient,
        // -195: connection lost; the leader may be reachable again soon
        C::BrokerTransportFailure => Transient,
        // -194: the client ran out of a system resource (threads, fds); retried after recovery
        C::CriticalSystemResource => Transient,
        // -193: broker address did not resolve; DNS can come back
        C::Resolve => Transient,
        // -192: no acknowledgement within message.timeout.ms: the outage case Spillway exists for
        C::MessageTimedOut => Transient,
        // -191: consumer-side signal, not a produce failure
        C::PartitionEOF => Transient,
        // -190: the partition does not exist in the cluster: resending cannot succeed
        C::UnknownPartition => Permanent,
        // -189: local file error in the client (e.g. certificate reload); not the record
        C::FileSystem => Transient,
        // -188: the topic does not exist in the cluster (and is not auto-created)
        C::UnknownTopic => Permanent,
        // -187: every broker is unreachable: spool and wait
        C::AllBrokersDown => Transient,
        // -186: the client rejected the record itself (e.g. an invalid partition argument)
        C::InvalidArgument => Permanent,
        // -185: a local operation timed out
        C::OperationTimedOut => Transient,
        // -184: the local producer queue is full: backpressure
        C::QueueFull => Transient,
        // -183: fewer in-sync replicas than acks requires; replicas can catch up
        C::ISRInsufficient => Transient,
        // -182: broker address changed; the client reconnects
        C::NodeUpdate => Transient,
        // -181: TLS failure on the connection; certificates can be fixed or rotated without losing records
        C::SSL => Transient,
        // -180: coordinator not yet available
        C::WaitingForCoordinator => Transient,
        // -179: consumer-group error, not raised for produce
        C::UnknownGroup => Transient,
        // -178: operation in progress
        C::InProgress => Transient,
        // -177: previous operation in progress
        C::PreviousInProgress => Transient,
        // -176: consumer-side, not raised for produce
        C::ExistingSubscription => Transient,
        // -175: consumer rebalance signal, not a produce failure
        C::AssignPartitions => Transient,
        // -174: consumer rebalance signal, not a produce failure
        C::RevokePartitions => Transient,
        // -173: conflicting use of a local API; not the record
        C::Conflict => Transient,
        // -172: wrong local state (e.g. during reconnect); retried
        C::State => Transient,
        // -171: unknown protocol; a configuration issue, not the record
        C::UnknownProtocol => Transient,
        // -170: not implemented by the client; not the record
        C::NotImplemented => Transient,
        // -169: cluster-wide authentication failure: keep records (spool) until credentials are fixed; the breaker opens and alerts
        C::Authentication => Transient,
        // -168: consumer-side, not raised for produce
        C::NoOffset => Transient,
        // -167: outdated local state; retried
        C::Outdated => Transient,
        // -166: timed out in a local queue
        C::TimedOutQueue => Transient,
        // -165: the broker lacks a feature; an operator can upgrade it, the record is not at fault
        C::UnsupportedFeature => Transient,
        // -164: awaiting a metadata cache update
        C::WaitCache => Transient,
        // -163: interrupted local operation
        C::Interrupted => Transient,
        // -162: the key could not be serialised: resending the same bytes cannot succeed
        C::KeySerialization => Permanent,
        // -161: the value could not be serialised: resending the same bytes cannot succeed
        C::ValueSerialization => Permanent,
        // -160: consumer-side, not raised for produce
        C::KeyDeserialization => Transient,
        // -159: consumer-side, not raised for produce
        C::ValueDeserialization => Transient,
        // -158: partial response; retried
        C::Partial => Transient,
        // -157: local read-only object; not the record
        C::ReadOnly => Transient,
        // -156: local lookup found nothing; not the record
        C::NoEnt => Transient,
        // -155: read underflow in a response; not the record
        C::Underflow => Transient,
        // -154: local type error; not the record
        C::InvalidType => Transient,
        // -153: librdkafka asks for a retry
        C::Retry => Transient,
        // -152: purged from the local queue before sending (by us): never persisted
        C::PurgeQueue => Transient,
        // -151: purged while in flight (by us): possibly persisted, deduplicate before resending
        C::PurgeInflight => Transient,
        // -150: the producer instance hit a fatal error (see rd_kafka_fatal_error): recreate it and resend
        C::Fatal => Fatal,
        // -149: inconsistent local state; retried
        C::Inconsistent => Transient,
        // -148: gap-less ordering could not be kept; the record itself is fine
        C::GaplessGuarantee => Transient,
        // -147: consumer-side, not raised for produce
        C::PollExceeded => Transient,
        // -146: unknown broker; metadata will refresh
        C::UnknownBroker => Transient,
        // -145: a feature is not configured; not the record
        C::NotConfigured => Transient,
        // -144: the instance was fenced: recreate the producer
        C::Fenced => Fatal,
        // -143: application-generated error; not the record
        C::Application => Transient,
        // -142: consumer-side, not raised for produce
        C::AssignmentLost => Transient,
        // -141: no operation performed
        C::Noop => Transient,
        // -140: consumer-side, not raised for produce
        C::AutoOffsetReset => Transient,
        // -139: consumer-side, not raised for produce
        C::LogTruncation => Transient,
        // -138: another record in the same batch was invalid; this one may be fine: resend it
        C::InvalidDifferentRecord => Transient,
        // -137: a broker handle is going away; the client reconnects
        C::DestroyBroker => Transient,
        // -100: marker, never reported
        C::End => Transient,
        // -1: unknown broker error: not known to be the record's fault, so keep it
        C::Unknown => Transient,
        // 0: success, never classified as a failure
        C::NoError => Transient,
        // 1: consumer-side, not raised for produce
        C::OffsetOutOfRange => Transient,
        // 2: CORRUPT_MESSAGE: a CRC mismatch, usually corruption in transit; Kafka clients retry it
        C::InvalidMessage => Transient,
        // 3: metadata may be stale (topic just created, partition moving); retried until it resolves
        C::UnknownTopicOrPartition => Transient,
        // 4: the record size is invalid
        C::InvalidMessageSize => Permanent,
        // 5: leader election in progress
        C::LeaderNotAvailable => Transient,
        // 6: leadership moved; metadata refresh finds the new leader
        C::NotLeaderForPartition => Transient,
        // 7: the broker timed out waiting for replicas
        C::RequestTimedOut => Transient,
        // 8: broker not available
        C::BrokerNotAvailable => Transient,
        // 9: replica not available
        C::ReplicaNotAvailable => Transient,
        // 10: the record exceeds the broker or topic max.message.bytes: it can never be written
        C::MessageSizeTooLarge => Permanent,
        // 11: controller changed
        C::StaleControllerEpoch => Transient,
        // 12: consumer-side, not raised for produce
        C::OffsetMetadataTooLarge => Transient,
        // 13: the broker disconnected before answering
        C::NetworkException => Transient,
        // 14: coordinator loading
        C::CoordinatorLoadInProgress => Transient,
        // 15: coordinator not available
        C::CoordinatorNotAvailable => Transient,
        // 16: not the coordinator
        C::NotCoordinator => Transient,
        // 17: the topic name is invalid or internal: writing to it cannot succeed
        C::InvalidTopic => Permanent,
        // 18: RECORD_LIST_TOO_LARGE: the batch exceeds the segment size; the record is too large to ever fit
        C::MessageBatchTooLarge => Permanent,
        // 19: fewer in-sync replicas than min.insync.replicas; followers can rejoin
        C::NotEnoughReplicas => Transient,
        // 20: written to too few replicas; retried (idempotence removes the duplicate)
        C::NotEnoughReplicasAfterAppend => Transient,
        // 21: the acks value is invalid for the broker: a configuration the record cannot overcome
        C::InvalidRequiredAcks => Permanent,
        // 22: consumer-group error, not raised for produce
        C::IllegalGeneration => Transient,
        // 23: consumer-group error, not raised for produce
        C::InconsistentGroupProtocol => Transient,
        // 24: consumer-group error, not raised for produce
        C::InvalidGroupId => Transient,
        // 25: consumer-group error, not raised for produce
        C::UnknownMemberId => Transient,
        // 26: consumer-group error, not raised for produce
        C::InvalidSessionTimeout => Transient,
        // 27: consumer-group error, not raised for produce
        C::RebalanceInProgress => Transient,
        // 28: consumer-side, not raised for produce
        C::InvalidCommitOffsetSize => Transient,
        // 29: this principal may not write to the topic: resending does not help until ACLs change; dead-letter with the reason
        C::TopicAuthorizationFailed => Permanent,
        // 30: consumer-group error, not raised for produce
        C::GroupAuthorizationFailed => Transient,
        // 31: cluster-wide permission missing (e.g. IdempotentWrite): keep records until an operator grants it; the breaker opens and alerts
        C::ClusterAuthorizationFailed => Transient,
        // 32: the record timestamp is outside the broker's accepted range
        C::InvalidTimestamp => Permanent,
        // 33: cluster-wide SASL configuration issue; keep records until fixed
        C::UnsupportedSASLMechanism => Transient,
        // 34: SASL handshake state error; reconnect
        C::IllegalSASLState => Transient,
        // 35: protocol version not supported; not the record
        C::UnsupportedVersion => Transient,
        // 36: admin error, not raised for produce
        C::TopicAlreadyExists => Transient,
        // 37: admin error, not raised for produce
        C::InvalidPartitions => Transient,
        // 38: admin error, not raised for produce
        C::InvalidReplicationFactor => Transient,
        // 39: admin error, not raised for produce
        C::InvalidReplicaAssignment => Transient,
        // 40: admin error, not raised for produce
        C::InvalidConfig => Transient,
        // 41: controller moved
        C::NotController => Transient,
        // 42: the broker found the produce request for this record malformed
        C::InvalidRequest => Permanent,
        // 43: the topic's message format cannot hold this record (e.g. headers on format v1)
        C::UnsupportedForMessageFormat => Permanent,
        // 44: a broker policy rejects the record
        C::PolicyViolation => Permanent,
        // 45: idempotence sequence broken: librdkafka makes the producer fatal; recreate and resend
        C::OutOfOrderSequenceNumber => Fatal,
        // 46: the broker already has this batch: librdkafka treats it as success
        C::DuplicateSequenceNumber => Transient,
        // 47: the producer epoch is stale: recreate the producer
        C::InvalidProducerEpoch => Fatal,
        // 48: transactional state error: recreate the producer
        C::InvalidTransactionalState => Fatal,
        // 49: producer id mapping invalid: recreate the producer
        C::InvalidProducerIdMapping => Fatal,
        // 50: transactional configuration; not raised for idempotent produce
        C::InvalidTransactionTimeout => Transient,
        // 51: transactional, not raised for idempotent produce
        C::ConcurrentTransactions => Transient,
        // 52: transactional, not raised for idempotent produce
        C::TransactionCoordinatorFenced => Transient,
        // 53: transactional, not raised for idempotent produce
        C::TransactionalIdAuthorizationFailed => Transient,
        // 54: security features disabled; configuration, not the record
        C::SecurityDisabled => Transient,
        // 55: not attempted because another operation failed; resend
        C::OperationNotAttempted => Transient,
        // 56: the broker's disk failed; the partition moves to another replica
        C::KafkaStorageError => Transient,
        // 57: admin error, not raised for produce
        C::LogDirNotFound => Transient,
        // 58: cluster-wide credential failure: keep records until credentials are fixed; the breaker opens and alerts
        C::SaslAuthenticationFailed => Transient,
        // 59: the broker forgot the producer id: recreate the producer
        C::UnknownProducerId => Fatal,
        // 60: partition reassignment in progress
        C::ReassignmentInProgress => Transient,
        // 61: delegation-token configuration; not the record
        C::DelegationTokenAuthDisabled => Transient,
        // 62: delegation-token configuration; not the record
        C::DelegationTokenNotFound => Transient,
        // 63: delegation-token configuration; not the record
        C::DelegationTokenOwnerMismatch => Transient,
        // 64: delegation-token configuration; not the record
        C::DelegationTokenRequestNotAllowed => Transient,
        // 65: delegation-token configuration; not the record
        C::DelegationTokenAuthorizationFailed => Transient,
        // 66: the token expired; a refreshed token lets the record through
        C::DelegationTokenExpired => Transient,
        // 67: admin error, not raised for produce
        C::InvalidPrincipalType => Transient,
        // 68: consumer-group error, not raised for produce
        C::NonEmptyGroup => Transient,
        // 69: consumer-group error, not raised for produce
        C::GroupIdNotFound => Transient,
        // 70: fetch-side, not raised for produce
        C::FetchSessionIdNotFound => Transient,
        // 71: fetch-side, not raised for produce
        C::InvalidFetchSessionEpoch => Transient,
        // 72: the leader has no listener for our security protocol yet; retried
        C::ListenerNotFound => Transient,
        // 73: admin error, not raised for produce
        C::TopicDeletionDisabled => Transient,
        // 74: stale leader epoch; metadata refresh fixes it
        C::FencedLeaderEpoch => Transient,
        // 75: leader epoch newer than the broker knows; retried
        C::UnknownLeaderEpoch => Transient,
        // 76: the topic does not accept this compression: configuration the record cannot overcome
        C::UnsupportedCompressionType => Permanent,
        // 77: broker epoch changed
        C::StaleBrokerEpoch => Transient,
        // 78: high watermark catching up
        C::OffsetNotAvailable => Transient,
        // 79: consumer-group error, not raised for produce
        C::MemberIdRequired => Transient,
        // 80: preferred leader not available
        C::PreferredLeaderNotAvailable => Transient,
        // 81: consumer-group error, not raised for produce
        C::GroupMaxSizeReached => Transient,
        // 82: consumer-group error, not raised for produce
        C::FencedInstanceId => Transient,
        // 83: no eligible leader yet
        C::EligibleLeadersNotAvailable => Transient,
        // 84: admin error, not raised for produce
        C::ElectionNotNeeded => Transient,
        // 85: admin error, not raised for produce
        C::NoReassignmentInProgress => Transient,
        // 86: consumer-group error, not raised for produce
        C::GroupSubscribedToTopic => Transient,
        // 87: the broker validated the record and refused it (e.g. a compacted topic without a key)
        C::InvalidRecord => Permanent,
        // 88: consumer-side, not raised for produce
        C::UnstableOffsetCommit => Transient,
        // 89: quota exceeded: slow down and retry
        C::ThrottlingQuotaExceeded => Transient,
        // 90: a newer producer fenced this one: recreate the producer
        C::ProducerFenced => Fatal,
        // 91: admin error, not raised for produce
        C::ResourceNotFound => Transient,
        // 92: admin error, not raised for produce
        C::DuplicateResource => Transient,
        // 93: admin error, not raised for produce
        C::UnacceptableCredential => Transient,
        // 94: KRaft internal, not raised for produce
        C::InconsistentVoterSet => Transient,
        // 95: KRaft internal, not raised for produce
        C::InvalidUpdateVersion => Transient,
        // 96: admin error, not raised for produce
        C::FeatureUpdateFailed => Transient,
        // 97: broker-internal forwarding failure; retried
        C::PrincipalDeserializationFailure => Transient,
        // 100: topic id unknown to this broker yet; metadata refresh
        C::UnknownTopicId => Transient,
        // 110: consumer-group error, not raised for produce
        C::FencedMemberEpoch => Transient,
        // 111: consumer-group error, not raised for produce
        C::UnreleasedInstanceId => Transient,
        // 112: consumer-group error, not raised for produce
        C::UnsupportedAssignor => Transient,
        // 113: consumer-group error, not raised for produce
        C::StaleMemberEpoch => Transient,
        // 117: telemetry, not raised for produce
        C::UnknownSubscriptionId => Transient,
        // 118: telemetry, not raised for produce
        C::TelemetryTooLarge => Transient,
        // 129: the client must re-bootstrap its metadata; retried
        C::RebootstrapRequired => Transient,
        // A code newer than this table: not known to be the record's fault, so keep it.
        _ => Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RDKafkaErrorCode as C;

    #[test]
    fn the_errors_that_refuse_a_record_for_what_it_is_are_permanent() {
        for code in [
            C::MessageSizeTooLarge,
            C::TopicAuthorizationFailed,
            C::InvalidRecord,
            C::InvalidTimestamp,
            C::MessageBatchTooLarge,
            C::UnknownTopic,
            C::UnknownPartition,
            C::PolicyViolation,
        ] {
            assert_eq!(classify(code), ErrorClass::Permanent, "{code:?}");
        }
    }

    #[test]
    fn outages_elections_and_under_replication_are_transient() {
        for code in [
            C::NotEnoughReplicas,
            C::NotEnoughReplicasAfterAppend,
            C::NotLeaderForPartition,
            C::LeaderNotAvailable,
            C::MessageTimedOut,
            C::BrokerTransportFailure,
            C::AllBrokersDown,
            C::RequestTimedOut,
            C::NetworkException,
            C::QueueFull,
            C::ThrottlingQuotaExceeded,
            C::KafkaStorageError,
            C::PurgeQueue,
            C::PurgeInflight,
        ] {
            assert_eq!(classify(code), ErrorClass::Transient, "{code:?}");
        }
    }

    #[test]
    fn broken_idempotence_state_is_fatal_for_the_producer_not_the_record() {
        for code in [
            C::Fatal,
            C::OutOfOrderSequenceNumber,
            C::InvalidProducerEpoch,
            C::UnknownProducerId,
            C::ProducerFenced,
        ] {
            assert_eq!(classify(code), ErrorClass::Fatal, "{code:?}");
        }
    }

    #[test]
    fn cluster_wide_credential_failures_keep_records_rather_than_dead_letter_them() {
        for code in [
            C::Authentication,
            C::SaslAuthenticationFailed,
            C::ClusterAuthorizationFailed,
        ] {
            assert_eq!(classify(code), ErrorClass::Transient, "{code:?}");
        }
    }
}
