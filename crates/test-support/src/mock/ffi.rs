//! The only `unsafe` in the harness: calls into librdkafka's mock-cluster API that the `rdkafka`
//! crate does not wrap (`rd_kafka_mock_broker_set_host_port`), and the raw cluster handle it
//! needs.
//!
//! Soundness: the raw cluster pointer comes from `rd_kafka_handle_mock_cluster` on a live client
//! created with `test.mock.num.brokers`; librdkafka owns the cluster for as long as that client
//! lives, and [`MockHandle`] borrows the client, so the pointer cannot outlive it. The mock API
//! functions lock the cluster internally and may be called from any thread. Strings passed in are
//! NUL-terminated `CString`s that live across the call, and librdkafka copies them.
#![allow(unsafe_code)]

use std::ffi::CString;

use rdkafka::bindings as rdsys;
use rdkafka::client::{Client, ClientContext};

/// The raw mock cluster of a client created with `test.mock.num.brokers`.
pub(crate) struct MockHandle<'c> {
    raw: *mut rdsys::rd_kafka_mock_cluster_t,
    _client: std::marker::PhantomData<&'c ()>,
}

impl<'c> MockHandle<'c> {
    /// The mock cluster behind `client`, if it has one.
    pub(crate) fn of<C: ClientContext>(client: &'c Client<C>) -> Option<Self> {
        // SAFETY: `native_ptr` is a valid rd_kafka_t for the lifetime of `client`.
        let raw = unsafe { rdsys::rd_kafka_handle_mock_cluster(client.native_ptr()) };
        (!raw.is_null()).then_some(Self {
            raw,
            _client: std::marker::PhantomData,
        })
    }

    /// Changes the host and port that `broker_id` advertises in metadata. The broker keeps
    /// listening where it was; clients that learn the new address connect there instead.
    pub(crate) fn set_advertised_address(&self, broker_id: i32, host: &str, port: u16) {
        let host = CString::new(host).expect("host names have no NUL byte");
        // SAFETY: `raw` is valid while the borrowed client lives (see module docs); `host` is a
        // valid NUL-terminated string for the duration of the call and is copied by librdkafka.
        unsafe {
            rdsys::rd_kafka_mock_broker_set_host_port(
                self.raw,
                broker_id,
                host.as_ptr(),
                i32::from(port),
            )
        }
    }
}
