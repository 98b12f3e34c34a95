//! The HTTP handlers, one module per API family.

pub mod ops;
pub mod v1;
pub mod v2;
pub mod v3;
pub mod v3_stream;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A path parameter whose extraction failure answers in the gateway's error shape (400).
#[derive(Debug)]
pub struct PathParam<T>(pub T);

impl<T, S> FromRequestParts<S> for PathParam<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| PathParam(t))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}
