//! Everything that talks to Alibaba Cloud: request signing, response decoding, the HTTP client
//! and credentials.

pub mod client;
pub mod credentials;
pub mod response;
pub mod sign;

pub use response::{CloudError, ErrorClass, MpuTaskStatus};
pub use sign::{Credentials, Freshness, Method, MpuStatusCall, SignedRequest};
