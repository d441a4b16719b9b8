//! Everything that talks to Alibaba Cloud: where calls may go (endpoints and the allow-list),
//! request signing, response decoding, the HTTP client, AccessKeys and where they come from.

pub mod access_key;
pub mod client;
pub mod credentials;
pub mod endpoint;
pub mod events;
pub mod relay;
pub mod response;
pub mod transport;

/// Request signing, pure: the workspace crate `mpu-relay-sign` (without its verifier).
pub use mpu_relay_sign as sign;

pub use response::{CloudError, ErrorClass, MpuTaskStatus};
pub use sign::{Freshness, Method, MpuStatusCall, SignedRequest, SigningKey};
