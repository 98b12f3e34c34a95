//! Admission: the priority class, the in-flight byte budget and the concurrency limit.
//!
//! - **Priority.** From the `Spillway-Priority` header (`critical`, `normal`, `bulk`; a native
//!   record's own `priority` field wins). Absent, the record goes with `priority: None` and the
//!   engine applies the route's default. An unknown name is a 400.
//! - **In-flight bytes.** Every request body is counted against one global budget
//!   (`limits.max_inflight_bytes`) while the request is handled; a request that does not fit is
//!   refused at once with 429, before its body is read (when it has a `Content-Length`) or as
//!   soon as its chunks pass the budget. Memory held for bodies is therefore bounded (G5).
//! - **Concurrency.** The write routes share one `tower` concurrency limit behind a load-shed
//!   layer: past `limits.max_concurrent_requests` a request is answered 503 at once, never
//!   queued.
//!
//! Both refusals carry a jittered `Retry-After` and are counted in `spillway_sheds_total` (by the
//! metrics middleware, reasons `inflight_bytes` and `concurrency`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::HeaderMap;
use spillway::Priority;

use crate::error::ApiError;

/// The request header that names a priority class.
pub const PRIORITY_HEADER: &str = "spillway-priority";

/// The priority asked for by the request's header, if any.
pub fn priority_from_headers(headers: &HeaderMap) -> Result<Option<Priority>, ApiError> {
    let Some(value) = headers.get(PRIORITY_HEADER) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::BadRequest("Spillway-Priority is not ASCII".into()))?;
    text.parse()
        .map(Some)
        .map_err(|e| ApiError::BadRequest(format!("Spillway-Priority: {e}")))
}

/// The label value of a request's priority in `spillway_sheds_total`.
pub fn priority_label(headers: &HeaderMap) -> &'static str {
    match priority_from_headers(headers) {
        Ok(Some(p)) => p.as_str(),
        Ok(None) => "default",
        Err(_) => "invalid",
    }
}

/// The global budget of request-body bytes held at once.
#[derive(Debug, Clone)]
pub struct InflightBytes {
    used: Arc<AtomicU64>,
    limit: u64,
}

impl InflightBytes {
    pub fn new(limit: u64) -> Self {
        Self {
            used: Arc::new(AtomicU64::new(0)),
            limit,
        }
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Takes `bytes` from the budget, or refuses with 429 when they do not fit.
    pub fn reserve(&self, bytes: u64) -> Result<Reservation, ApiError> {
        let mut reservation = Reservation {
            pool: self.clone(),
            bytes: 0,
        };
        reservation.grow(bytes)?;
        Ok(reservation)
    }

    fn take(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }
}

/// Bytes held from the budget; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    pool: InflightBytes,
    bytes: u64,
}

impl Reservation {
    /// Takes `more` bytes, or refuses with 429 (what was held stays held until drop).
    pub fn grow(&mut self, more: u64) -> Result<(), ApiError> {
        if more == 0 {
            return Ok(());
        }
        if !self.pool.take(more) {
            return Err(ApiError::InflightBytesExhausted);
        }
        self.bytes += more;
        Ok(())
    }

    /// Holds exactly `bytes`: gives back the excess, or takes more (429 when it does not fit).
    pub fn resize(&mut self, bytes: u64) -> Result<(), ApiError> {
        if bytes <= self.bytes {
            self.pool
                .used
                .fetch_sub(self.bytes - bytes, Ordering::AcqRel);
            self.bytes = bytes;
            Ok(())
        } else {
            self.grow(bytes - self.bytes)
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.pool.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_refused_past_the_limit_and_returned_on_drop() {
        let pool = InflightBytes::new(100);
        let a = pool.reserve(60).unwrap();
        assert!(matches!(
            pool.reserve(50),
            Err(ApiError::InflightBytesExhausted)
        ));
        let mut b = pool.reserve(40).unwrap();
        assert!(b.grow(1).is_err());
        drop(a);
        assert_eq!(pool.used(), 40);
        b.grow(60).unwrap();
        b.resize(10).unwrap();
        assert_eq!(pool.used(), 10);
        assert!(b.resize(101).is_err());
        drop(b);
        assert_eq!(pool.used(), 0);
    }

    #[test]
    fn priority_header_is_parsed_and_unknown_names_are_bad_requests() {
        let mut h = HeaderMap::new();
        assert_eq!(priority_from_headers(&h).unwrap(), None);
        h.insert(PRIORITY_HEADER, "Critical".parse().unwrap());
        assert_eq!(priority_from_headers(&h).unwrap(), Some(Priority::Critical));
        h.insert(PRIORITY_HEADER, "urgent".parse().unwrap());
        assert!(matches!(
            priority_from_headers(&h),
            Err(ApiError::BadRequest(_))
        ));
        assert_eq!(priority_label(&h), "invalid");
    }
}
